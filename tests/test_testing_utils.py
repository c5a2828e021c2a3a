"""sandbox.testing.utils: Nameko's test helpers, with services running in the runtime's hub."""

import functools
import threading
from unittest.mock import Mock, call

import eventlet
import pytest

from sandbox.extensions import Entrypoint
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.testing.utils import (
    ANY_PARTIAL,
    AnyInstanceOf,
    DummyProvider,
    ResourcePipeline,
    assert_stops_raising,
    unpack_mock_call,
    wait_for_call,
    wait_for_worker_idle,
)


class Doubler:
    name = "doubler"

    @rpc
    def double(self, value):
        return value * 2


def test_wait_for_call_returns_once_the_hub_calls_the_mock():
    called = Mock()
    get_runtime().submit(lambda: (eventlet.sleep(0.05), called("from the hub")))
    with wait_for_call(30, called) as waited:
        assert waited is called
    called.assert_called_once_with("from the hub")


def test_wait_for_call_lets_the_test_s_green_threads_run():
    called = Mock()
    eventlet.spawn(called)
    with wait_for_call(30, called):
        pass
    assert called.called


def test_wait_for_call_times_out_with_eventlet_timeout():
    with pytest.raises(eventlet.Timeout), wait_for_call(0.05, Mock()):
        pass


def test_dummy_provider_spawns_a_worker_by_hand(container_factory):
    container = container_factory(Doubler)
    container.start()
    handle_result = Mock(return_value=(42, None))
    entrypoint = DummyProvider("double")
    assert isinstance(entrypoint, Entrypoint) and entrypoint.method_name == "double"

    get_runtime().call(container.spawn_worker, entrypoint, (21,), {}, None, handle_result)
    with wait_for_call(30, handle_result):
        worker_ctx, result, exc_info = handle_result.call_args.args
    assert (worker_ctx.entrypoint, result, exc_info) == (entrypoint, 42, None)


def test_wait_for_worker_idle_is_deprecated_and_waits(container_factory):
    container = container_factory(Doubler)
    container.start()
    with pytest.warns(DeprecationWarning, match="entrypoint_waiter"):
        wait_for_worker_idle(container, timeout=30)


def test_assert_stops_raising_retries_until_fn_succeeds():
    outcomes = iter([ValueError(), ValueError(), None])

    def fn():
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome

    assert_stops_raising(fn, ValueError, timeout=30, interval=0.01)
    assert next(outcomes, "exhausted") == "exhausted"


def test_assert_stops_raising_lets_other_errors_through_and_times_out():
    def broken():
        raise KeyError("other")

    with pytest.raises(KeyError):
        assert_stops_raising(broken, ValueError, timeout=30)

    def never():
        raise ValueError()

    with pytest.raises(eventlet.Timeout):
        assert_stops_raising(never, timeout=0.05, interval=0.01)


def test_unpack_mock_call_reads_call_args_and_mock_calls():
    recorder = Mock()
    recorder(1, 2, flag=True)
    for recorded in (recorder.call_args, recorder.mock_calls[0], call(1, 2, flag=True)):
        positional, keyword = unpack_mock_call(recorded)
        assert (positional, keyword) == ((1, 2), {"flag": True})
    assert unpack_mock_call(recorder.call_args).keyword == {"flag": True}


def test_any_partial_matches_partials_only():
    recorder = Mock()
    recorder(functools.partial(print, "x"))
    recorder.assert_called_once_with(ANY_PARTIAL)
    assert print != ANY_PARTIAL
    assert AnyInstanceOf(int) == 3 and AnyInstanceOf(int) != "3"
    assert repr(ANY_PARTIAL) == "<AnyInstanceOf-partial>"


def test_resource_pipeline_creates_ahead_and_destroys_everything():
    counter = iter(range(1000))
    destroyed = []
    lock = threading.Lock()

    def destroy(item):
        with lock:
            destroyed.append(item)

    pipeline = ResourcePipeline(lambda: next(counter), destroy, size=2)
    with pipeline.run():
        with pipeline.get() as first:
            assert first == 0
        assert_stops_raising(lambda: _assert_equal(destroyed, [0]), AssertionError, timeout=30)
        assert_stops_raising(lambda: _assert_equal(pipeline.ready.qsize(), 2), AssertionError)
        with pipeline.get() as second:
            assert second == 1
    made = next(counter)  # what the creator made before it stopped: all destroyed
    assert sorted(destroyed) == list(range(made))


def _assert_equal(actual, expected):
    assert actual == expected


def test_resource_pipeline_get_raises_what_create_raised():
    def create():
        raise OSError("no vhost for you")

    pipeline = ResourcePipeline(create, Mock())
    with pipeline.run():
        for _ in range(2):
            with pytest.raises(OSError, match="no vhost for you"), pipeline.get():
                pass


def test_resource_pipeline_refuses_size_zero():
    with pytest.raises(RuntimeError, match="at least 1"):
        ResourcePipeline(Mock(), Mock(), size=0)
