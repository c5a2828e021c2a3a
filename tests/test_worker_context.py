"""A worker's call ids and context data."""

from sandbox.testing.services import dummy
from sandbox.worker_context import WorkerContext


class Echo:
    name = "echoer"

    @dummy
    def echo(self, value):
        return value


def test_worker_context_call_id_stack_bounded(container_factory):
    container = container_factory(Echo, {"parent_calls_tracked": 3})
    (entrypoint,) = [e for e in container.entrypoints if e.method_name == "echo"]
    parents = [f"parent.{i}" for i in range(10)]
    ctx = WorkerContext(container, None, entrypoint, data={"call_id_stack": parents, "lang": "en"})
    assert ctx.call_id.startswith("echoer.echo.")
    assert ctx.call_id_stack == ["parent.7", "parent.8", "parent.9", ctx.call_id]
    assert ctx.context_data == {"call_id_stack": ctx.call_id_stack, "lang": "en"}
    assert ctx.origin_call_id == "parent.0"  # the chain as sent, as Nameko keeps it
    assert ctx.immediate_parent_call_id == "parent.9"
    root = WorkerContext(container, None, entrypoint)
    assert root.call_id_stack == [root.call_id] and root.immediate_parent_call_id is None
