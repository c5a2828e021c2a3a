import threading

import eventlet
import eventlet.event
import pytest
from polling import wait_until

from sandbox.containers import ServiceContainer, get_service_name
from sandbox.exceptions import (
    ConfigurationError,
    ContainerBeingKilled,
    ExtensionNotFound,
    WorkerTimeout,
)
from sandbox.extensions import DependencyProvider, Entrypoint
from sandbox.runtime import get_runtime
from sandbox.testing.services import dummy, entrypoint_hook, entrypoint_waiter

calls = []


class Recording(DependencyProvider):
    def setup(self):
        calls.append(("setup", self.attr_name))

    def start(self):
        calls.append(("start", self.attr_name))

    def stop(self):
        calls.append(("stop", self.attr_name))

    def get_dependency(self, worker_ctx):
        calls.append(("get_dependency", worker_ctx.entrypoint.method_name))
        return "injected"

    def worker_setup(self, worker_ctx):
        calls.append(("worker_setup", worker_ctx.entrypoint.method_name))

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        calls.append(("worker_result", result, exc_info and exc_info[0].__name__))

    def worker_teardown(self, worker_ctx):
        calls.append(("worker_teardown", worker_ctx.entrypoint.method_name))


class Service:
    name = "service"
    dep = Recording()

    @dummy
    def echo(self, value):
        calls.append(("method", self.dep))
        return value

    @dummy
    def fail(self):
        calls.append(("method", "fail"))
        raise ValueError("nope")


@pytest.fixture(autouse=True)
def reset_calls():
    calls.clear()


def test_service_name_must_be_a_str():
    class NoName:
        pass

    class IntName:
        name = 5

    with pytest.raises(ConfigurationError, match="must define a `name`"):
        get_service_name(NoName)
    with pytest.raises(ConfigurationError, match="must be a str"):
        ServiceContainer(IntName, {})


@pytest.mark.parametrize("kind", ["coroutine", "async generator"])
def test_async_entrypoints_are_refused(kind):
    if kind == "coroutine":

        class Calc:
            name = "calc"

            @dummy
            async def add(self, a, b):
                return a + b
    else:

        class Calc:
            name = "calc"

            @dummy
            async def add(self, a, b):
                yield a + b

    with pytest.raises(ConfigurationError) as raised:
        ServiceContainer(Calc, {})
    assert str(raised.value) == (
        "Calc.add is async def; entrypoints run in green threads, define it with def"
    )


def test_extensions_are_bound_copies(container_factory):
    container = container_factory(Service, {})
    (dep,) = container.dependencies
    assert dep is not Service.dep and dep.attr_name == "dep" and dep.container is not None
    assert {e.method_name for e in container.entrypoints} == {"echo", "fail"}


def test_worker_lifecycle_order(container_factory):
    container = container_factory(Service, {})
    container.start()
    assert calls == [("setup", "dep"), ("start", "dep")]
    calls.clear()
    with entrypoint_hook(container, "echo") as echo:
        assert echo("hi") == "hi"
    assert calls == [
        ("get_dependency", "echo"),
        ("worker_setup", "echo"),
        ("method", "injected"),
        ("worker_result", "hi", None),
        ("worker_teardown", "echo"),
    ]


def test_worker_error_reaches_worker_result_and_caller(container_factory):
    container = container_factory(Service, {})
    container.start()
    with entrypoint_hook(container, "fail") as fail, pytest.raises(ValueError, match="nope"):
        fail()
    assert ("worker_result", None, "ValueError") in calls
    assert calls[-1] == ("worker_teardown", "fail")
    # A failing worker does not kill the container.
    with entrypoint_hook(container, "echo") as echo:
        assert echo(1) == 1


def test_fresh_service_instance_per_worker(container_factory):
    instances = []

    class Svc:
        name = "svc"

        @dummy
        def remember(self):
            instances.append(self)

    container = container_factory(Svc, {})
    container.start()
    with entrypoint_hook(container, "remember") as remember:
        remember()
        remember()
    assert len(instances) == 2 and instances[0] is not instances[1]


def test_max_workers_bound_under_100_concurrent_triggers(container_factory):
    state = {"busy": 0, "peak": 0, "done": 0}

    class Svc:
        name = "bounded"

        @dummy
        def work(self):
            state["busy"] += 1
            state["peak"] = max(state["peak"], state["busy"])
            eventlet.sleep(0.001)
            state["busy"] -= 1
            state["done"] += 1

    container = container_factory(Svc, {"max_workers": 4})
    container.start()
    (entrypoint,) = container.entrypoints

    def trigger_100():
        pool = eventlet.GreenPool()
        for _ in range(100):
            pool.spawn(container.spawn_worker, entrypoint, (), {})
        pool.waitall()
        container._drain_workers()

    get_runtime().call(trigger_100, timeout=30)
    assert state == {"busy": 0, "peak": 4, "done": 100}


