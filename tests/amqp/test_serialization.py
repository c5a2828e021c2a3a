import json

import kombu
import kombu.exceptions
import kombu.serialization
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=20)
    | st.datetimes()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.uuids(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_is_written_and_read_as_kombu_writes_and_reads_it(value):
    payload = {"args": [value], "kwargs": {}}
    encoded = serialization.dumps(payload, "json")
    assert encoded == kombu.serialization.dumps(payload, "json")
    message = kombu.Message(
        body=encoded[2].encode(), content_type=encoded[0], content_encoding=encoded[1]
    )
    message.accept = kombu.serialization.prepare_accept_content(["json"])
    assert serialization.decode(message) == kombu.serialization.loads(
        encoded[2], encoded[0], encoded[1]
    )


def test_what_json_cannot_write_raises_kombu_s_encode_error():
    with pytest.raises(kombu.exceptions.EncodeError):
        serialization.dumps({"args": [object()]}, "json")


def test_a_body_json_refuses_is_still_refused():
    message = kombu.Message(body=b'{"a": 1}', content_type="application/json")
    message.accept = kombu.serialization.prepare_accept_content(["pickle"])
    with pytest.raises(kombu.exceptions.ContentDisallowed):
        serialization.decode(message)
    message.accept = kombu.serialization.prepare_accept_content(["json"])
    message.body = b"{not json"
    with pytest.raises(kombu.exceptions.DecodeError):
        serialization.decode(message)
