"""An offline, readable rendering of the OpenAPI and AsyncAPI documents.

Plain HTML with one scoped ``<style>``: no script, no CDN, no font to fetch, so it shows the
same in JupyterLab, Notebook 7, Voila, a saved notebook and a file opened from disk.
Sections fold with ``<details>``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

_STYLE = """<style>
.sandbox-docs { font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px;
  color: var(--jp-ui-font-color1, #212121); max-width: 1100px; }
.sandbox-docs h2 { font-size: 17px; margin: 14px 0 4px; }
.sandbox-docs h3 { font-size: 14px; margin: 12px 0 4px; border-bottom: 1px solid #cfd8dc; }
.sandbox-docs details { margin: 3px 0; border: 1px solid #e0e0e0; border-radius: 4px;
  padding: 2px 8px; }
.sandbox-docs summary { cursor: pointer; padding: 3px 0; }
.sandbox-docs code, .sandbox-docs pre { font-family: var(--jp-code-font-family, monospace);
  font-size: 12px; }
.sandbox-docs pre { white-space: pre-wrap; margin: 4px 0; }
.sandbox-docs table { border-collapse: collapse; margin: 4px 0 8px; }
.sandbox-docs th, .sandbox-docs td { border: 1px solid #e0e0e0; padding: 2px 8px;
  text-align: left; vertical-align: top; }
.sandbox-docs .badge { display: inline-block; min-width: 58px; text-align: center;
  border-radius: 3px; color: white; font-weight: bold; font-size: 11px; padding: 1px 4px;
  margin-right: 6px; }
.sandbox-docs .muted { color: #757575; }
</style>"""

_BADGE_COLOURS = {
    "get": "#1565c0",
    "post": "#2e7d32",
    "put": "#ef6c00",
    "patch": "#6d4c41",
    "delete": "#c62828",
    "receive": "#6a1b9a",
    "send": "#00838f",
}


class ApiDocs:
    """Both documents of a set of services; shows itself as HTML in a notebook.

    ``.openapi`` and ``.asyncapi`` are the documents as dicts; ``page()`` is a standalone
    HTML page and ``save(path)`` writes it; ``str()`` is a one-line-per-operation summary
    for a terminal.
    """

    def __init__(self, openapi: dict[str, Any], asyncapi: dict[str, Any]):
        self.openapi = openapi
        self.asyncapi = asyncapi

    def _repr_html_(self) -> str:
        return render_html(self.openapi, self.asyncapi)

    def page(self) -> str:
        """A standalone HTML page of both documents."""
        title = html.escape(self.openapi["info"]["title"])
        return (
            f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body>{render_html(self.openapi, self.asyncapi)}</body></html>\n"
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.page(), encoding="utf-8")
        return path

    def __str__(self) -> str:
        lines = [
            f"{verb.upper():<7} {path}  {op.get('summary', '')}".rstrip()
            for path, item in self.openapi["paths"].items()
            for verb, op in item.items()
        ]
        lines += [
            f"{op['action']:<7} {_address(self.asyncapi, op)}  {op.get('summary', '')}".rstrip()
            for op in self.asyncapi["operations"].values()
        ]
        return "\n".join(lines) or "no entrypoints to document"

    def __repr__(self) -> str:
        return f"<ApiDocs {self.openapi['info']['title']}>\n{self}"


def render_html(openapi: dict[str, Any] | None, asyncapi: dict[str, Any] | None) -> str:
    """Either or both documents as one HTML fragment."""
    parts = [_STYLE, '<div class="sandbox-docs">']
    if openapi is not None:
        parts += _openapi_html(openapi)
    if asyncapi is not None:
        parts += _asyncapi_html(asyncapi)
    for name, document in (("OpenAPI", openapi), ("AsyncAPI", asyncapi)):
        if document is not None:
            parts.append(_fold(f"{name} JSON", f"<pre>{_e(json.dumps(document, indent=2))}</pre>"))
    parts.append("</div>")
    return "\n".join(parts)


# --- OpenAPI --------------------------------------------------------------------------------------


def _openapi_html(document: dict[str, Any]) -> list[str]:
    info = document["info"]
    parts = [f"<h2>HTTP: {_e(info['title'])} <span class='muted'>{_e(info['version'])}</span></h2>"]
    if document.get("servers"):
        parts.append(f"<div class='muted'>served at {_e(document['servers'][0]['url'])}</div>")
    if not document["paths"]:
        parts.append("<div class='muted'>no HTTP entrypoints</div>")
    for path, item in document["paths"].items():
        for verb, operation in item.items():
            head = f"{_badge(verb)}<code>{_e(path)}</code> {_e(operation.get('summary', ''))}"
            parts.append(_fold(head, _operation_body(operation)))
    parts += _schemas_html(document)
    return parts


def _operation_body(operation: dict[str, Any]) -> str:
    parts = [f"<div class='muted'>{_e(operation['operationId'])}</div>"]
    if operation.get("description"):
        parts.append(f"<pre>{_e(operation['description'])}</pre>")
    rows = [
        [f"<code>{_e(p['name'])}</code>", _e(p["in"]), _type(p["schema"]), _e(p.get("description"))]
        for p in operation.get("parameters", [])
    ]
    if rows:
        parts.append(_table(["parameter", "in", "type", ""], rows))
    body = operation.get("requestBody")
    if body:
        parts.append(_table(["request body", "type"], _content_rows(body["content"])))
    responses = [
        [f"<b>{_e(status)}</b> {_e(response['description'])}", *_content_cells(response)]
        for status, response in operation["responses"].items()
    ]
    parts.append(_table(["response", "media type", "type"], responses))
    return "".join(parts)


def _content_rows(content: dict[str, Any]) -> list[list[str]]:
    return [[_e(media), _type(value.get("schema", {}))] for media, value in content.items()]


def _content_cells(response: dict[str, Any]) -> list[str]:
    rows = _content_rows(response.get("content", {}))
    return rows[0] if rows else ["", ""]


# --- AsyncAPI -------------------------------------------------------------------------------------


def _asyncapi_html(document: dict[str, Any]) -> list[str]:
    info = document["info"]
    parts = [
        f"<h2>Messaging: {_e(info['title'])} <span class='muted'>{_e(info['version'])}</span></h2>"
    ]
    for server in document.get("servers", {}).values():
        where = f"{server['protocol']}://{server['host']}{server.get('pathname', '')}"
        parts.append(f"<div class='muted'>broker {_e(where)}</div>")
    if not document["operations"]:
        parts.append("<div class='muted'>no messaging entrypoints</div>")
    for operation_id, operation in document["operations"].items():
        head = (
            f"{_badge(operation['action'])}<code>{_e(_address(document, operation))}</code> "
            f"{_e(operation.get('summary', ''))}"
        )
        parts.append(_fold(head, _message_body(document, operation_id, operation)))
    timers = document.get("x-timers", [])
    if timers:
        rows = [
            [_e(f"{timer['service']}.{timer['method']}"), _e(f"every {timer['interval']} s")]
            for timer in timers
        ]
        parts += ["<h3>Timers</h3>", _table(["method", "schedule"], rows)]
    parts += _schemas_html(document)
    return parts


def _address(document: dict[str, Any], operation: dict[str, Any]) -> str:
    channel = _resolve(document, operation["channel"])
    amqp = channel.get("bindings", {}).get("amqp", {})
    if amqp.get("is") == "queue":
        return f"queue {channel['address']}"
    exchange = amqp.get("exchange", {}).get("name") or "(default exchange)"
    return f"{exchange} / {channel.get('address')}"


def _message_body(document: dict[str, Any], operation_id: str, operation: dict[str, Any]) -> str:
    parts = [f"<div class='muted'>{_e(operation_id)}</div>"]
    if operation.get("description"):
        parts.append(f"<pre>{_e(operation['description'])}</pre>")
    rows = [["message", _payload(document, ref)] for ref in operation.get("messages", [])]
    reply = operation.get("reply")
    if reply:
        rows += [["reply", _payload(document, ref)] for ref in reply["messages"]]
    parts.append(_table(["", "payload"], rows))
    return "".join(parts)


def _payload(document: dict[str, Any], ref: dict[str, str]) -> str:
    return _type(_resolve(document, ref).get("payload", {}))


def _resolve(document: dict[str, Any], ref: dict[str, str]) -> dict[str, Any]:
    node: Any = document
    for part in ref["$ref"].lstrip("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


# --- shared -------------------------------------------------------------------------------------


def _schemas_html(document: dict[str, Any]) -> list[str]:
    schemas = document.get("components", {}).get("schemas", {})
    if not schemas:
        return []
    parts = []
    for name, schema in schemas.items():
        properties = schema.get("properties")
        if properties:
            required = set(schema.get("required", []))
            rows = [
                [f"<code>{_e(key)}</code>{'' if key in required else '?'}", _type(value)]
                for key, value in properties.items()
            ]
            body = _table(["field", "type"], rows)
        else:
            body = f"<code>{_e(schema_text(schema))}</code>"
        if schema.get("description"):
            body = f"<pre>{_e(schema['description'])}</pre>{body}"
        parts.append(_fold(f"<code>{_e(name)}</code>", body))
    return ["<h3>Schemas</h3>", *parts]


def schema_text(schema: dict[str, Any]) -> str:
    """A JSON Schema as a short type expression: ``{name: string, tags?: string[]}``."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(schema_text(option) for option in schema["anyOf"])
    if "allOf" in schema:
        return " & ".join(schema_text(part) for part in schema["allOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return _array_text(schema)
    if kind == "object":
        return _object_text(schema)
    if kind is None:
        return "any"
    return f"{kind} ({schema['format']})" if "format" in schema else str(kind)


def _array_text(schema: dict[str, Any]) -> str:
    items = schema.get("prefixItems", schema.get("items"))
    if isinstance(items, list):
        return "[" + ", ".join(schema_text(item) for item in items) + "]"
    item = schema_text(items) if isinstance(items, dict) else "any"
    return f"({item})[]" if " " in item else f"{item}[]"


def _object_text(schema: dict[str, Any]) -> str:
    properties = schema.get("properties")
    if properties:
        required = set(schema.get("required", []))
        fields = (
            f"{key}{'' if key in required else '?'}: {schema_text(value)}"
            for key, value in properties.items()
        )
        return "{" + ", ".join(fields) + "}"
    values = schema.get("additionalProperties")
    return f"{{string: {schema_text(values)}}}" if isinstance(values, dict) else "object"


def _type(schema: dict[str, Any]) -> str:
    return f"<code>{_e(schema_text(schema))}</code>"


def _table(headings: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fold(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>{body}</details>"


def _badge(word: str) -> str:
    colour = _BADGE_COLOURS.get(word, "#546e7a")
    return f"<span class='badge' style='background:{colour}'>{_e(word.upper())}</span>"


def _e(text: Any) -> str:
    return html.escape(str(text)) if text is not None else ""
