"""Events: dispatch rate, end-to-end rate, backlog drain rate and dispatch p50 latency.

On one RabbitMQ, in one run: sandbox vs Nameko 2.14.1 vs a raw py-amqp pair (the floor: a
publisher with confirms that keeps as many messages in flight as the others have dispatchers,
and a consumer that acks each message, prefetch 10, as both frameworks default to). Each
handler service runs in a subprocess of its own and prints the time it handled the last event
of a run; each dispatching client runs in another. Rounds go round-robin and each
implementation keeps its best round, as in bench/rpc.py.

- dispatch rate: 1,000 events from 10 dispatching threads, until the last dispatch returned
  (so was confirmed by the broker);
- end to end: the same run, until the handler service handled the last of them;
- backlog drain: 1,000 events wait in the handler's queue (its handlers hold the first ones
  until a set time), then the rate it handles them at from that time on;
- dispatch p50: one dispatcher, one event at a time, until it returns.

Targets: end to end >= 3 x Nameko and >= 0.8 x raw.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import Row
from bench.rpc import RAW_COMMON, SANDBOX_RUN, client, service, start_nameko, vhost

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "1000"))
LATENCY_EVENTS = int(os.environ.get("BENCH_LATENCY_EVENTS", "300"))
DISPATCHERS = int(os.environ.get("BENCH_DISPATCHERS", "10"))
# How long a backlog run's handlers hold their events: time enough to dispatch them all.
BACKLOG_SECONDS = float(os.environ.get("BENCH_BACKLOG_SECONDS", "5"))
DONE_TIMEOUT = 120

# Every handler counts the events of each run and prints when it handled the last one; an
# event's ``gate`` holds it until then (the backlog runs).
HANDLE = """
import json, time

counts = {}

def handle(payload, sleep):
    wait = payload["gate"] - time.time()
    if wait > 0:
        sleep(wait)
    run = payload["run"]
    counts[run] = counts.get(run, 0) + 1
    if counts[run] == payload["total"]:
        print(json.dumps({"run": run, "done": time.time()}), flush=True)
"""

# How a client dispatches: ``stream`` (many events from many threads) or ``latency``
# (one at a time). Each prints one JSON line.
DISPATCH = """
import json, sys, threading, time, uuid

