import json

from sandbox import serialization
from sandbox.rpc import rpc
from sandbox.standalone.rpc import ServiceRpcProxy


def test_defaults_accept_only_the_serializer():
    assert serialization.setup({}) == ("json", ["json"])
    assert serialization.setup({"serializer": "pickle"}) == ("pickle", ["pickle"])
    assert serialization.setup({"ACCEPT": ["json", "pickle"]}).accept == ["json", "pickle"]


def tagged_dumps(value):
    return "tagged:" + json.dumps(value)


def tagged_loads(text):
    # py-amqp hands a decoder text; the embedded broker's transport hands it bytes.
    text = text.decode() if isinstance(text, bytes) else text
    assert text.startswith("tagged:"), "not written by tagged_dumps"
    return json.loads(text.removeprefix("tagged:"))


TAGGED = {
    "SERIALIZERS": {
        "tagged": {
            "encoder": f"{__name__}:tagged_dumps",
            "decoder": f"{__name__}:tagged_loads",
            "content_type": "application/x-tagged",
        }
    },
}


class Echo:
    name = "echo"

    @rpc
    def echo(self, value):
        return value


def test_custom_serializers_and_replies_in_the_request_s_serializer(
    rabbit_config, container_factory
):
    service_config = {**rabbit_config, **TAGGED, "ACCEPT": ["json", "tagged"]}
    container_factory(Echo, service_config).start()
    # This client accepts tagged replies only: the service answers in its request's serializer.
    with ServiceRpcProxy("echo", {**rabbit_config, **TAGGED, "serializer": "tagged"}) as echo:
        assert echo.echo({"a": [1]}) == {"a": [1]}
    with ServiceRpcProxy("echo", rabbit_config) as echo:
        assert echo.echo("json") == "json"
