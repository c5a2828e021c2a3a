"""What every sandbox widget shares: front-end detection, output dicts, the display protocol."""

from __future__ import annotations

import html
import json
from typing import Any

from sandbox.runtime import get_runtime

JSON_LIMIT = 50  # records or rows put in an application/json fallback


def in_kernel() -> bool:
    """True when a Jupyter kernel (and so possibly a widget front end) is listening."""
    try:
        from IPython import get_ipython
    except ImportError:  # no IPython, no kernel: the plain `sandbox shell` imports us without it
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def json_output(data: Any, root: str, expanded: bool = False) -> dict[str, Any]:
    """A display_data output showing ``data`` as a collapsible JSON tree named ``root``."""
    if not isinstance(data, dict | list):
        data = {root: data}
    return {
        "output_type": "display_data",
        "data": {"application/json": data, "text/plain": f"{root}: {json.dumps(data, indent=1)}"},
        "metadata": {"application/json": {"expanded": expanded, "root": root}},
    }


def html_output(markup: str, text: str) -> dict[str, Any]:
    return {
        "output_type": "display_data",
        "data": {"text/html": markup, "text/plain": text},
        "metadata": {},
    }


def stream_output(text: str, name: str = "stdout") -> dict[str, Any]:
    return {"output_type": "stream", "name": name, "text": text}


def message_html(text: str, error: bool = False) -> str:
    colour = "#c62828" if error else "#2e7d32"
    return f"<span style='color:{colour}'>{html.escape(text)}</span>"


class View:
    """A widget when a kernel can show one, text and JSON in every case.

    Subclasses build their ipywidgets tree in ``build()`` (only in a kernel) and describe
    themselves in ``text()`` and ``data()``.
    """

    widget: Any = None

    def __init__(self) -> None:
        if in_kernel():
            self.widget = self.build()

    def build(self) -> Any:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def data(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """Close the widget and every widget inside it (a closed box leaves its children open)."""
        if self.widget is not None:
            _close_tree(self.widget)
            self.widget = None

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        bundle: dict[str, Any] = {}
        widget_bundle = getattr(self.widget, "_repr_mimebundle_", None)  # None once closed
        if callable(widget_bundle):
            shown = widget_bundle(include=include, exclude=exclude) or {}
            # anywidget answers (data, metadata)
            bundle.update(shown[0] if isinstance(shown, tuple) else shown)
        bundle["text/plain"] = self.text()
        bundle["application/json"] = self.data()
        return bundle

    def __repr__(self) -> str:
        return self.text()


class PollingView(View):
    """A view that calls ``refresh()`` every ``interval`` seconds, in the hub, from when it is
    built until it is closed or ``polling()`` says to stop: for state nobody announces."""

    interval = 0.5
    _closed = False

    def __init__(self) -> None:
        super().__init__()
        if self.widget is not None:
            self.refresh()
            get_runtime().call_later(self.interval, self._poll)

    def refresh(self) -> None:
        raise NotImplementedError

    def polling(self) -> bool:
        return True

    def _poll(self) -> None:
        if self._closed or self.widget is None:
            return
        self.refresh()
        if self.polling():
            get_runtime().call_later(self.interval, self._poll)

    def close(self) -> None:
        self._closed = True
        super().close()


def _close_tree(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()