def test_set_max_workers_resizes_the_pool_of_a_running_container(container_factory):
    first, second = eventlet.event.Event(), eventlet.event.Event()
    state = {"started": 0, "done": 0}

    class Svc:
        name = "resized"

        @dummy
        def work(self):
            number = state["started"]
            state["started"] += 1
            (first if number < 3 else second).wait()
            state["done"] += 1

    container = container_factory(Svc, {"max_workers": 1})
    container.start()
    (entrypoint,) = container.entrypoints

    def trigger(count):
        for _ in range(count):
            eventlet.spawn(container.spawn_worker, entrypoint, (), {})

    get_runtime().call(trigger, 6)
    wait_until(lambda: state["started"] == 1)
    container.set_max_workers(3)  # grows at once: two waiting workers start
    wait_until(lambda: state["started"] == 3)
    assert container.busy_workers == 3

    container.set_max_workers(2)  # the three busy ones finish; then two run at a time
    get_runtime().call(first.send, None)
    wait_until(lambda: state["done"] == 3 and state["started"] == 5)
    assert container.busy_workers == 2 and container.max_workers == 2
    get_runtime().call(second.send, None)
    wait_until(lambda: state["done"] == 6)
    with pytest.raises(ValueError, match="positive integer"):
        container.set_max_workers(0)


def test_failing_managed_thread_kills_container_and_wait_reraises(container_factory):
    class Boom(Exception):
        pass

    class Crasher(Entrypoint):
        def start(self):
            def crash():
                eventlet.sleep(0)
                raise Boom("managed thread failed")

            self.container.spawn_managed_thread(crash, identifier="crasher")

    class Svc:
        name = "crashing"

        @Crasher.decorator
        def method(self):
            pass

    container = container_factory(Svc, {})
    container.start()
    with pytest.raises(Boom, match="managed thread failed"):
        container.wait()
    assert not container.started


def test_graceful_stop_waits_for_in_flight_workers(container_factory):
    release = eventlet.event.Event()
    finished = []

    class Svc:
        name = "slow"

        @dummy
        def slow(self):
            release.wait()
            finished.append(True)

    container = container_factory(Svc, {})
    container.start()
    (entrypoint,) = container.entrypoints
    get_runtime().call(container.spawn_worker, entrypoint, (), {})
    stopper = threading.Thread(target=container.stop)
    stopper.start()
    stopper.join(0.2)
    assert stopper.is_alive(), "stop returned while a worker was still busy"
    get_runtime().call(release.send, None)
    stopper.join(5)
    assert not stopper.is_alive() and finished == [True]


def test_work_waiting_for_a_slot_when_a_stop_begins_is_refused_not_run(container_factory):
    release = eventlet.event.Event()
    started, refused = [], []

    class Returnable(Entrypoint):
        returns_unstarted_work = True  # as a message's work: it can go back to its queue

    class Svc:
        name = "full"

        @Returnable.decorator
        def work(self, n):
            started.append(n)
            release.wait()

    container = container_factory(Svc, {"max_workers": 1})
    container.start()
    (entrypoint,) = container.entrypoints

    def trigger(n):
        try:
            container.spawn_worker(entrypoint, (n,), {})
        except ContainerBeingKilled:
            refused.append(n)  # an RPC request would go back to its queue

    get_runtime().call(lambda: [eventlet.spawn(trigger, n) for n in (1, 2)])
    wait_until(lambda: started == [1])
    stopper = threading.Thread(target=container.stop)
    stopper.start()
    wait_until(lambda: container.stopping)
    get_runtime().call(release.send, None)
    stopper.join(10)
    assert not stopper.is_alive()
    wait_until(lambda: refused == [2])
    assert started == [1]


def test_stop_with_timeout_kills_stuck_workers(container_factory):
    finished = []

    class Svc:
        name = "stuck"

        @dummy
        def stuck(self):
            eventlet.sleep(30)
            finished.append(True)

    container = container_factory(Svc, {})
    container.start()
    (entrypoint,) = container.entrypoints
    get_runtime().call(container.spawn_worker, entrypoint, (), {})
    container.stop(timeout=0.1)
    assert finished == [] and container.busy_workers == 0


