"""``sb.topology()``: a live graph of services, exchanges, queues and bindings.

The graph is an anywidget whose JavaScript and CSS ship in the package (nothing loads from
a CDN, so it works offline in JupyterLab, Notebook 7 and Voila). A plain thread reads a
snapshot (:mod:`sandbox.topology`) every ``interval`` seconds and syncs it only when it
changed (a thread, not the hub as ``PollingView`` polls: RabbitMQ's management API is read
over blocking HTTP): a burst of ten thousand messages costs the front end a few syncs a
second, which it shows as grown counts and a capped number of dots running along the edges.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from sandbox.notebook.widgets.base import View

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
INTERVAL = 0.25  # seconds between snapshots of the embedded broker
RABBITMQ_INTERVAL = 1.0  # the management API refreshes its counts every few seconds anyway


class TopologyWidget(anywidget.AnyWidget):
    """The graph in the browser; ``selected`` comes back from a click, ``details`` answers."""

    _esm = STATIC / "topology.js"
    _css = STATIC / "topology.css"
    snapshot = traitlets.Dict().tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    details = traitlets.Unicode("").tag(sync=True)


class Topology(View):
    """The running system as a graph that follows it; text outside a widget front end.

    ``take`` returns a fresh snapshot (see :func:`sandbox.topology.snapshot`).
    """

    def __init__(self, take: Callable[[], dict[str, Any]], interval: float = INTERVAL):
        self.take = take
        self.interval = interval
        self.state: dict[str, Any] = {}
        self.syncs = 0  # snapshots sent to the front end
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        super().__init__()

    def build(self) -> Any:
        self.state = self.take()
        widget = TopologyWidget(snapshot=self.state)
        widget.observe(self._on_select, names="selected")
        if self.state.get("broker") == "rabbitmq":
            self.interval = max(self.interval, RABBITMQ_INTERVAL)
        self._thread = threading.Thread(target=self._follow, name="sandbox-topology", daemon=True)
        self._thread.start()
        return widget

    def refresh(self) -> bool:
        """Take a snapshot and send it if it changed; whether it did."""
        state = self.take()
        if state == self.state:
            return False
        self.state = state
        widget = self.widget
        if widget is not None:
            widget.snapshot = state
            self.syncs += 1
            if widget.selected:
                widget.details = self.details(widget.selected)
        return True

    def _follow(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # a broker gone for a moment: try again at the next tick
                log.debug("topology snapshot failed", exc_info=True)

    def _on_select(self, change: Any) -> None:
        self.widget.details = self.details(change["new"])

    def select(self, node: str) -> str:
        """Show the details of ``"queue:NAME"``, ``"service:NAME"`` or ``"exchange:NAME"``."""
        if self.widget is not None:
            self.widget.selected = node
        return self.details(node)

    def details(self, node: str) -> str:
        kind, _, name = node.partition(":")
        state = self.state or self.take()
        found = {
            "queue": _queue_details,
            "service": _service_details,
            "exchange": _exchange_details,
        }.get(kind)
        items = {i["name"]: i for i in state.get(f"{kind}s", [])}
        if found is None or name not in items:
            return f"nothing named {node!r} in the topology" if node else ""
        return found(items[name], state)

    def close(self) -> None:
        self._stop.set()
        super().close()

    # --- text and JSON, for every front end -------------------------------------------------

    def text(self) -> str:
        return topology_text(self.state or self.take())

    def data(self) -> Any:
        return json.loads(json.dumps(self.state or self.take(), default=str))


def topology_text(state: dict[str, Any]) -> str:
    lines = [f"topology from the {state.get('source', '?')}"]
    if state.get("notice"):
        lines.append(f"  {state['notice']}")
    for service in state.get("services", []):
        where = "" if service["local"] else " (outside this kernel)"
        entrypoints = ", ".join(f"{e['kind'].lower()} {e['name']}" for e in service["entrypoints"])
        lines.append(f"service {service['name']}{where}: {entrypoints or 'no entrypoints'}")
    for exchange in state.get("exchanges", []):
        lines.append(f"exchange {exchange['name']} ({exchange['type']})")
        for binding in state.get("bindings", []):
            if binding["exchange"] == exchange["name"]:
                lines.append(f"  --{binding['routing_key'] or '(any)'}--> {binding['queue']}")
    for queue in state.get("queues", []):
        lines.append(
            f"queue {queue['name']}: ready {queue['ready']}, unacked {queue['unacked']}, "
            f"consumers {queue['consumers']}"
        )
    return "\n".join(lines)


def _queue_details(queue: dict[str, Any], state: dict[str, Any]) -> str:
    bound = [
        f"{b['exchange']} --{b['routing_key'] or '(any)'}-->"
        for b in state.get("bindings", [])
        if b["queue"] == queue["name"]
    ]
    owners = [s["name"] for s in state.get("services", []) if queue["name"] in s["queues"]]
    arguments = json.dumps(queue["arguments"], default=str) if queue["arguments"] else "none"
    lines = [
        f"queue {queue['name']}",
        f"ready {queue['ready']}, unacked {queue['unacked']}, consumers {queue['consumers']}",
        f"received {queue['received']}, delivered {queue['delivered']}",
        f"consumed by: {', '.join(owners) or 'no service'}",
        f"consumer tags: {', '.join(queue['consumer_tags']) or 'none'}",
        f"bound from: {'; '.join(bound) or 'nothing (only the default exchange reaches it)'}",
        f"arguments: {arguments}",
    ]
    return "\n".join(lines)


def _service_details(service: dict[str, Any], state: dict[str, Any]) -> str:
    where = "in this kernel" if service["local"] else "outside this kernel (seen by its queues)"
    lines = [f"service {service['name']}, {where}"]
    if service["busy_workers"] is not None:
        lines.append(f"busy workers: {service['busy_workers']}")
    for entrypoint in service["entrypoints"]:
        via = entrypoint["route"] or (f"queue {entrypoint['queue']}" if entrypoint["queue"] else "")
        lines.append(f"  {entrypoint['kind'].lower():<6} {entrypoint['name']}  {via}".rstrip())
    if service.get("publishes"):
        lines.append(f"publishes to: {', '.join(service['publishes'])}")
    return "\n".join(lines)


def _exchange_details(exchange: dict[str, Any], state: dict[str, Any]) -> str:
    lines = [f"exchange {exchange['name']} ({exchange['type']}), {exchange['published']} published"]
    for binding in state.get("bindings", []):
        if binding["exchange"] == exchange["name"]:
            lines.append(f"  --{binding['routing_key'] or '(any)'}--> {binding['queue']}")
    return "\n".join(lines)
