"""Fixtures of the broker feature tests."""

import pytest
from broker_tools import KombuClient

from sandbox.broker import Broker, ManualClock


@pytest.fixture
def client(rabbit_config) -> KombuClient:
    """kombu on the broker of ``rabbit_config`` (both brokers)."""
    return KombuClient(rabbit_config["AMQP_URI"], rabbit_config["vhost"])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def core(clock):
    """A channel of a fresh embedded broker that runs on ``clock``."""
    return Broker("/", clock=clock).connect().channel()
