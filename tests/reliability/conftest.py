"""Fixtures of the reliability tests."""

import pytest
from reliability_tools import RawAmqp


@pytest.fixture
def raw_amqp(rabbit_config):
    """A raw AMQP client of the test's broker (see RawAmqp)."""
    client = RawAmqp(rabbit_config["AMQP_URI"])
    yield client
    client.close()
