"""sandbox.testing.rabbit against the real RabbitMQ's management API (skipped without one)."""

import urllib.parse
import uuid

import amqp.exceptions
import kombu
import pytest

from sandbox.testing.rabbit import Client, HTTPError, RabbitManager
from sandbox.testing.utils import (
    assert_stops_raising,
    find_free_port,
    get_rabbit_connections,
    reset_rabbit_connections,
)


@pytest.fixture
def vhost(rabbit_manager):
    name = f"sandbox-rabbit-{uuid.uuid4().hex[:8]}/with a slash"
    rabbit_manager.create_vhost(name)
    yield name
    rabbit_manager.delete_vhost(name)


def test_client_is_nameko_s_name_for_the_manager(rabbit_manager):
    assert Client is RabbitManager
    assert isinstance(rabbit_manager, Client)


def test_vhosts_users_and_permissions(rabbit_manager, vhost):
    user, password = f"sandbox-{uuid.uuid4().hex[:8]}", "s3cret"
    assert vhost in [v["name"] for v in rabbit_manager.get_all_vhosts()]
    rabbit_manager.create_user(user, password)
    try:
        uri = rabbit_manager.uri_for(vhost)
        parts = urllib.parse.urlsplit(uri)
        as_user = parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}")
        with pytest.raises(amqp.exceptions.NotAllowed):  # no permission yet
            kombu.Connection(as_user.geturl()).connect()

        rabbit_manager.set_vhost_permissions(vhost, user, ".*", ".*", ".*")
        with kombu.Connection(as_user.geturl()) as connection:
            connection.connect()
            assert connection.connected
    finally:
        rabbit_manager.delete_user(user)


def test_exchanges_queues_bindings_and_messages(rabbit_manager, vhost):
    rabbit_manager.create_exchange(vhost, "orders", type="topic", durable=False)
    rabbit_manager.create_queue(vhost, "paid", durable=False)
    rabbit_manager.create_queue_binding(vhost, "orders", "paid", "order.paid")

    assert "orders" in [e["name"] for e in rabbit_manager.get_exchanges(vhost)]
    assert [q["name"] for q in rabbit_manager.get_queues(vhost)] == ["paid"]
    assert rabbit_manager.get_queue(vhost, "paid")["durable"] is False
    bindings = rabbit_manager.get_queue_bindings(vhost, "paid")
    assert ("orders", "order.paid") in [(b["source"], b["routing_key"]) for b in bindings]

    assert rabbit_manager.publish(vhost, "orders", "order.paid", "one") == {"routed": True}
    assert rabbit_manager.publish(vhost, "orders", "order.lost", "two") == {"routed": False}

    kept = rabbit_manager.get_messages(vhost, "paid", requeue=True)
    assert [m["payload"] for m in kept] == ["one"]
    taken = rabbit_manager.get_messages(vhost, "paid")
    assert [m["payload"] for m in taken] == ["one"]
    assert rabbit_manager.get_messages(vhost, "paid") == []

    rabbit_manager.delete_queue(vhost, "paid")
    rabbit_manager.delete_exchange(vhost, "orders")
    assert rabbit_manager.get_queues(vhost) == []
    assert "orders" not in [e["name"] for e in rabbit_manager.get_exchanges(vhost)]


def test_refusals_raise_http_error_with_the_status(rabbit_manager, vhost):
    with pytest.raises(HTTPError) as refused:
        rabbit_manager.get_queue(vhost, "nothing-here")
    assert refused.value.response.status_code == 404
    assert refused.value.response.json()["error"] == "Object Not Found"


def test_an_api_that_is_not_there_is_one_clear_error():
    port = find_free_port()
    with pytest.raises(ConnectionError, match=f"management HTTP API at .*:{port}/api"):
        RabbitManager(f"http://guest:guest@127.0.0.1:{port}")


def test_connections_of_a_vhost_are_listed_and_reset(rabbit_manager, vhost):
    with kombu.Connection(rabbit_manager.uri_for(vhost)) as connection:
        connection.connect()

        def listed():  # the API lists a connection with its next statistics
            assert len(get_rabbit_connections(vhost, rabbit_manager)) == 1

        assert_stops_raising(listed, AssertionError, timeout=30)
        reset_rabbit_connections(vhost, rabbit_manager)
        with pytest.raises(connection.connection_errors):
            connection.drain_events(timeout=10)
    assert get_rabbit_connections("no-such-vhost", rabbit_manager) == []
