"""Test code that uses eventlet reaches the services, as under Nameko: its timeouts fire and its
green threads run while it waits for the services, without monkey patching."""

import threading

import eventlet
import greenlet
import pytest

from sandbox.exceptions import MethodNotFound
from sandbox.rpc import rpc
from sandbox.standalone.rpc import ServiceRpcProxy
from sandbox.testing.services import (
    dummy,
    entrypoint_hook,
    entrypoint_waiter,
    restrict_entrypoints,
)


class Sleepy:
    name = "sleepy"

    @rpc
    def sleep(self, seconds):
        eventlet.sleep(seconds)
        return seconds

    @rpc
    def echo(self, value):
        return value

    @dummy
    def other(self):
        pass


@pytest.fixture
def sleepy(rabbit_config, container_factory):
    container = container_factory(Sleepy, rabbit_config)
    container.start()
    return container


def test_an_eventlet_timeout_in_test_code_ends_an_rpc_call(sleepy, rabbit_config):
    with ServiceRpcProxy("sleepy", rabbit_config) as proxy:
        with pytest.raises(eventlet.Timeout), eventlet.Timeout(0.1):
            proxy.sleep(seconds=30)
        # The proxy still works, and the late answer of the abandoned call is not taken for this
        # one's.
        assert proxy.echo("after") == "after"


def test_an_eventlet_timeout_in_test_code_ends_a_hook(sleepy):
    with entrypoint_hook(sleepy, "sleep") as sleep:
        timeout = eventlet.Timeout(0.1)
        with pytest.raises(eventlet.Timeout), timeout:
            sleep(30)


def test_green_threads_of_the_test_run_while_a_hook_waits(sleepy):
    ran = []

    def beside():
        ran.append("beside")

    eventlet.spawn(beside)
    with entrypoint_hook(sleepy, "sleep") as sleep:
        assert sleep(0.2) == 0.2
    assert ran == ["beside"]


def test_green_threads_of_the_test_call_services_while_a_waiter_waits(sleepy, rabbit_config):
    with ServiceRpcProxy("sleepy", rabbit_config) as proxy:
        with entrypoint_waiter(sleepy, "echo") as result:
            calls = [eventlet.spawn(proxy.echo, n) for n in range(3)]
        assert result.get() in {0, 1, 2}
        assert [call.wait() for call in calls] == [0, 1, 2]


def test_a_managed_thread_spawned_by_test_code_runs_in_the_hub(sleepy):
    ran_in = []
    thread = sleepy.spawn_managed_thread(lambda: ran_in.append(threading.current_thread().name))
    thread.wait()
    assert thread.dead and ran_in == ["sandbox-hub"]


def test_a_failing_managed_thread_spawned_by_test_code_kills_the_container(sleepy):
    def fail():
        raise ValueError("managed")

    sleepy.spawn_managed_thread(fail)
    with pytest.raises(ValueError, match="managed"):
        sleepy.wait()


def test_a_managed_thread_spawned_by_test_code_can_be_killed(sleepy):
    thread = sleepy.spawn_managed_thread(lambda: eventlet.sleep(30))
    thread.kill()
    with pytest.raises(greenlet.GreenletExit):
        thread.wait()
    assert thread.dead


def test_restricting_to_another_entrypoint_keeps_rpc_answering_method_not_found(
    rabbit_config, container_factory
):
    container = container_factory(Sleepy, rabbit_config)
    restrict_entrypoints(container, "other")
    container.start()
    with ServiceRpcProxy("sleepy", rabbit_config) as proxy, pytest.raises(MethodNotFound):
        proxy.echo(1)
