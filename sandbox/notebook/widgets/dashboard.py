"""The service dashboard: state, entrypoints, busy workers, start/stop/restart, log per service."""

from __future__ import annotations

import html
import threading
from typing import Any

from sandbox.notebook.errors import describe_error
from sandbox.notebook.session import RUNNING
from sandbox.notebook.status import MARKS, describe_entrypoints, service_line, services_table
from sandbox.notebook.widgets.base import PollingView, message_html

COLOURS = {"running": "#2e7d32", "stopped": "#757575", "crashed": "#c62828"}
ACTIONS = ("start", "stop", "restart")


class Dashboard(PollingView):
    """``sb.dashboard()`` and ``%sandbox status``: every service of the session, kept current
    (busy workers and crashes change without telling anyone: it looks twice a second)."""

    def __init__(self, session: Any, logs: Any, interval: float = 0.5):
        self.session, self.logs, self.interval = session, logs, interval
        self.buttons: dict[str, dict[str, Any]] = {}
        self._rows: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        super().__init__()

    def build(self) -> Any:
        import ipywidgets as w

        self.message_widget = w.HTML()
        self.services_box = w.VBox()
        return w.VBox([self.services_box, self.message_widget])

    def refresh(self) -> None:
        if self.widget is None:
            return
        with self._lock:
            handles = list(self.session.services.values())
            for handle in handles:
                if handle.name not in self._rows:
                    self._rows[handle.name] = self._make_row(handle.name)
                self._update_row(handle)
            children = tuple(self._rows[h.name]["box"] for h in handles)
            if children != self.services_box.children:
                self.services_box.children = children

    def _make_row(self, name: str) -> dict[str, Any]:
        import ipywidgets as w

        row: dict[str, Any] = {
            "state": w.HTML(layout=w.Layout(min_width="14em")),
            "workers": w.HTML(layout=w.Layout(min_width="9em")),
            "entrypoints": w.HTML(),
        }
        buttons = {}
        for action in ACTIONS:
            button = w.Button(description=action, layout=w.Layout(width="auto"))
            button.on_click(lambda _, action=action: self.act(name, action))
            buttons[action] = button
        log = w.Accordion(children=[self.logs.panel(name)], selected_index=None)
        log.set_title(0, "log")
        row["box"] = w.VBox(
            [w.HBox([row["state"], row["workers"], *buttons.values()]), row["entrypoints"], log],
            layout=w.Layout(border_bottom="1px solid #ddd", padding="4px 0"),
        )
        self.buttons[name] = buttons
        return row

    def _update_row(self, handle: Any) -> None:
        row, buttons = self._rows[handle.name], self.buttons[handle.name]
        colour = COLOURS.get(handle.state, "#000")
        state = (
            f"<span style='color:{colour}'>{MARKS.get(handle.state, '?')}</span> "
            f"<b>{html.escape(handle.name)}</b> <span style='color:{colour}'>{handle.state}</span>"
        )
        if handle.error:
            state += f"<br><small style='color:{colour}'>{html.escape(handle.error)}</small>"
        row["state"].value = state
        row["workers"].value = f"<small>{_workers(handle)}</small>"
        row["entrypoints"].value = "<small><code>{}</code></small>".format(
            "</code>, <code>".join(map(html.escape, _entrypoints(handle)))
        )
        running = handle.state == RUNNING
        buttons["start"].disabled = running
        buttons["stop"].disabled = not running

    def act(self, name: str, action: str) -> None:
        """What the buttons do: ``start``, ``stop`` or ``restart`` the service ``name``."""
        try:
            if action == "start":
                handle = self.session.start(self.session.services[name].cls)
            else:
                handle = getattr(self.session, action)(name)
        except Exception as exc:
            self._message(f"could not {action} {name}: {describe_error(exc)}", error=True)
        else:
            self._message(service_line(handle))
        self.refresh()

    def _message(self, text: str, error: bool = False) -> None:
        if self.widget is not None:
            self.message_widget.value = message_html(text, error)

    def text(self) -> str:
        return services_table(self.session.services.values())

    def data(self) -> Any:
        return [
            {
                "name": h.name,
                "state": h.state,
                "error": h.error,
                "entrypoints": _entrypoints(h),
                "busy_workers": h.busy_workers,
                "max_workers": h.container.max_workers if h.container else None,
            }
            for h in self.session.services.values()
        ]


def _entrypoints(handle: Any) -> list[str]:
    return describe_entrypoints(handle.container) if handle.container is not None else []


def _workers(handle: Any) -> str:
    if handle.container is None or handle.state != RUNNING:
        return "no workers"
    return f"{handle.busy_workers}/{handle.container.max_workers} workers busy"
