"""A client of RabbitMQ's management HTTP API, for tests (Nameko's ``testing.rabbit.Client``).

The ``rabbit_manager`` fixture is one. Its methods take and return what the API does (lists
and dicts decoded from JSON); vhost and other names may hold any character.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from sandbox.management import ApiResponse, HTTPError, ManagementApi, quote_name

__all__ = ["ApiResponse", "Client", "HTTPError", "RabbitManager"]


class RabbitManager(ManagementApi):
    """The management API at ``uri`` (``http://user:password@host:15672``), with the
    writes tests need.

    Creating one checks that the API answers. ``amqp_uri`` is the broker that
    :meth:`uri_for` points into a vhost (by default port 5672 of the API's host, with the
    API's credentials).
    """

    def __init__(self, uri: str, amqp_uri: str | None = None, timeout: float = 10):
        super().__init__(uri, timeout)
        self.amqp_uri = amqp_uri or self.default_amqp_uri
        self.request("GET", "/overview")

    def uri_for(self, vhost: str) -> str:
        """The AMQP URI of ``vhost`` on this broker."""
        parts = urllib.parse.urlsplit(self.amqp_uri)
        return urllib.parse.urlunsplit(parts._replace(path="/" + quote_name(vhost)))

    # --- connections ----------------------------------------------------------------------

    def get_connections(self) -> list[dict]:
        return self._call("GET", "connections")

    def delete_connection(self, name: str) -> None:
        return self._call("DELETE", "connections", name)

    # --- vhosts, users, permissions ---------------------------------------------------------

    def get_all_vhosts(self) -> list[dict]:
        return self._call("GET", "vhosts")

    def create_vhost(self, vhost: str) -> None:
        """Create ``vhost``; the API's user gets every permission on it."""
        return self._call("PUT", "vhosts", vhost)

    def create_vhost_for_amqp_user(self, vhost: str) -> str:
        """Create ``vhost``, give the user of :attr:`amqp_uri` every permission on it (it may
        not be the API's user), and return its AMQP URI."""
        uri = self.uri_for(vhost)
        self.create_vhost(vhost)
        self.set_vhost_permissions(vhost, amqp_username(uri), ".*", ".*", ".*")
        return uri

    def delete_vhost(self, vhost: str) -> None:
        """Delete ``vhost`` with everything in it; the broker closes its connections."""
        return self._call("DELETE", "vhosts", vhost)

    def create_user(self, username: str, password: str, tags: str = "") -> None:
        return self._call("PUT", "users", username, body={"password": password, "tags": tags})

    def delete_user(self, username: str) -> None:
        return self._call("DELETE", "users", username)

    def set_vhost_permissions(
        self, vhost: str, username: str, configure: str, read: str, write: str
    ) -> None:
        """Set ``username``'s permissions on ``vhost`` (regular expressions of names)."""
        permissions = {"configure": configure, "read": read, "write": write}
        return self._call("PUT", "permissions", vhost, username, body=permissions)

    def clear_vhost_permissions(self, vhost: str, username: str) -> None:
        """Take every permission on ``vhost`` from ``username``: it can no longer connect."""
        return self._call("DELETE", "permissions", vhost, username)

    # --- exchanges, queues, bindings --------------------------------------------------------

    def create_exchange(self, vhost: str, name: str, **properties: Any) -> None:
        """Declare exchange ``name``: ``type="topic"``, ``durable=True``... (default: direct)."""
        return self._call("PUT", "exchanges", vhost, name, body={"type": "direct", **properties})

    def delete_exchange(self, vhost: str, name: str) -> None:
        return self._call("DELETE", "exchanges", vhost, name)

    def create_queue(self, vhost: str, name: str, **properties: Any) -> None:
        """Declare queue ``name``: ``durable=False``, ``arguments={...}``..."""
        return self._call("PUT", "queues", vhost, name, body=properties)

    def delete_queue(self, vhost: str, name: str) -> None:
        return self._call("DELETE", "queues", vhost, name)

    def get_queue_bindings(self, vhost: str, name: str) -> list[dict]:
        return self._call("GET", "queues", vhost, name, "bindings")

    def create_queue_binding(self, vhost: str, exchange: str, queue: str, routing_key: str) -> None:
        return self._call(
            "POST", "bindings", vhost, "e", exchange, "q", queue, body={"routing_key": routing_key}
        )

    # --- messages ---------------------------------------------------------------------------

    def publish(
        self,
        vhost: str,
        name: str,
        routing_key: str,
        payload: str,
        properties: dict | None = None,
    ) -> dict:
        """Publish the text ``payload`` to exchange ``name``; ``{"routed": bool}``."""
        body = {
            "routing_key": routing_key,
            "payload": payload,
            "properties": properties or {},
            "payload_encoding": "string",
        }
        return self._call("POST", "exchanges", vhost, name, "publish", body=body)

    def get_messages(
        self, vhost: str, name: str, count: int = 1, requeue: bool = False
    ) -> list[dict]:
        """Take up to ``count`` messages from queue ``name``; put back when ``requeue``."""
        body = {
            "count": count,
            "encoding": "auto",
            "requeue": requeue,  # RabbitMQ before 3.7
            "ackmode": "ack_requeue_true" if requeue else "ack_requeue_false",
        }
        return self._call("POST", "queues", vhost, name, "get", body=body)


Client = RabbitManager  # Nameko's name


def amqp_username(uri: str) -> str:
    """The user an AMQP URI connects as (guest when it names none)."""
    return urllib.parse.unquote(urllib.parse.urlsplit(uri).username or "guest")
