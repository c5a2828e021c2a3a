"""AsyncAPI 3.0 for RPC, events, consumers, publishers and timers.

No package on PyPI ships the official AsyncAPI 3.0 JSON schema, so `check_structure` checks
what that schema and the specification require of the parts we write: required fields,
allowed values, component names, references that resolve, and operation messages that
belong to the operation's channel. Payload schemas are checked as draft-07 schemas, and real
Nameko-format bodies are validated against them.
"""

import json
import re
import textwrap

import kombu
import pytest
from docs_example_services import Greeter, Listener, Shop
from jsonschema import Draft7Validator

from sandbox.docs.asyncapi import asyncapi_document
from sandbox.events import EventDispatcher
from sandbox.messaging import Publisher
from sandbox.rpc import ClusterRpc, RpcProxy, rpc

COMPONENT_NAME = re.compile(r"^[\w\d.\-_]+$")
RUNTIME_EXPRESSION = re.compile(r"^\$message\.(header|payload)#(/(([^/~])|(~[01]))*)*")


def check_structure(document):
    assert document["asyncapi"] == "3.0.0"
    assert set(document["info"]) >= {"title", "version"}
    for server in document.get("servers", {}).values():
        assert set(server) >= {"host", "protocol"}
    for channel in document["channels"].values():
        assert set(channel) <= {"address", "messages", "parameters", "description", "bindings"}
        assert channel["address"] is None or isinstance(channel["address"], str)
        for name in re.findall(r"{(\w+)}", channel["address"] or ""):
            assert name in channel["parameters"]
        for message in channel["messages"].values():
            Draft7Validator.check_schema(message["payload"])
            for expression in (message.get("correlationId") or {}).values():
                assert RUNTIME_EXPRESSION.match(expression)
        amqp = channel.get("bindings", {}).get("amqp")
        if amqp is not None:
            assert amqp["is"] in ("routingKey", "queue") and amqp["bindingVersion"] == "0.3.0"
    for operation in document["operations"].values():
        assert operation["action"] in ("send", "receive")
        channel = resolve(document, operation["channel"])
        for ref in operation["messages"]:
            assert ref["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
        reply = operation.get("reply")
        if reply:
            assert RUNTIME_EXPRESSION.match(reply["address"]["location"])
            for ref in reply["messages"]:
                assert ref["$ref"].startswith(reply["channel"]["$ref"] + "/messages/")
        assert channel["messages"]
    for kind in document.get("components", {}).values():
        assert all(COMPONENT_NAME.match(name) for name in kind)
    for ref in references(document):
        resolve(document, {"$ref": ref})


def references(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def resolve(document, ref):
    node = document
    for part in ref["$ref"].removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validate_payload(document, message_ref, body):
    """Validate a message body against its payload schema."""
    payload = resolve(document, message_ref)["payload"]
    # The payload's "#/components/..." references resolve against this root.
    Draft7Validator({**payload, "components": document.get("components", {})}).validate(body)


@pytest.fixture(scope="module")
def document():
    config = {"AMQP_URI": "amqp://guest:secret@rabbit.local:5673/prod"}
    document = asyncapi_document([Shop, Greeter, Listener], config=config)
    check_structure(document)
    json.dumps(document)  # plain JSON data
    return document


def test_every_messaging_entrypoint_and_publisher_is_an_operation(document):
    assert {op_id: op["action"] for op_id, op in document["operations"].items()} == {
        "greeter.hello": "receive",
        "greeter.shout": "receive",
        "greeter.audit.audit.greeting": "send",
        "greeter.dispatch.greeted": "send",
        "greeter.dispatch": "send",  # the event type is only known at run time
        "greeter.dispatch.ticked": "send",
        "listener.on_greeted": "receive",
        "listener.on_ticked": "receive",
        "listener.everywhere": "receive",
        "listener.log_audit": "receive",
    }
    assert document["x-timers"] == [
        {"service": "greeter", "method": "tick", "interval": 30, "eager": True}
    ]
    # The HTTP-only service is not part of this document.
    assert [tag["name"] for tag in document["info"]["tags"]] == ["greeter", "listener"]


def test_the_broker_is_named_without_credentials(document):
    assert document["servers"] == {
        "broker": {
            "host": "rabbit.local:5673",
            "protocol": "amqp",
            "protocolVersion": "0-9-1",
            "pathname": "/prod",
        }
    }
    assert "secret" not in json.dumps(document)
    assert "servers" not in asyncapi_document([Greeter], config={"AMQP_URI": "memory://"})


def test_rpc_requests_and_replies_follow_the_nameko_wire_format(document):
    operation = document["operations"]["greeter.hello"]
    assert operation["summary"] == "Greet someone."
    channel = resolve(document, operation["channel"])
    assert channel["address"] == "greeter.hello"
    assert channel["bindings"]["amqp"]["exchange"] == {
        "name": "nameko-rpc",
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "prod",
    }
    request = operation["messages"][0]
    validate_payload(document, request, {"args": ["Ada"], "kwargs": {}})
    validate_payload(document, request, {"args": [], "kwargs": {"who": "Ada", "polite": False}})
    with pytest.raises(Exception, match="is not of type"):
        validate_payload(document, request, {"args": [1], "kwargs": {}})
    with pytest.raises(Exception, match="Additional"):
        validate_payload(document, request, {"args": [], "kwargs": {"whom": "Ada"}})

    reply = operation["reply"]["messages"][0]
    validate_payload(document, reply, {"result": "hello Ada", "error": None})
    error = {"exc_type": "ValueError", "exc_path": "builtins.ValueError", "exc_args": []}
    validate_payload(document, reply, {"result": None, "error": {**error, "value": "no"}})
    with pytest.raises(Exception, match="is not valid under any"):
        validate_payload(document, reply, {"result": "hello Ada", "error": error})
    failure = resolve(document, reply)["payload"]["anyOf"][1]
    assert "ValueError" in failure["properties"]["error"]["description"]

    # *args and **kwargs take more arguments
    shout = document["operations"]["greeter.shout"]["messages"][0]
    validate_payload(document, shout, {"args": ["a", "b", "c"], "kwargs": {"loud": True}})


def test_rpc_exchange_name_comes_from_config():
    document = asyncapi_document([Greeter], config={"rpc_exchange": "my-rpc"})
    channel = resolve(document, document["operations"]["greeter.hello"]["channel"])
    assert channel["bindings"]["amqp"]["exchange"]["name"] == "my-rpc"


def test_dispatched_event_types_and_payloads_are_read_from_the_source(document):
    greeted = resolve(document, document["operations"]["greeter.dispatch.greeted"]["channel"])
    assert greeted["address"] == "greeted"
    assert greeted["bindings"]["amqp"]["exchange"]["name"] == "greeter.events"
    # The literal's keys, typed from the method's hints and the literal's values.
    assert greeted["messages"]["event"]["payload"] == {
        "type": "object",
        "properties": {"who": {"type": "string"}, "count": {"type": "integer"}},
        "required": ["who", "count"],
    }
    ticked = resolve(document, document["operations"]["greeter.dispatch.ticked"]["channel"])
    assert ticked["messages"]["event"]["payload"] == {"$ref": "#/components/schemas/Greeting"}
    dynamic = resolve(document, document["operations"]["greeter.dispatch"]["channel"])
    assert dynamic["address"] == "{routing_key}"
    assert "routing_key" in dynamic["parameters"]


def test_a_handler_and_a_dispatcher_of_one_event_share_its_channel(document):
    handled = document["operations"]["listener.on_greeted"]
    assert handled["channel"] == document["operations"]["greeter.dispatch.greeted"]["channel"]
    assert handled["summary"] == "Count greetings."
    assert "One instance of the service" in handled["description"]
    assert (
        "One handler in the whole cluster"
        in document["operations"]["listener.on_ticked"]["description"]
    )
    assert "Every instance" in document["operations"]["listener.everywhere"]["description"]


def test_consumers_and_publishers(document):
    consumer = document["operations"]["listener.log_audit"]
    queue = resolve(document, consumer["channel"])
    assert queue["address"] == "audit-log"
    assert queue["bindings"]["amqp"]["is"] == "queue"
    assert queue["bindings"]["amqp"]["queue"]["name"] == "audit-log"
    assert "'audit'" in queue["description"] and "'audit.#'" in queue["description"]
    assert queue["messages"]["message"]["payload"] == {"$ref": "#/components/schemas/Greeting"}

    published = resolve(document, document["operations"]["greeter.audit.audit.greeting"]["channel"])
    assert published["address"] == "audit.greeting"
    assert published["bindings"]["amqp"]["exchange"]["name"] == "audit"
    assert published["messages"]["message"]["payload"] == {"$ref": "#/components/schemas/Greeting"}


def test_a_publishers_default_routing_key_and_unreadable_source():
    class Sender:
        name = "sender"
        out = Publisher(exchange=kombu.Exchange("out"), routing_key="fixed")
        dispatch = EventDispatcher()

        @rpc
        def send(self):
            self.out("x")

    namespace = {}
    source = """
    from sandbox.events import EventDispatcher
    from sandbox.rpc import ClusterRpc, RpcProxy, rpc

    class Typed:
        name = "typed"
        dispatch = EventDispatcher()

        @rpc
        def go(self):
            self.dispatch("went", 1)
    """
    exec(textwrap.dedent(source), namespace)  # no file: inspect cannot find its source

    document = asyncapi_document([Sender, namespace["Typed"]], config={})
    check_structure(document)
    operations = document["operations"]
    assert resolve(document, operations["sender.out.fixed"]["channel"])["address"] == "fixed"
    # dispatch is never called: its event types are unknown, not absent
    assert resolve(document, operations["sender.dispatch"]["channel"])["address"] == (
        "{routing_key}"
    )
    assert "typed.dispatch" in operations


def test_operation_messages_validate_real_event_bodies(document):
    event = document["operations"]["listener.on_greeted"]["messages"][0]
    validate_payload(document, event, {"who": "Ada", "count": 2})
    with pytest.raises(Exception, match="'count' is a required property"):
        validate_payload(document, event, {"who": "Ada"})


class Caller:
    name = "caller"
    greeter = RpcProxy("greeter")
    cluster = ClusterRpc()

    @rpc
    def go(self, who: str):
        self.greeter.hello(who, polite=False)
        self.cluster.billing.charge.call_async(12.5, *[])
        return self.greeter  # not a call


@pytest.mark.parametrize("order", [(Caller, Greeter), (Greeter, Caller)])
def test_rpc_calls_through_proxies_are_send_operations(order):
    document = asyncapi_document(order, config={})
    check_structure(document)
    hello = document["operations"]["caller.greeter.greeter.hello"]
    assert hello["action"] == "send"
    assert hello["channel"] == document["operations"]["greeter.hello"]["channel"]
    # Whatever the order, the server's signature describes the request.
    request = resolve(document, hello["messages"][0])["payload"]
    assert request["properties"]["args"]["items"][0] == {"type": "string", "title": "who"}
    validate_payload(document, hello["reply"]["messages"][0], {"result": "hi", "error": None})


def test_a_call_site_describes_a_method_no_documented_service_serves():
    document = asyncapi_document([Caller], config={})
    check_structure(document)
    assert set(document["operations"]) == {
        "caller.go",
        "caller.greeter.greeter.hello",
        "caller.cluster.billing.charge",
    }
    hello = document["operations"]["caller.greeter.greeter.hello"]["messages"][0]
    validate_payload(document, hello, {"args": ["Ada"], "kwargs": {"polite": False}})
    with pytest.raises(Exception, match="Additional"):
        validate_payload(document, hello, {"args": ["Ada"], "kwargs": {"other": 1}})
    charge = document["operations"]["caller.cluster.billing.charge"]["messages"][0]
    validate_payload(document, charge, {"args": [12.5, "more"], "kwargs": {}})
