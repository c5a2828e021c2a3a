"""Three services that make the chain the tests of call chains follow: an HTTP request to the
gateway makes an RPC to the greeter, which dispatches an event that the listener fails on."""

from sandbox.events import EventDispatcher, event_handler
from sandbox.rpc import RpcProxy, rpc
from sandbox.web.handlers import http


class Gateway:
    name = "gateway"
    greeter = RpcProxy("greeter")

    @http("GET", "/greet/<who>")
    def greet(self, request, who):
        return self.greeter.hello(who)


class Greeter:
    name = "greeter"
    dispatch = EventDispatcher()

    @rpc
    def hello(self, who):
        self.dispatch("greeted", {"who": who})
        return f"hello {who}"


class Listener:
    name = "listener"

    @event_handler("greeter", "greeted")
    def on_greeted(self, payload):
        raise ValueError(f"no more greetings for {payload['who']}")
