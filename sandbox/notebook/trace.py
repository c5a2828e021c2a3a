"""``sb.trace``: the recorded messages, as a list a cell can index, filter and clear."""

from __future__ import annotations

import html
import json
import time
from typing import Any

from sandbox.contracts import ContractFile, write_contract_tests
from sandbox.docs.diagram import SequenceDiagram, call_chain
from sandbox.notebook.errors import show_error
from sandbox.records import ERROR, RUNNING, Record, Recorder

SHOWN = 20  # rows in the text view; the rest is one index away


class RecordList(list):
    """Records that show themselves as a table (text) and as data (application/json)."""

    def filter(self, **criteria: str | None) -> RecordList:
        """The records matching every criterion given: ``service``, ``kind`` (``"RPC"``...),
        ``status`` (``"error"``...) and ``text``, as :meth:`Record.matches` takes them."""
        return RecordList(r for r in self if r.matches(**criteria))

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        # No application/json: JupyterLab would prefer it and show a collapsed tree.
        return {"text/plain": records_table(self), "text/html": records_html(self)}

    def __repr__(self) -> str:
        return records_table(self)


def records_table(records: list[Record]) -> str:
    if not records:
        return "no messages recorded"
    lines = [f"#{r.id:<5} {r.summary()}" for r in records[-SHOWN:]]
    hidden = len(records) - len(lines)
    head = [f"... {hidden} earlier (index or .filter() to see them)"] if hidden else []
    return "\n".join(head + lines)


COLUMNS = ("#", "time", "kind", "source", "target", "status", "took", "request", "response")


def records_html(records: list[Record]) -> str:
    """The last records as an HTML table: one row each, long values cut short."""
    if not records:
        return "<i>no messages recorded</i>"
    head = "".join(f"<th style='text-align:left'>{name}</th>" for name in COLUMNS)
    rows = "".join(_row_html(record) for record in records[-SHOWN:])
    hidden = len(records) - min(len(records), SHOWN)
    note = f"<i>... {hidden} earlier (index or .filter() to see them)</i>" if hidden else ""
    return f"{note}<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _row_html(record: Record) -> str:
    took = f"{record.duration * 1000:.1f} ms" if record.duration is not None else ""
    status = record.shown_status + ("  [outside]" if record.outside else "")
    cells = (
        f"#{record.id}",
        time.strftime("%H:%M:%S", time.localtime(record.time)),
        record.kind,
        record.source or "-",
        record.target or "-",
        status + (f"  [fault: {record.fault}]" if record.fault else ""),
        took,
        _cut(record.request),
        _cut(record.response) if record.status != RUNNING else "...",
    )
    colour = " style='color:#c62828'" if record.status == ERROR else ""
    return f"<tr{colour}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def _cut(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Trace:
    """A live view of the kernel's recorder: ``sb.trace[-1]``, ``sb.trace.filter(kind="RPC")``."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def records(self) -> RecordList:
        return RecordList(self.recorder.records())

    def filter(self, **criteria: str | None) -> RecordList:
        """The records matching every criterion given (see :meth:`RecordList.filter`)."""
        return self.records().filter(**criteria)

    def find(self, record_id: int) -> Record:
        for record in reversed(self.recorder.records()):
            if record.id == record_id:
                return record
        raise KeyError(f"no record #{record_id} (the oldest ones make room for new ones)")

    def clear(self) -> None:
        self.recorder.clear()

    def diagram(self, call: str | Record | None = None) -> SequenceDiagram:
        """The sequence diagram of a call chain: the one of ``call`` (a record, or the id of
        any call in the chain), else the latest one."""
        records = self.recorder.records()
        if isinstance(call, Record):
            call = call.origin_call_id
        if call is None:
            call = next((r.origin_call_id for r in reversed(records) if r.origin_call_id), None)
            if call is None:
                raise KeyError("no call recorded yet")
        return SequenceDiagram(call_chain(records, call))

    def to_pytest(
        self, path: str = "test_contract.py", module: str = "services"
    ) -> ContractFile | None:
        """Write a pytest file that replays the recorded calls against the services of
        ``module`` (what ``sb.export`` writes) and asserts their recorded results."""
        try:
            written = write_contract_tests(path, self.recorder.records(), module)
        except (ValueError, OSError) as exc:
            show_error(f"cannot write contract tests: {exc}")
            return None
        left_out = f"; {len(written.left_out)} left out (listed in the file)"
        print(f"wrote {path}: {written.tests} tests of {', '.join(written.services)}{left_out}")
        return written

    def __getitem__(self, index):
        found = self.recorder.records()[index]
        return RecordList(found) if isinstance(index, slice) else found

    def __len__(self) -> int:
        return len(self.recorder)

    def __iter__(self):
        return iter(self.recorder.records())

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return self.records()._repr_mimebundle_(include, exclude)

    def __repr__(self) -> str:
        return records_table(self.recorder.records())
