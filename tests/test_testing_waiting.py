"""sandbox.testing.waiting: wait in the test for a call that a service makes in the hub."""

import eventlet
import pytest

from sandbox.testing.services import once
from sandbox.testing.waiting import WaitResult, wait_for_call
from sandbox.timer import timer


class Sink:
    def __init__(self):
        self.values = []

    def put(self, value):
        if value < 0:
            raise ValueError(value)
        self.values.append(value)
        return len(self.values)


sink = Sink()


class Counter:
    name = "counter"
    count = 0

    @timer(interval=0.01)
    def tick(self):
        Counter.count += 1
        sink.put(Counter.count)


@pytest.fixture(autouse=True)
def fresh_sink():
    sink.values.clear()
    Counter.count = 0


def test_the_block_ends_once_the_service_made_the_call(container_factory):
    container = container_factory(Counter)
    with wait_for_call(sink, "put") as result:
        container.start()
    assert result.get() == 1
    assert sink.values[0] == 1
    assert "put" not in vars(sink)  # the patch is gone


def test_a_callback_picks_the_awaited_call(container_factory):
    container = container_factory(Counter)

    def third(args, kwargs, res, exc_info):
        return args == (3,)

    with wait_for_call(sink, "put", callback=third) as result:
        container.start()
    assert result.get() == 3
    assert sink.values[:3] == [1, 2, 3]


def test_the_call_s_error_is_kept_and_raised_by_get(container_factory):
    class Feeder:
        name = "feeder"

        @once(-1)
        def feed(self, value):
            sink.put(value)

    container = container_factory(Feeder)
    with wait_for_call(sink, "put") as result:
        container.start()
    with pytest.raises(ValueError, match="-1"):
        result.get()


def test_get_before_the_call_is_not_ready():
    result = WaitResult()
    assert not result.has_result
    with pytest.raises(WaitResult.NotReady):
        result.get()
    result.send("first", None)
    result.send("second", None)
    assert result.get() == "first"


def test_an_eventlet_timeout_bounds_the_wait():
    with pytest.raises(eventlet.Timeout), eventlet.Timeout(0.05), wait_for_call(sink, "put"):
        pass
    assert "put" not in vars(sink)


def test_calls_go_through_to_the_original(container_factory):
    class Once:
        name = "once"

        @once(7)
        def feed(self, value):
            return sink.put(value)

    container = container_factory(Once)
    with wait_for_call(sink, "put") as result:
        container.start()
    assert result.get() == 1
    assert sink.values == [7]
