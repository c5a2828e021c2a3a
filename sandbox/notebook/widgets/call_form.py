"""The call form: pick an RPC method, HTTP route or event, type JSON, fire, read the reply."""

from __future__ import annotations

import time
from typing import Any

from sandbox.notebook.calls import (
    Target,
    argument_template,
    call_targets,
    fire,
    parse_json,
    split_arguments,
)
from sandbox.notebook.errors import describe_error
from sandbox.notebook.http import HttpResponse
from sandbox.notebook.widgets.base import View, json_output, message_html, stream_output
from sandbox.records import HTTP, jsonable

PLACEHOLDERS = {
    "arguments": 'arguments as JSON: ["Ada"], {"name": "Ada"}, or one value',
    "body": 'JSON body or event payload: {"key": "value"} (blank for none)',
}


class CallForm(View):
    """``sb.call_form()``: fire a call at a running service and show its reply in place."""

    def __init__(self, client: Any, session: Any):
        self.client, self.session = client, session
        self.targets: list[Target] = []
        self.reply: Any = None
        self._template = ""  # the arguments last filled in from a signature
        super().__init__()
        self.refresh()

    def build(self) -> Any:
        import ipywidgets as w

        wide = w.Layout(width="100%")
        self.target_widget = w.Dropdown(options=[], description="call", layout=w.Layout(flex="1"))
        self.reload_button = w.Button(icon="refresh", tooltip="list targets again")
        self.reload_button.layout.width = "auto"
        self.path_widget = w.Text(description="path", layout=w.Layout(width="100%", display="none"))
        self.args_widget = w.Textarea(description="JSON", rows=3, layout=wide)
        self.fire_button = w.Button(description="Fire", button_style="primary", icon="send")
        self.status_widget = w.HTML()
        self.reply_widget = w.Output()

        self.target_widget.observe(lambda change: self._show_fields(change.new), "value")
        self.reload_button.on_click(lambda _: self.refresh())
        self.fire_button.on_click(lambda _: self.fire())
        return w.VBox(
            [
                w.HBox([self.target_widget, self.reload_button], layout=wide),
                self.path_widget,
                self.args_widget,
                w.HBox([self.fire_button, self.status_widget]),
                self.reply_widget,
            ]
        )

    def refresh(self) -> None:
        """List the targets of the running services again, keeping the chosen one."""
        self.targets = call_targets(self.session)
        if self.widget is None:
            return
        chosen = self.target_widget.value
        self.target_widget.options = [(t.label, t) for t in self.targets]
        if chosen in self.targets or (chosen is None and self.targets):
            self.target_widget.value = chosen or self.targets[0]  # one is always chosen
        self._show_fields(self.target_widget.value)

    def _show_fields(self, target: Target | None) -> None:
        http = target is not None and target.kind == HTTP
        self.path_widget.layout.display = "" if http else "none"
        if http and (not self.path_widget.value or "<" in self.path_widget.value):
            self.path_widget.value = target.route
        takes_body = target is not None and target.takes_body
        self.args_widget.placeholder = PLACEHOLDERS["body" if takes_body else "arguments"]
        if self.args_widget.value.strip() in ("", self._template):  # nothing typed over it
            self._template = argument_template(self.session, target) if target else ""
            self.args_widget.value = self._template

    def choose(self, label: str) -> None:
        """Pick the target whose label contains ``label`` (``"greeter.hello"``)."""
        self.refresh()
        for target in self.targets:
            if label in target.label:
                self.target_widget.value = target
                return
        raise KeyError(f"no running target like {label!r}")

    def fire(self) -> Any:
        """Validate the JSON, call the chosen target and show the reply (or the error)."""
        target = self.target_widget.value
        if target is None:
            return self._fail("nothing to call: start a service with an RPC or HTTP entrypoint")
        try:
            value = parse_json(self.args_widget.value)
        except ValueError as exc:
            return self._fail(str(exc))
        path = self.path_widget.value.strip() or None
        if target.kind == HTTP and path and "<" in path:
            return self._fail(f"fill in the path: {path}")
        args, kwargs = ([value], {}) if target.takes_body else split_arguments(value)
        self.status_widget.value = message_html(f"calling {target.label}...")
        started = time.perf_counter()
        try:
            self.reply = fire(self.client, target, args, kwargs, path=path)
        except Exception as exc:
            return self._fail(describe_error(exc), getattr(exc, "traceback", None))
        took = (time.perf_counter() - started) * 1000
        self.status_widget.value = message_html(f"{target.label} replied in {took:.1f} ms")
        self.reply_widget.outputs = (json_output(_reply_data(self.reply), "reply", expanded=True),)
        return self.reply

    def _fail(self, text: str, traceback: str | None = None) -> None:
        self.reply = None
        self.status_widget.value = message_html(text, error=True)
        self.reply_widget.outputs = (stream_output(traceback, "stderr"),) if traceback else ()

    def text(self) -> str:
        if not self.targets:
            return "call form: no running service has an RPC, HTTP or event entrypoint"
        lines = [f"  {t.label}" for t in self.targets]
        return "call form (use sb.rpc, sb.http or sb.dispatch outside a widget front end):\n" + (
            "\n".join(lines)
        )

    def data(self) -> Any:
        return [{"label": t.label, "kind": t.kind, "service": t.service} for t in self.targets]


def _reply_data(reply: Any) -> Any:
    if isinstance(reply, HttpResponse):
        body = reply._json_or_none()
        return {"status": reply.status, "body": body if body is not None else reply.text}
    return jsonable(reply)
