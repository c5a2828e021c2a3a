"""Fixtures of the reliability tests."""

import pytest
from reliability_tools import RawAmqp

from sandbox import recorder


@pytest.fixture
def raw_amqp(rabbit_config):
    """A raw AMQP client of the test's broker (see RawAmqp)."""
    client = RawAmqp(rabbit_config["AMQP_URI"])
    yield client
    client.close()


class Published:
    """A recorder observer: every message published, as the recorder is told of it."""

    def __init__(self):
        self.messages = []

    def message_published(self, info):
        self.messages.append(info)


@pytest.fixture
def published():
    """What was published during the test: RPC requests with their reply_to, events..."""
    observer = Published()
    recorder.add_observer(observer)
    yield observer
    recorder.remove_observer(observer)
