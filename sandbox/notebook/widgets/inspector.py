"""The message inspector: a live, filterable list of every recorded message and its details.

The list follows the recorder through a batched subscription: one update of the rows widget
per batch (every ~150 ms at most), whatever number of messages arrived, so a burst of
thousands of messages costs the front end a few updates, not thousands of widgets.
"""

from __future__ import annotations

import contextlib
import html
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sandbox.docs.diagram import SequenceDiagram, call_chain
from sandbox.notebook.calls import replay
from sandbox.notebook.errors import describe_error
from sandbox.notebook.trace import records_table
from sandbox.notebook.widgets.base import (
    JSON_LIMIT,
    View,
    html_output,
    json_output,
    message_html,
    stream_output,
)
from sandbox.records import CALL, ERROR, EVENT, HTTP, MESSAGE, RPC, RUNNING, STATUSES, TIMER, Record

KINDS = (RPC, HTTP, EVENT, TIMER, MESSAGE, CALL)
MAX_ROWS = 300  # newest matching records listed; a <select> of 10,000 options drags a browser
# A refresh (filtering, then traitlets validating every label) runs in the hub: space batches
# so that it takes at most a tenth of the hub's time, however costly it gets.
HUB_SHARE = 0.1
MAX_INTERVAL = 1.0

_STYLE = """<style>
.sandbox-rows select { font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
</style>"""


