"""sandbox.constants: nameko.constants' names and values, and the one definition sandbox uses."""

import pytest

from sandbox import constants
from sandbox.amqp.consume import AmqpConsumer
from sandbox.amqp.publish import AmqpPublisher
from sandbox.containers import ServiceContainer
from sandbox.testing.services import once

# nameko/constants.py of Nameko 2.14.1, but for the retry policies (below).
NAMEKO_2_14_1 = {
    "AMQP_URI_CONFIG_KEY": "AMQP_URI",
    "WEB_SERVER_CONFIG_KEY": "WEB_SERVER_ADDRESS",
    "RPC_EXCHANGE_CONFIG_KEY": "rpc_exchange",
    "SERIALIZER_CONFIG_KEY": "serializer",
    "SERIALIZERS_CONFIG_KEY": "SERIALIZERS",
    "ACCEPT_CONFIG_KEY": "ACCEPT",
    "HEARTBEAT_CONFIG_KEY": "HEARTBEAT",
    "AMQP_SSL_CONFIG_KEY": "AMQP_SSL",
    "TRANSPORT_OPTIONS_CONFIG_KEY": "TRANSPORT_OPTIONS",
    "LOGIN_METHOD_CONFIG_KEY": "LOGIN_METHOD",
    "MAX_WORKERS_CONFIG_KEY": "max_workers",
    "PARENT_CALLS_CONFIG_KEY": "parent_calls_tracked",
    "DEFAULT_MAX_WORKERS": 10,
    "DEFAULT_PARENT_CALLS_TRACKED": 10,
    "DEFAULT_SERIALIZER": "json",
    "DEFAULT_HEARTBEAT": 60,
    "CALL_ID_STACK_CONTEXT_KEY": "call_id_stack",
    "AUTH_TOKEN_CONTEXT_KEY": "auth_token",
    "LANGUAGE_CONTEXT_KEY": "language",
    "USER_ID_CONTEXT_KEY": "user_id",
    "USER_AGENT_CONTEXT_KEY": "user_agent",
    "HEADER_PREFIX": "nameko",
    "NON_PERSISTENT": 1,
    "PERSISTENT": 2,
}


@pytest.mark.parametrize("name", sorted(NAMEKO_2_14_1))
def test_nameko_s_names_have_nameko_s_values(name):
    assert getattr(constants, name) == NAMEKO_2_14_1[name]


@pytest.mark.parametrize("name", ["DEFAULT_RETRY_POLICY", "DEFAULT_TRANSPORT_OPTIONS"])
def test_retry_policies_retry_as_often_as_nameko_s_and_start_at_once(name):
    policy = getattr(constants, name)
    assert policy["max_retries"] == 3
    assert policy["interval_start"] == 0


def test_publishers_and_consumers_default_to_these_policies():
    assert AmqpPublisher("memory://").retry_policy == constants.DEFAULT_RETRY_POLICY
    assert AmqpConsumer("memory://").retry_policy == constants.DEFAULT_TRANSPORT_OPTIONS


def test_a_container_reads_the_keys_it_names():
    class Quiet:
        name = "quiet"

        @once()
        def method(self):
            pass

    container = ServiceContainer(
        Quiet,
        {
            constants.MAX_WORKERS_CONFIG_KEY: 3,
            constants.PARENT_CALLS_CONFIG_KEY: 4,
            constants.SERIALIZER_CONFIG_KEY: "pickle",
        },
    )
    assert (container.max_workers, container.parent_calls_tracked) == (3, 4)
    assert (container.serializer, container.accept) == ("pickle", ["pickle"])
