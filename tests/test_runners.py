import threading

import pytest

from sandbox.containers import ServiceContainer
from sandbox.extensions import Entrypoint
from sandbox.runners import run_services
from sandbox.testing.services import dummy, entrypoint_hook
from sandbox.testing.utils import get_container, get_extension

events = []


class Lifecycle(Entrypoint):
    def start(self):
        events.append(("start", self.container.service_name))

    def stop(self):
        events.append(("stop", self.container.service_name))

    def kill(self):
        events.append(("kill", self.container.service_name))


class Foo:
    name = "foo"

    @Lifecycle.decorator
    def method(self):
        return "foo"


class Bar:
    name = "bar"

    @Lifecycle.decorator
    @dummy
    def method(self):
        return "bar"


@pytest.fixture(autouse=True)
def clear():
    events.clear()


def test_runner_starts_and_stops_all(runner_factory):
    runner = runner_factory({}, Foo, Bar)
    assert sorted(runner.service_names) == ["bar", "foo"]
    runner.start()
    assert sorted(events) == [("start", "bar"), ("start", "foo")]
    with entrypoint_hook(get_container(runner, Bar), "method") as method:
        assert method() == "bar"
    runner.stop()
    assert sorted(events[2:]) == [("stop", "bar"), ("stop", "foo")]
    runner.wait()


def test_runner_kill(runner_factory):
    runner = runner_factory(Foo)
    runner.start()
    runner.kill()
    assert events[-1] == ("kill", "foo")


def test_wait_stops_the_others_when_one_dies(runner_factory):
    runner = runner_factory({}, Foo, Bar)
    runner.start()
    foo = get_container(runner, Foo)

    class Died(Exception):
        pass

    def kill_foo_soon():
        foo.kill((Died, Died("foo died"), None))

    threading.Timer(0.05, kill_foo_soon).start()
    with pytest.raises(Died):
        runner.wait()
    assert ("stop", "bar") in events


def test_run_services_context_manager_both_signatures():
    with run_services({}, Foo) as runner:
        assert runner.service_names == ["foo"]
    assert ("stop", "foo") in events
    events.clear()
    with run_services(Foo, Bar, kill_on_exit=True) as runner:
        pass
    assert sorted(e for e in events if e[0] == "kill") == [("kill", "bar"), ("kill", "foo")]


def test_get_extension_and_get_container(runner_factory):
    runner = runner_factory(Foo)
    container = get_container(runner, Foo)
    assert isinstance(container, ServiceContainer)
    assert get_extension(container, Lifecycle, method_name="method") is not None
    assert get_extension(container, Lifecycle, method_name="nope") is None
    assert get_container(runner, Bar) is None