class Inspector(View):
    """``sb.inspect()``: filters, the live list, and the selected message's request and reply."""

    def __init__(self, recorder: Any, client: Any, interval: float = 0.15):
        self.recorder, self.client = recorder, client
        self.criteria: dict[str, str] = {"service": "", "kind": "", "status": "", "text": ""}
        self.interval = interval
        self.chains = False
        self.paused = False
        self.selected: Record | None = None
        self._missed = 0
        self._quiet = False
        self._lock = threading.RLock()
        self._shown: dict[int, Record] = {}
        self.subscription = None
        super().__init__()
        if self.widget is not None:
            self.subscription = recorder.subscribe(self._on_batch, interval)
            self._offer_services(recorder.records())
            self.refresh()

    # --- widgets ----------------------------------------------------------------------------

    def build(self) -> Any:
        import ipywidgets as w

        small = w.Layout(width="auto")
        self.service_filter = w.Dropdown(options=[("all services", "")], layout=small)
        self.kind_filter = w.Dropdown(options=[("all kinds", "")] + _pairs(KINDS), layout=small)
        statuses = [("any status", "")] + _pairs(STATUSES)
        self.status_filter = w.Dropdown(options=statuses, layout=small)
        self.text_filter = w.Text(placeholder="search payloads, ids...", layout=small)
        self.chains_toggle = w.ToggleButton(description="call chains", icon="sitemap", layout=small)
        self.pause_button = w.ToggleButton(description="pause", icon="pause", layout=small)
        self.clear_button = w.Button(description="clear", icon="trash", layout=small)
        self.count_widget = w.HTML()
        self.rows_widget = w.Select(options=[], rows=12, layout=w.Layout(width="100%"))
        self.rows_widget.add_class("sandbox-rows")
        self.replay_button = w.Button(description="replay", icon="repeat", disabled=True)
        self.curl_button = w.Button(description="copy as curl", icon="terminal", disabled=True)
        self.message_widget = w.HTML()
        self.curl_widget = w.Textarea(layout=w.Layout(width="100%", display="none"))
        self.detail_widget = w.Output(layout=w.Layout(border="1px solid #ddd", padding="4px"))

        for name, widget in (
            ("service", self.service_filter),
            ("kind", self.kind_filter),
            ("status", self.status_filter),
            ("text", self.text_filter),
        ):
            widget.observe(lambda change, name=name: self._on_filter(name, change.new), "value")
        self.chains_toggle.observe(self._on_chains, "value")
        self.pause_button.observe(self._on_pause, "value")
        self.clear_button.on_click(lambda _: self.clear())
        self.rows_widget.observe(self._on_select, "value")
        self.replay_button.on_click(lambda _: self.replay())
        self.curl_button.on_click(lambda _: self.show_curl())
        return w.VBox(
            [
                w.HTML(_STYLE),
                w.HBox(
                    [
                        self.service_filter,
                        self.kind_filter,
                        self.status_filter,
                        self.text_filter,
                        self.chains_toggle,
                        self.pause_button,
                        self.clear_button,
                    ],
                    layout=w.Layout(flex_flow="row wrap"),
                ),
                self.count_widget,
                self.rows_widget,
                w.HBox([self.replay_button, self.curl_button, self.message_widget]),
                self.curl_widget,
                self.detail_widget,
            ]
        )

    # --- programmatic control (the widgets call these too) ----------------------------------

    def filter(self, service=None, kind=None, status=None, text=None) -> Inspector:
        """Show only matching messages; ``""`` lifts a criterion, None leaves it as it is."""
        given = {"service": service, "kind": kind, "status": status, "text": text}
        for name, value in given.items():
            if value is not None:
                self._set_criterion(name, value)
        return self

    def _set_criterion(self, name: str, value: str) -> None:
        if self.widget is None:
            self.criteria[name] = value
            return
        widget = getattr(self, f"{name}_filter")
        if name == "service" and value not in {v for _, v in widget.options}:
            with self._quietly():
                widget.options = [*widget.options, (value, value)]
        widget.value = value  # its observer refreshes the list

    def select(self, record: Record | int | None) -> None:
        """Show ``record`` (or the record with that id) in the detail view."""
        if isinstance(record, int):
            record = self._shown.get(record) or self.client.trace.find(record)
        with self._lock:
            self.selected = record
            if self.widget is None:
                return
            listed = record is not None and record.id in self._shown
            with self._quietly():
                self.rows_widget.value = record.id if listed else None
            self._show_detail(record)

    def pause(self) -> None:
        self._set_paused(True)

    def resume(self) -> None:
        self._set_paused(False)

    def clear(self) -> None:
        self.recorder.clear()
        self.select(None)
        self.refresh()

    def replay(self) -> Any:
        """Send the selected message again; its new record appears in the list."""
        record = self.selected
        if record is None:
            return None
        try:
            result = replay(self.client, record)
        except Exception as exc:
            self._message(f"replay of #{record.id} failed: {describe_error(exc)}", error=True)
            return None
        self._message(f"replayed #{record.id}: {_short(result)}")
        return result

    def show_curl(self) -> str | None:
        command = self.selected.curl() if self.selected is not None else None
        if self.widget is not None and command:
            self.curl_widget.value = command
            self.curl_widget.layout.display = ""
        return command

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.cancel()
        super().close()

    # --- the list ---------------------------------------------------------------------------

    def matching(self) -> list[Record]:
        criteria = self.criteria
        if not any(criteria.values()):
            return self.recorder.records()
        return [r for r in self.recorder.records() if r.matches(**criteria)]

    def refresh(self) -> None:
        """Rebuild the list from the recorder: one update of the rows widget."""
        if self.widget is None:
            return
        with self._lock:
            records = self.recorder.records()
            found = self.matching() if any(self.criteria.values()) else records
            listed = found[-MAX_ROWS:]
            rows = chain_rows(listed) if self.chains else [(r, 0) for r in reversed(listed)]
            self._shown = {r.id: r for r, _ in rows}
            self._set_rows([(_label(r, depth), r.id) for r, depth in rows])
            self._missed = 0
            self._count(len(records), len(found), len(listed))

    def _on_batch(self, batch: list[Record]) -> None:
        # The hub thread, once per batch.
        with self._lock:
            if self.paused:
                self._missed += len(batch)
                self._count(len(self.recorder), None, None)
                return
            started = time.perf_counter()
            self._offer_services(batch)
            self.refresh()
            took = time.perf_counter() - started
            self.subscription.interval = min(MAX_INTERVAL, max(self.interval, took / HUB_SHARE))
            if self.selected is not None and any(r is self.selected for r in batch):
                self._show_detail(self.selected)  # it was running and has finished since

    def _set_rows(self, options: list[tuple[str, int]]) -> None:
        rows = self.rows_widget
        selected = self.selected.id if self.selected is not None else None
        # A Select selects its first option whenever its options change: keep the user's.
        with self._quietly(), rows.hold_sync():
            rows.index = None
            rows.options = options
            if selected in self._shown:
                rows.value = selected

    def _offer_services(self, records: list[Record]) -> None:
        names = {r.service for r in records if r.service} | {h.name for h in self.client.services}
        current = {value for _, value in self.service_filter.options if value}
        if names <= current:
            return
        chosen = self.service_filter.value
        with self._quietly():
            self.service_filter.options = [("all services", "")] + _pairs(sorted(names | current))
            self.service_filter.value = chosen

    def _count(self, total: int, found: int | None, listed: int | None) -> None:
        if self.paused:
            text = f"{total} recorded; paused, {self._missed} new not listed"
        else:
            text = f"{total} recorded, {found} match"
            if listed is not None and found is not None and listed < found:
                text += f" (newest {listed} listed)"
        self.count_widget.value = f"<small>{html.escape(text)}</small>"

    # --- events from the widgets ------------------------------------------------------------

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        """Programmatic widget changes that the observers must not take for the user's.

        Held with the lock: the hub thread refreshes while the kernel thread handles clicks,
        and a flag seen by the other thread would swallow the user's change.
        """
        with self._lock:
            previous, self._quiet = self._quiet, True
            try:
                yield
            finally:
                self._quiet = previous

    @contextlib.contextmanager
    def _from_user(self) -> Iterator[bool]:
        """Yield True when a widget change is the user's, not one of ours."""
        with self._lock:
            yield not self._quiet

    def _on_filter(self, name: str, value: str) -> None:
        with self._from_user() as users:
            if users:
                self.criteria[name] = value or ""
                self.refresh()

    def _on_chains(self, change: Any) -> None:
        with self._lock:
            self.chains = change.new
            self.refresh()

    def _on_pause(self, change: Any) -> None:
        with self._lock:
            self.paused = change.new
            self.pause_button.description = "resume" if change.new else "pause"
            self.pause_button.icon = "play" if change.new else "pause"
            if not change.new:
                self.refresh()
            else:
                self._count(len(self.recorder), None, None)

    def _set_paused(self, paused: bool) -> None:
        if self.widget is None:
            self.paused = paused
        else:
            self.pause_button.value = paused

    def _on_select(self, change: Any) -> None:
        with self._from_user() as users:
            if users:
                self.selected = self._shown.get(change.new)
                self._show_detail(self.selected)

    # --- the detail view --------------------------------------------------------------------

    def _show_detail(self, record: Record | None) -> None:
        self.replay_button.disabled = record is None or record.status == RUNNING
        self.curl_button.disabled = record is None or record.http is None
        self.curl_widget.layout.display = "none"
        if record is None:
            self.detail_widget.outputs = ()
            return
        chain = chain_outputs(record, self.recorder.records())
        why = why_outputs(self.client, record)
        self.detail_widget.outputs = tuple(detail_outputs(record) + why + chain)

    def _message(self, text: str, error: bool = False) -> None:
        if self.widget is not None:
            self.message_widget.value = message_html(text, error)

    # --- text and JSON, for every front end -------------------------------------------------

    def text(self) -> str:
        return "inspector: " + records_table(self.matching())

    def data(self) -> Any:
        return [r.to_dict() for r in self.matching()[-JSON_LIMIT:]]