def test_kill_does_not_wait_for_workers(container_factory):
    torn_down = []

    class Svc:
        name = "killed"

        @dummy
        def slow(self):
            try:
                eventlet.sleep(30)
            finally:
                torn_down.append(True)

    container = container_factory(Svc, {})
    container.start()
    (entrypoint,) = container.entrypoints
    get_runtime().call(container.spawn_worker, entrypoint, (), {})
    get_runtime().call(eventlet.sleep, 0)
    container.kill()
    container.wait()
    assert torn_down == [True]
    with pytest.raises(ContainerBeingKilled):
        get_runtime().call(container.spawn_worker, entrypoint, (), {})


def test_entrypoint_waiter_sees_worker_result(container_factory):
    container = container_factory(Service, {})
    container.start()
    (entrypoint,) = [e for e in container.entrypoints if e.method_name == "echo"]
    with entrypoint_waiter(container, "echo") as result:
        get_runtime().call(container.spawn_worker, entrypoint, ("async",), {})
    assert result.get() == "async"


def test_entrypoint_waiter_callback_and_timeout(container_factory):
    container = container_factory(Service, {})
    container.start()
    (entrypoint,) = [e for e in container.entrypoints if e.method_name == "echo"]

    def only_three(worker_ctx, result, exc_info):
        return result == 3

    with entrypoint_waiter(container, "echo", callback=only_three) as result:
        for i in range(5):
            get_runtime().call(container.spawn_worker, entrypoint, (i,), {})
    assert result.get() == 3
    with (
        pytest.raises(entrypoint_waiter.Timeout),
        # Workers 0-4 may still be finishing: only a worker that never comes may time out.
        entrypoint_waiter(container, "echo", timeout=0.05, callback=lambda *_: False),
    ):
        pass


def test_run_worker_runs_inline_and_shares_the_bound(container_factory):
    state = {"busy": 0, "peak": 0}

    class Svc:
        name = "inline"

        @dummy
        def work(self):
            state["busy"] += 1
            state["peak"] = max(state["peak"], state["busy"])
            eventlet.sleep(0.001)
            state["busy"] -= 1
            return eventlet.getcurrent()

    container = container_factory(Svc, {"max_workers": 3})
    container.start()
    (entrypoint,) = container.entrypoints

    def mixed():
        results = []

        def inline():
            kept = []
            container.run_worker(
                entrypoint, (), {}, handle_result=lambda c, r, e: kept.append(r) or (r, e)
            )
            results.append(kept[0] is eventlet.getcurrent())

        pool = eventlet.GreenPool()
        for i in range(30):
            pool.spawn(
                inline if i % 2 else container.spawn_worker,
                *(() if i % 2 else (entrypoint, (), {})),
            )
        pool.waitall()
        container._drain_workers()
        return results

    results = get_runtime().call(mixed, timeout=30)
    assert results == [True] * 15, "inline workers run in the caller's green thread"
    assert state["peak"] == 3 and container.busy_workers == 0


def test_kill_fails_inline_workers_instead_of_ending_their_thread(container_factory):
    class Svc:
        name = "inline-killed"

        @dummy
        def slow(self):
            eventlet.sleep(30)

    container = container_factory(Svc, {})
    container.start()
    (entrypoint,) = container.entrypoints

    def caller():
        outcome = []
        container.run_worker(
            entrypoint, (), {}, handle_result=lambda c, r, e: outcome.append(e) or (r, e)
        )
        return outcome[0][0]

    def scenario():
        thread = eventlet.spawn(caller)
        eventlet.sleep(0)
        container._kill()
        return thread.wait()

    assert get_runtime().call(scenario, timeout=10) is ContainerBeingKilled


class Worked:
    name = "worked"

    @dummy
    def double(self, value):
        return value * 2

    @dummy
    def fail(self):
        raise ValueError("failed")

    @dummy
    def slow(self):
        eventlet.sleep(30)


def test_run_entrypoint_returns_raises_and_times_out(container_factory):
    container = container_factory(Worked, {})
    container.start()
    assert container.run_entrypoint("double", [21]) == 42
    with pytest.raises(ValueError, match="failed"):
        container.run_entrypoint("fail")
    with pytest.raises(WorkerTimeout, match="worked.slow ran past 0.1s"):
        container.run_entrypoint("slow", timeout=0.1)
    with pytest.raises(ExtensionNotFound, match="No entrypoint for 'missing'"):
        container.run_entrypoint("missing")
