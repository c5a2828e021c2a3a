"""Sequence diagrams of recorded call chains, drawn as self-contained SVG.

A chain is every record sharing an origin call id (``call_id_stack[0]``): the HTTP request a
client made, the RPC calls its worker made, the events they dispatched and the handlers that
ran. Services are lifelines; so are the exchanges events and messages go through, since a
published event may reach no handler at all. Calls are solid arrows in time order, replies
dashed, and anything that failed is red.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sandbox.records import ERROR, EVENT, HTTP, MESSAGE, RPC, RUNNING, TIMER, Record

CLIENT = "client"
COLUMN = 180  # px between lifelines
ROW = 34  # px between arrows
TOP = 64  # px above the first arrow: the lifeline heads
ERROR_COLOUR = "#c62828"
COLOURS = {
    HTTP: "#1565c0",
    RPC: "#6a1b9a",
    EVENT: "#ef6c00",
    MESSAGE: "#00838f",
    TIMER: "#546e7a",
}
DEFAULT_COLOUR = "#37474f"


def call_chain(records: Iterable[Record], call_id: str) -> list[Record]:
    """The records of the chain ``call_id`` is part of (any call of it), oldest first."""
    records = list(records)
    origin = next((r.origin_call_id for r in records if call_id in _call_ids(r)), None)
    if origin is None:
        raise KeyError(f"no recorded call {call_id!r}")
    return sorted((r for r in records if r.origin_call_id == origin), key=lambda r: r.time)


def _call_ids(record: Record) -> list[str]:
    return [*record.call_id_stack, record.call_id] if record.call_id else record.call_id_stack


@dataclass
class Arrow:
    """One line of the diagram: a call, a reply or a publish between two lifelines."""

    time: float
    source: str
    target: str
    label: str
    record: Record
    reply: bool = False

    @property
    def error(self) -> bool:
        return self.record.status == ERROR

    @property
    def colour(self) -> str:
        return ERROR_COLOUR if self.error else COLOURS.get(self.record.kind, DEFAULT_COLOUR)

    def sort_key(self) -> tuple[float, int, int]:
        # At equal times a caller's call comes before its callee's, a callee's reply first.
        depth = len(self.record.call_id_stack)
        return (self.time, 1, -depth) if self.reply else (self.time, 0, depth)


class SequenceDiagram:
    """A call chain as a sequence diagram: shows itself in Jupyter (SVG); ``svg`` is the text.

    ``str()`` lists the arrows, for a terminal.
    """

    def __init__(self, records: Iterable[Record]):
        self.records = sorted(records, key=lambda r: r.time)
        self.arrows = sorted(arrows(self.records), key=Arrow.sort_key)
        self.svg = render_svg(self.arrows)

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.svg, encoding="utf-8")
        return path

    def __str__(self) -> str:
        lines = [_line(arrow) for arrow in self]
        return "\n".join(lines) or "no records"

    def __iter__(self):
        return iter(self.arrows)

    def __repr__(self) -> str:
        return f"<SequenceDiagram of {len(self.records)} records>\n{self}"


def _line(arrow: Arrow) -> str:
    if arrow.reply:
        return f"{arrow.target} <-- {arrow.source}: {arrow.label}"
    return f"{arrow.source} --> {arrow.target}: {arrow.label}"


# --- records to arrows --------------------------------------------------------------------------


def arrows(records: list[Record]) -> list[Arrow]:
    """The calls, replies and publishes of a chain's records."""
    services = {r.call_id: r.service for r in records if r.call_id and r.service}
    result: list[Arrow] = []
    for index, record in enumerate(records):
        if record.event is not None:
            result.append(_publish_arrow(record, services))
            continue
        source = _caller(record, records[:index], services)
        target = record.service or record.target or "?"
        result.append(Arrow(record.time, source, target, _call_label(record), record))
        if record.kind in (HTTP, RPC) and record.duration is not None:
            end = record.time + record.duration
            result.append(Arrow(end, target, source, _reply_label(record), record, reply=True))
    return result


def _publish_arrow(record: Record, services: dict[str, str]) -> Arrow:
    exchange, _, routing_key = (record.target or "").partition(":")
    publisher = record.call_id_stack[-1] if record.call_id_stack else None
    source = services.get(publisher) or _service_of(record.source) or CLIENT
    verb = "dispatch" if record.kind == EVENT else "publish"
    return Arrow(record.time, source, exchange or "?", f"{verb} {routing_key}", record)


def _caller(record: Record, earlier: list[Record], services: dict[str, str]) -> str:
    """The lifeline a worker's call came from."""
    parent = record.parent_call_id
    if record.kind == TIMER:
        return record.service or "?"
    if record.kind in (EVENT, MESSAGE):
        # Through the exchange its parent's last publish of that kind went to.
        published = [
            r.target or ""
            for r in earlier
            if r.event is not None and r.kind == record.kind and r.call_id_stack[-1:] == [parent]
        ]
        if published:
            return published[-1].partition(":")[0]
        if record.kind == EVENT and record.source:
            return f"{_service_of(record.source)}.events"
    return services.get(parent) or CLIENT