def detail_outputs(record: Record) -> list[dict[str, Any]]:
    """The selected message: a summary line, request, response or traceback, headers."""
    took = f"{record.duration * 1000:.2f} ms" if record.duration is not None else "running"
    clock = time.strftime("%H:%M:%S", time.localtime(record.time))
    colour = "#c62828" if record.status == ERROR else "#2e7d32"
    markup = (
        f"<b>{html.escape(record.kind)}</b> {html.escape(record.source or '-')} &rarr; "
        f"<b>{html.escape(record.target or '-')}</b> "
        f"<span style='color:{colour}'>{html.escape(record.shown_status)}</span> "
        f"in {took} at {clock}<br><small>call id {html.escape(record.call_id or '-')}</small>"
    )
    if record.fault:
        markup += f"<br><b style='color:#e65100'>fault injected: {html.escape(record.fault)}</b>"
    outputs = [html_output(markup, record.summary())]
    if record.error is not None and record.error["traceback"]:
        outputs.append(stream_output(record.error["traceback"], "stderr"))
    # One JSON tree, so one search box; the traceback above is not repeated in it.
    message = {"request": record.request}
    if record.status != RUNNING:
        message["response"] = record.response
        if record.error is not None:
            message["response"] = {"error": _without_traceback(record.error)}
    message["headers and context data"] = record.headers
    message["call_id_stack"] = record.call_id_stack
    outputs.append(json_output(message, "message", expanded=True))
    return outputs


