"""A dependency hook that fails during a call kills its container, which dies for good.

On either broker, whatever the entrypoint: ``container.wait()`` and ``runner.wait()`` raise
the hook's error instead of waiting for ever.
"""

import pytest

from sandbox.events import event_handler
from sandbox.extensions import DependencyProvider
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ClusterRpcProxy
from sandbox.web.handlers import http

HOOKS = ["worker_setup", "worker_result", "worker_teardown"]
DEADLINE = 30  # seconds: generous, for a machine kept busy by other jobs


class HookFailed(Exception):
    pass


class FailingHook(DependencyProvider):
    """Fails the hook the container's config names in ``FAILING_HOOK``."""

    def _maybe_fail(self, hook):
        if self.container.config["FAILING_HOOK"] == hook:
            raise HookFailed(hook)

    def worker_setup(self, worker_ctx):
        self._maybe_fail("worker_setup")

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        self._maybe_fail("worker_result")

    def worker_teardown(self, worker_ctx):
        self._maybe_fail("worker_teardown")


class RpcService:
    name = "failing_rpc"
    hook = FailingHook()

    @rpc
    def call(self):
        return "called"


class EventService:
    name = "failing_events"
    hook = FailingHook()

    @event_handler("source", "happened")
    def handle(self, payload):
        return payload


class HttpService:
    name = "failing_http"
    hook = FailingHook()

    @http("GET", "/call")
    def call(self, request):
        return "called"


def wait_dead(waitable):
    """``waitable.wait()`` within the deadline: it raises what killed it, or TimeoutError."""
    get_runtime().call(waitable.wait, timeout=DEADLINE)


@pytest.mark.parametrize("hook", HOOKS)
def test_a_failing_hook_in_an_rpc_kills_the_container(rabbit_config, container_factory, hook):
    container = container_factory(RpcService, {**rabbit_config, "FAILING_HOOK": hook})
    container.start()
    with ClusterRpcProxy(rabbit_config) as cluster:
        cluster.failing_rpc.call.call_async()
        with pytest.raises(HookFailed, match=hook):
            wait_dead(container)


@pytest.mark.parametrize("hook", HOOKS)
def test_a_failing_hook_in_an_event_handler_kills_the_container(
    rabbit_config, container_factory, hook
):
    container = container_factory(EventService, {**rabbit_config, "FAILING_HOOK": hook})
    container.start()
    event_dispatcher(rabbit_config)("source", "happened", "payload")
    with pytest.raises(HookFailed, match=hook):
        wait_dead(container)


@pytest.mark.parametrize("hook", HOOKS)
def test_a_failing_hook_in_an_http_request_kills_the_container(
    container_factory, web_config, web_session, hook
):
    container = container_factory(HttpService, {**web_config, "FAILING_HOOK": hook})
    container.start()
    assert web_session.get("/call").status_code == 500
    with pytest.raises(HookFailed, match=hook):
        wait_dead(container)


def test_a_runner_whose_container_died_stops_waiting(rabbit_config, runner_factory):
    runner = runner_factory({**rabbit_config, "FAILING_HOOK": "worker_setup"}, RpcService)
    runner.start()
    with ClusterRpcProxy(rabbit_config) as cluster:
        cluster.failing_rpc.call.call_async()
        with pytest.raises(HookFailed):
            wait_dead(runner)
