"""What recording costs: RPC throughput with and without the recorder, and a 10,000-message burst.

RPC: 10 green callers inside the hub call a trivial ``@rpc`` method through the embedded broker,
``BENCH_ROUNDS x BENCH_SECONDS`` per setting in half-second slices interleaving recorder off /
on / on with a live inspector. Budget: recording costs <= 10%.

Burst: 10,000 workers as fast as the hub runs them, with a live inspector (real ipywidgets, no
front end attached): how many updates its list got, and how many messages each carried.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import eventlet

from bench import Row

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "2"))
SLICE = 0.5
CALLERS = 10
BURST = 10_000
BUDGET = 0.10

SCENARIO = f"rpc calls/s, {CALLERS} callers, embedded broker"


def run() -> list[Row]:
    from sandbox.config import config

    with config.patch({"AMQP_URI": "memory://"}):
        return rpc_overhead() + burst_updates()


# --- RPC throughput ---------------------------------------------------------------------------


@contextmanager
def echo_client() -> Iterator[tuple[Any, Any]]:
    """``(client, container)``: a running trivial ``@rpc`` service and a client of it."""
    from sandbox.containers import ServiceContainer
    from sandbox.rpc import rpc
    from sandbox.standalone.rpc import ClusterRpcProxy

    class Echo:
        name = "echo"

        @rpc
        def echo(self, value):
            return value

    container = ServiceContainer(Echo)
    container.start()
    proxy = ClusterRpcProxy()
    try:
        client = proxy.start()
        _throughput(client, 0.3)  # warm up connections and code paths
        yield client, container
    finally:
        proxy.stop()
        container.stop()


def rpc_overhead() -> list[Row]:
    from sandbox.records import Recorder

    recorder = Recorder()  # one for all slices, so it runs with a full ring buffer too
    calls = {"off": 0, "on": 0, "inspector": 0}
    spent = dict.fromkeys(calls, 0.0)
    with echo_client() as (client, container):
        # Short slices, interleaved: the machine's drift over the run hits every setting alike.
        for _ in range(int(ROUNDS * SECONDS / SLICE)):
            for setting in calls:
                with _recording(setting, recorder):
                    done, took = _throughput(client, SLICE)
                calls[setting] += done
                spent[setting] += took
    best = {setting: calls[setting] / spent[setting] for setting in calls}
    cost = 1 - best["on"] / best["off"]
    live = 1 - best["inspector"] / best["off"]
    per_worker = _cost_per_worker(container, Recorder)
    print(f"recording costs {cost:.1%} of RPC throughput ({live:.1%} with a live inspector);")
    print(f"budget {BUDGET:.0%}: {'met' if cost <= BUDGET else 'MISSED'}")
    print(f"the recorder's own work: {per_worker:.2f} us per worker (started + finished)")
    return [
        Row(SCENARIO, "sandbox", best["on"], "calls/s"),
        Row(SCENARIO, "sandbox, recorder off", best["off"], "calls/s"),
        Row(SCENARIO, "sandbox, live inspector", best["inspector"], "calls/s"),
        Row("recorder work per worker", "sandbox", per_worker, "us"),
    ]


def _cost_per_worker(container: Any, recorder_cls: type, count: int = 50_000) -> float:
    """The recorder's hooks alone, on real worker contexts of the benchmarked service."""
    from sandbox.containers import WorkerContext

    entrypoint = next(iter(container.entrypoints))
    contexts = [WorkerContext(container, None, entrypoint, (i,), {}) for i in range(count)]
    for worker_ctx in contexts:
        worker_ctx.started_at = worker_ctx.finished_at = time.time()
    recorder = recorder_cls()
    started = time.perf_counter()
    for worker_ctx in contexts:
        recorder.worker_started(worker_ctx)
        recorder.worker_finished(worker_ctx, worker_ctx.args[0], None)
    return (time.perf_counter() - started) / count * 1e6


@contextmanager
def _recording(setting: str, recorder: Any):
    if setting == "off":
        yield
        return
    recorder.start()
    inspector = _live_inspector(recorder) if setting == "inspector" else None
    try:
        yield
    finally:
        if inspector is not None:
            inspector.close()
        recorder.stop()


def _throughput(client: Any, seconds: float) -> tuple[int, float]:
    """Calls made by CALLERS green callers in the hub in ``seconds``, and the time it took."""
    from sandbox.runtime import get_runtime

    def callers() -> int:
        deadline = time.perf_counter() + seconds
        counts = [0] * CALLERS

        def caller(index: int) -> None:
            while time.perf_counter() < deadline:
                client.echo.echo(index)
                counts[index] += 1

        pool = eventlet.GreenPool(CALLERS)
        for index in range(CALLERS):
            pool.spawn(caller, index)
        pool.waitall()
        return sum(counts)

    started = time.perf_counter()
    calls = get_runtime().call(callers)
    return calls, time.perf_counter() - started


# --- a burst, as the front end sees it --------------------------------------------------------


def _live_inspector(recorder: Any) -> Any:
    """A real Inspector with its widgets, as in a notebook, though no browser listens."""
    from sandbox.notebook.client import NotebookClient
    from sandbox.notebook.session import Session
    from sandbox.notebook.widgets.inspector import Inspector

    with mock.patch("sandbox.notebook.widgets.base.in_kernel", return_value=True):
        return Inspector(recorder, NotebookClient(Session()))


def burst_updates() -> list[Row]:
    from sandbox.containers import ServiceContainer
    from sandbox.records import Recorder
    from sandbox.runtime import get_runtime
    from sandbox.testing.services import dummy

    class Burst:
        name = "burst"

        @dummy
        def work(self, index):
            return index

    container = ServiceContainer(Burst, {"max_workers": 100})
    container.start()
    recorder = Recorder(size=BURST).start()
    inspector = _live_inspector(recorder)
    updates: list[float] = []
    inspector.rows_widget.observe(lambda _: updates.append(time.perf_counter()), "_options_labels")
    entrypoint = next(iter(container.entrypoints))

    def burst() -> None:
        for index in range(BURST):
            container.spawn_worker(entrypoint, (index,), {})
        container._drain_workers()

    try:
        started = time.perf_counter()
        get_runtime().call(burst)
        took = time.perf_counter() - started
        while len(recorder) < BURST or inspector.subscription._scheduled:
            time.sleep(0.05)  # the last batch is at most one interval away
        settled = time.perf_counter() - started
    finally:
        inspector.close()
        recorder.stop()
        container.stop()
    batches = inspector.subscription.batches
    per_batch = inspector.subscription.delivered / max(batches, 1)
    print(
        f"burst of {BURST:,} messages in {took:.2f} s: {len(updates)} list updates "
        f"({batches} batches, {per_batch:,.0f} records each), list final after {settled:.2f} s"
    )
    return [
        Row(f"{BURST:,}-message burst: list updates", "sandbox", len(updates), "updates"),
        Row(f"{BURST:,}-message burst: records per batch", "sandbox", per_batch, "records"),
        Row(f"{BURST:,}-message burst: updates/s", "sandbox", len(updates) / settled, "/s"),
    ]