def _without_traceback(error: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in error.items() if key != "traceback"}


def why_outputs(client: Any, record: Record) -> list[dict[str, Any]]:
    """``sb.why`` of a published message (a worker's record tells its own story)."""
    if record.event is None:
        return []
    try:
        why = client.why(record)
    except Exception as exc:  # a broker gone away must not take the detail view with it
        why = f"sb.why could not tell: {exc}"
    return [html_output(f"<i>why:</i> {html.escape(why)}", f"why: {why}")]


def chain_outputs(record: Record, records: list[Record]) -> list[dict[str, Any]]:
    """The sequence diagram of the record's call chain, when it has more than this record."""
    try:
        chain = call_chain(records, record.origin_call_id)
    except KeyError:  # no call id, or the ring buffer has dropped it
        return []
    if len(chain) < 2:
        return []
    diagram = SequenceDiagram(chain)
    data = {"image/svg+xml": diagram.svg, "text/plain": str(diagram)}
    return [{"output_type": "display_data", "data": data, "metadata": {}}]


def chain_rows(records: list[Record]) -> list[tuple[Record, int]]:
    """Records grouped by origin call id, each group a tree (record, depth); newest group first."""
    groups: dict[str | None, list[Record]] = defaultdict(list)
    for record in records:
        groups[record.origin_call_id or f"#{record.id}"].append(record)
    rows: list[tuple[Record, int]] = []
    for group in reversed(groups.values()):
        known = {r.call_id for r in group if r.call_id}
        children: dict[str, list[Record]] = defaultdict(list)
        roots = []
        for record in group:
            parent = record.parent_call_id
            if parent in known and parent != record.call_id:
                children[parent].append(record)
            else:
                roots.append(record)
        rows.extend(_walk(roots, children, 0))
    return rows


def _walk(nodes: list[Record], children: dict, depth: int) -> Iterator[tuple[Record, int]]:
    for node in nodes:
        yield node, depth
        below = children.get(node.call_id, []) if node.call_id else []
        yield from _walk(below, children, depth + 1)


def _label(record: Record, depth: int) -> str:
    indent = "   " * (depth - 1) + "└─ " if depth else ""
    return f"#{record.id:<6} {indent}{record.summary()}"


def _pairs(values) -> list[tuple[str, str]]:
    return [(value, value) for value in values]


def _short(value: Any) -> str:
    text = repr(value).splitlines()[0] if value is not None else "done"
    return text if len(text) <= 80 else text[:77] + "..."
