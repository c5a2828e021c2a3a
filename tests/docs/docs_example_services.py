"""Services with every kind of entrypoint and dependency the docs describe.

Also written to a temporary directory and imported by `sandbox docs` and `sandbox run`.
"""

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Annotated, Literal, TypedDict

import kombu

from sandbox.events import BROADCAST, SINGLETON, EventDispatcher, event_handler
from sandbox.messaging import Publisher, consume
from sandbox.rpc import rpc
from sandbox.timer import timer
from sandbox.web.handlers import http
from sandbox.web.server import Request

AUDIT = kombu.Exchange("audit", type="topic", durable=True)


class Size(Enum):
    SMALL = "s"
    LARGE = "l"


@dataclass
class NewItem:
    """What a client sends to create an item."""

    name: str
    size: Size = Size.SMALL
    tags: list[str] = field(default_factory=list)


class Item(TypedDict):
    id: int
    name: str


@dataclass
class Greeting:
    who: str
    text: str


class Shop:
    """Sells items over HTTP."""

    name = "shop"

    @http("GET", "/items/<int(min=1):item_id>", expected_exceptions=(KeyError, ValueError))
    def get_item(self, request: Request, item_id: int) -> Item:
        """Fetch one item.

        Raises KeyError for an unknown id.
        """
        return {"id": item_id, "name": "thing"}

    @http("POST,PUT", "/items")
    def save_item(self, request: Annotated[Request, NewItem]) -> tuple[Literal[201], Item]:
        """Create or replace an item."""
        return 201, {"id": 1, "name": request.get_json()["name"]}

    @http("DELETE", "/items/<uuid:key>/<any(draft, final):state>/<path:rest>")
    def delete_item(self, request: Request, key, state, rest) -> None:
        return None

    @http("GET", "/hello/<string(length=2):lang>/<float(signed=True):x>/<who>")
    def hello(self, request: Request, lang, x, who) -> str:
        return f"hello {who}"

    @http("GET", "/raw")
    def raw(self, request):
        return "raw"


class Greeter:
    """Greets people over RPC and tells the others."""

    name = "greeter"
    dispatch = EventDispatcher()
    audit = Publisher(exchange=AUDIT)

    @rpc(expected_exceptions=ValueError)
    def hello(self, who: str, polite: bool = True) -> str:
        """Greet someone."""
        self.dispatch("greeted", {"who": who, "count": 1})
        self.audit(asdict(Greeting(who, "hello")), routing_key="audit.greeting")
        return f"hello {who}"

    @rpc
    def shout(self, *words: str, **options) -> list[str]:
        self.dispatch(options.get("event", "shouted"), {"words": words})
        return [word.upper() for word in words]

    @timer(interval=30, eager=True)
    def tick(self):
        self.dispatch("ticked", Greeting("clock", "tick"))


class Listener:
    """Listens to the greeter."""

    name = "listener"

    @event_handler("greeter", "greeted")
    def on_greeted(self, payload: dict) -> None:
        """Count greetings."""

    @event_handler("greeter", "ticked", handler_type=SINGLETON)
    def on_ticked(self, payload: Greeting) -> None:
        pass

    @event_handler("greeter", "greeted", handler_type=BROADCAST, reliable_delivery=False)
    def everywhere(self, payload) -> None:
        pass

    @consume(kombu.Queue("audit-log", exchange=AUDIT, routing_key="audit.#"))
    def log_audit(self, body: Greeting) -> None:
        pass