def stream(dispatch, total, dispatchers, hold):
    for _ in range(dispatchers):
        dispatch({"run": "warm-up", "total": 0, "gate": 0})
    run, events = uuid.uuid4().hex, iter(range(total))
    start = time.time()
    gate = start + hold if hold else 0

    def work():
        for index in events:
            dispatch({"run": run, "i": index, "total": total, "gate": gate})

    threads = [threading.Thread(target=work) for _ in range(dispatchers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"run": run, "start": start, "dispatched": time.time(), "gate": gate}

def latency(dispatch, total):
    dispatch({"run": "warm-up", "total": 0, "gate": 0})
    latencies = []
    for index in range(total):
        started = time.perf_counter()
        dispatch({"run": "latency", "i": index, "total": total, "gate": 0})
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    return {"p50": latencies[len(latencies) // 2]}

def measure(dispatch):
    if sys.argv[2] == "stream":
        result = stream(dispatch, int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    else:
        result = latency(dispatch, int(sys.argv[3]))
    print(json.dumps(result), flush=True)
"""

# The handler service of ``{impl}``, which dispatches as ``bench_{impl}``.
HANDLER = """
import eventlet
from {impl}.events import event_handler

class Bench:
    name = "bench_{impl}_handler"

    @event_handler("bench_{impl}", "tick")
    def on_tick(self, payload):
        handle(payload, eventlet.sleep)
"""

SANDBOX_HANDLER = HANDLE + HANDLER.format(impl="sandbox") + SANDBOX_RUN

# The dispatching client of ``{impl}``.
CLIENT = """
from {impl}.standalone.events import event_dispatcher

dispatcher = event_dispatcher({{"AMQP_URI": sys.argv[1]}})
measure(lambda payload: dispatcher("bench_{impl}", "tick", payload))
"""

SANDBOX_CLIENT = DISPATCH + CLIENT.format(impl="sandbox")

NAMEKO_HANDLER = HANDLE + HANDLER.format(impl="nameko")

GREEN = "import eventlet; eventlet.monkey_patch()\n"
NAMEKO_CLIENT = GREEN + DISPATCH + CLIENT.format(impl="nameko")

# Nameko's wire format for events: a durable topic exchange ``{source}.events``, persistent
# JSON messages, one durable queue per handler.
RAW_EVENTS = (
    RAW_COMMON
    + """
import json, time

connection, channel = connect(sys.argv[1])
channel.exchange_declare("bench_raw.events", "topic", durable=True, auto_delete=False)
"""
)

RAW_HANDLER = (
    HANDLE
    + RAW_EVENTS
    + """
channel.queue_declare("evt-bench_raw-tick--bench_raw_handler.on_tick", durable=True)
channel.queue_bind("evt-bench_raw-tick--bench_raw_handler.on_tick", "bench_raw.events", "tick")

def on_tick(message):
    handle(json.loads(message.body), time.sleep)
    channel.basic_ack(message.delivery_tag)

serve(connection, channel, "evt-bench_raw-tick--bench_raw_handler.on_tick", on_tick)
"""
)

# Publishes with confirms, keeping up to as many messages in flight as the others have
# dispatching threads; a message is dispatched when the broker confirmed it.
RAW_CLIENT = (
    DISPATCH
    + RAW_EVENTS
    + """
channel.confirm_select()
unconfirmed = set()
tags = iter(range(1, 1 << 62))

def on_ack(tag, multiple):
    if multiple:
        unconfirmed.difference_update([t for t in unconfirmed if t <= tag])
    else:
        unconfirmed.discard(tag)

def on_nack(tag, multiple):
    raise RuntimeError(f"nacked {tag}")

channel.events["basic_ack"].add(on_ack)
channel.events["basic_nack"].add(on_nack)

def publish(payload):
    message = amqp.Message(
        json.dumps(payload), content_type="application/json", delivery_mode=2
    )
    channel.basic_publish(message, exchange="bench_raw.events", routing_key="tick")
    unconfirmed.add(next(tags))

def confirmed(limit):
    while len(unconfirmed) > limit:
        connection.drain_events()

def dispatch(payload):
    publish(payload)
    confirmed(0)

def pipelined(total, window, hold):
    for _ in range(window):
        dispatch({"run": "warm-up", "total": 0, "gate": 0})
    run, start = uuid.uuid4().hex, time.time()
    gate = start + hold if hold else 0
    for index in range(total):
        confirmed(window - 1)
        publish({"run": run, "i": index, "total": total, "gate": gate})
    confirmed(0)
    return {"run": run, "start": start, "dispatched": time.time(), "gate": gate}

if sys.argv[2] == "stream":
    args = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    print(json.dumps(pipelined(*args)), flush=True)
else:
    measure(dispatch)
"""
)


class Handled:
    """The ``done`` lines of one handler service: when it handled each run's last event."""

    def __init__(self) -> None:
        self._lines: queue.Queue[str] = queue.Queue()

    def on_line(self, line: str) -> None:
        self._lines.put(line)

    def done(self, run: str) -> float:
        deadline = time.monotonic() + DONE_TIMEOUT
        while True:
            line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            if line.startswith("{") and json.loads(line)["run"] == run:
                return json.loads(line)["done"]


def start_handlers(stack: ExitStack, uri: str, workdir: Path) -> dict[str, Any]:
    """Start each implementation's handler service; ``{impl: (client command, Handled)}``."""
    python = sys.executable
    impls: dict[str, Any] = {}
    for impl, handler, dispatcher in (
        ("sandbox", SANDBOX_HANDLER, SANDBOX_CLIENT),
        ("raw-amqp", RAW_HANDLER, RAW_CLIENT),
    ):
        handled = Handled()
        stack.enter_context(service([python, "-c", handler, uri], "ready", on_line=handled.on_line))
        impls[impl] = ([python, "-c", dispatcher, uri], handled)
    handled = Handled()
    nameko = start_nameko(stack, uri, workdir, NAMEKO_HANDLER, handled.on_line)
    if nameko is not None:
        impls["nameko"] = ([nameko, "-c", NAMEKO_CLIENT, uri], handled)
    return impls


def one_round(command: list[str], handled: Handled) -> dict[str, float]:
    streamed = client(command, "stream", EVENTS, DISPATCHERS, 0)
    done = handled.done(streamed["run"])
    figures = {
        "dispatch": EVENTS / (streamed["dispatched"] - streamed["start"]),
        "end to end": EVENTS / (done - streamed["start"]),
    }
    backlog = client(command, "stream", EVENTS, DISPATCHERS, BACKLOG_SECONDS)
    done = handled.done(backlog["run"])
    if backlog["dispatched"] < backlog["gate"]:
        figures["drain"] = EVENTS / (done - backlog["gate"])
    else:
        print(f"backlog not in place by the gate: raise BENCH_BACKLOG_SECONDS ({command[0]})")
    figures["p50"] = client(command, "latency", LATENCY_EVENTS)["p50"]
    return figures


def run() -> list[Row]:
    print(f"{EVENTS} events from {DISPATCHERS} dispatchers, {LATENCY_EVENTS} one by one;")
    print(f"best of {ROUNDS}; raw-amqp keeps {DISPATCHERS} confirms in flight on one channel")
    best: dict[str, dict[str, float]] = {}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        impls = start_handlers(stack, stack.enter_context(vhost()), Path(tmp))
        for number in range(ROUNDS):
            for impl, (command, handled) in impls.items():
                figures = one_round(command, handled)
                print(f"round {number + 1} {impl}: {figures}", flush=True)
                kept = best.setdefault(impl, {})
                for key, value in figures.items():
                    better = min if key == "p50" else max
                    kept[key] = better(kept.get(key, value), value)
    report_targets(best)
    return [row for impl, figures in best.items() for row in rows_for(impl, figures)]


def rows_for(impl: str, figures: dict[str, float]) -> list[Row]:
    rows = [
        Row(f"events dispatch, {DISPATCHERS} dispatchers", impl, figures["dispatch"], "events/s"),
        Row(f"events end to end, {EVENTS:,} events", impl, figures["end to end"], "events/s"),
        Row("events dispatch p50", impl, figures["p50"] * 1e6, "us"),
    ]
    if "drain" in figures:
        rows.append(Row(f"events backlog drain, {EVENTS:,}", impl, figures["drain"], "events/s"))
    return rows


def report_targets(best: dict[str, dict[str, float]]) -> None:
    ours = best["sandbox"]["end to end"]
    for peer, target in (("nameko", 3.0), ("raw-amqp", 0.8)):
        if peer in best:
            ratio = ours / best[peer]["end to end"]
            met = "met" if ratio >= target else "MISSED"
            print(f"end to end sandbox/{peer} = {ratio:.2f} (target >= {target}): {met}")