def _service_of(source: str | None) -> str | None:
    """The service of a ``"service.method"`` source (a handler's source may be a bare name)."""
    return source.rsplit(".", 1)[0] if source and "." in source else source


def _call_label(record: Record) -> str:
    if record.http is not None:
        request = record.http["request"]
        label = f"{request['method']} {urlsplit(request['url']).path}"
    else:
        label = f"{record.kind} {record.target or '?'}"
    if record.duration is not None:
        label += f" ({record.duration * 1000:.1f} ms)"
    elif record.status == RUNNING:
        label += " (running)"
    if record.error is not None and record.kind not in (HTTP, RPC):
        label += f" ✗ {record.error['type']}"
    return label


def _reply_label(record: Record) -> str:
    if record.error is not None:
        return f"{record.shown_status} {record.error['type']}"
    return record.shown_status


# --- arrows to SVG ------------------------------------------------------------------------------


def render_svg(arrows: list[Arrow]) -> str:
    """The diagram as a standalone SVG document (inline styles, no scripts, no fonts)."""
    lifelines = _lifelines(arrows)
    x = {name: 20 + COLUMN // 2 + i * COLUMN for i, name in enumerate(lifelines)}
    width = max(COLUMN * len(lifelines) + 40, 240)
    height = TOP + ROW * max(len(arrows), 1) + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        _markers({a.colour for a in arrows}),
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    parts += [_lifeline(name, x[name], height, name not in _services(arrows)) for name in lifelines]
    for row, arrow in enumerate(arrows):
        parts.append(_arrow(arrow, x, TOP + row * ROW + ROW // 2))
    if not arrows:
        parts.append(f'<text x="20" y="{TOP}">no records</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _lifelines(arrows: list[Arrow]) -> list[str]:
    names: dict[str, None] = {}
    for arrow in arrows:
        names.setdefault(arrow.source)
        names.setdefault(arrow.target)
    return list(names)


def _services(arrows: list[Arrow]) -> set[str]:
    """The lifelines that are services or clients, as opposed to exchanges."""
    return {CLIENT} | {a.record.service for a in arrows if a.record.event is None}


def _markers(colours: set[str]) -> str:
    markers = "".join(
        f'<marker id="sandbox-arrow-{colour[1:]}" viewBox="0 0 10 10" refX="10" refY="5" '
        f'markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for colour in sorted(colours)
    )
    return f"<defs>{markers}</defs>"


def _lifeline(name: str, x: int, height: int, exchange: bool) -> str:
    box = COLUMN - 30
    style = 'stroke-dasharray="4 3" fill="#fff8e1"' if exchange else 'fill="#eceff1"'
    return (
        f'<g class="lifeline"><rect x="{x - box // 2}" y="12" width="{box}" height="28" rx="4" '
        f'stroke="#90a4ae" {style}/>'
        f'<text x="{x}" y="30" text-anchor="middle" font-weight="bold">{_text(name, 24)}</text>'
        f'<line x1="{x}" y1="40" x2="{x}" y2="{height - 8}" stroke="#b0bec5" '
        f'stroke-dasharray="3 3"/></g>'
    )


def _arrow(arrow: Arrow, x: dict[str, int], y: int) -> str:
    start, end = x[arrow.source], x[arrow.target]
    colour = arrow.colour
    dash = ' stroke-dasharray="6 4"' if arrow.reply else ""
    marker = f'marker-end="url(#sandbox-arrow-{colour[1:]})"'
    record = arrow.record
    title = html.escape(
        f"#{record.id} {record.kind} {record.summary()}\ncall id: {record.call_id or '-'}"
    )
    if start == end:  # a service calling itself, or a timer
        line = (
            f'<path d="M{start},{y - 6} h36 v12 h-34" fill="none" stroke="{colour}"{dash} '
            f"{marker}/>"
        )
        text = f'<text x="{start + 42}" y="{y + 4}" fill="{colour}">{_text(arrow.label)}</text>'
    else:
        line = (
            f'<line x1="{start}" y1="{y}" x2="{end}" y2="{y}" stroke="{colour}" '
            f'stroke-width="1.5"{dash} {marker}/>'
        )
        text = (
            f'<text x="{(start + end) // 2}" y="{y - 5}" text-anchor="middle" '
            f'fill="{colour}">{_text(arrow.label)}</text>'
        )
    kind = "reply" if arrow.reply else record.kind
    return (
        f'<g class="hop" data-kind="{kind}" data-record="{record.id}"><title>{title}</title>'
        f"{line}{text}</g>"
    )


def _text(value: str, limit: int = 60) -> str:
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return html.escape(value)
