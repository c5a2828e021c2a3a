"""``sb.load(...)``'s view: a live plot of a load run, a max_workers slider, then the result.

The run itself is :class:`sandbox.load.LoadRun`, in the hub; this view reads its timeline
twice a second. The slider resizes the target service's worker pool while the load runs, so
a learner sees backpressure: fewer workers, a longer queue, longer latencies.
"""

from __future__ import annotations

import html
from typing import Any

from sandbox.load import EVENT, HTTP, LoadResult, LoadRun, LoadTarget, LoadWindow, milliseconds
from sandbox.notebook.session import RUNNING, ServiceHandle
from sandbox.notebook.widgets.base import PollingView, message_html

PLOT_WIDTH, PLOT_HEIGHT = 520, 46
# (label, colour, how to read it off a window): one small line plot per row.
SERIES = (
    ("throughput /s", "#1565c0", lambda w: w.throughput),
    ("p50 ms", "#2e7d32", lambda w: None if w.p50 is None else w.p50 * 1000),
    ("p99 ms", "#ef6c00", lambda w: None if w.p99 is None else w.p99 * 1000),
    ("errors", "#c62828", lambda w: w.errors),
    ("busy workers", "#6a1b9a", lambda w: w.busy_workers),
    ("queue depth", "#00838f", lambda w: w.queue_depth),
)


def target_service(session: Any, target: LoadTarget) -> str | None:
    """The running service of the session that serves ``target``; None when it runs elsewhere."""
    for handle in session.running():
        if target.kind == EVENT:
            if any(_handles_event(e, target) for e in handle.container.entrypoints):
                return handle.name
        elif target.kind == HTTP:
            if any(_serves_route(e, target) for e in handle.container.entrypoints):
                return handle.name
        elif handle.name == target.name:
            return handle.name
    return None


def _handles_event(entrypoint: Any, target: LoadTarget) -> bool:
    source = getattr(entrypoint, "source_service", None)
    return source == target.name and getattr(entrypoint, "event_type", None) == target.member


def _serves_route(entrypoint: Any, target: LoadTarget) -> bool:
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import Map

    rule = getattr(entrypoint, "get_url_rule", None)
    if rule is None:
        return False
    try:
        Map([rule()]).bind("sandbox").match(target.name, method=target.member)
    except HTTPException:
        return False
    return True


class LoadView(PollingView):
    """A load run as a live plot; ``.throughput``, ``.p50``, ``.p99``, ``.errors`` and
    ``.table()`` wait for the run to end, ``.result()`` returns the whole LoadResult."""

    def __init__(self, run: LoadRun, session: Any, service: str | None, interval: float = 0.5):
        self.run, self.session, self.service, self.interval = run, session, service, interval
        super().__init__()

    def build(self) -> Any:
        import ipywidgets as w

        self.header = w.HTML()
        self.plot = w.HTML()
        self.stop_button = w.Button(description="stop", layout=w.Layout(width="auto"))
        self.stop_button.on_click(lambda _: self.run.stop())
        self.message_widget = w.HTML()
        controls = [self.stop_button]
        self.workers_slider = None
        handle = self._handle()
        if handle is not None:
            self.workers_slider = w.IntSlider(
                value=handle.container.max_workers,
                min=1,
                max=max(50, handle.container.max_workers),
                description="max_workers",
                continuous_update=False,
            )
            self.workers_slider.observe(self._resize, names="value")
            controls.insert(0, self.workers_slider)
        return w.VBox([self.header, self.plot, w.HBox(controls), self.message_widget])

    def _handle(self) -> ServiceHandle | None:
        """The target service as it runs now (a reload replaces its handle)."""
        handle = self.session.services.get(self.service) if self.service else None
        return handle if handle is not None and handle.state == RUNNING else None

    def _resize(self, change: dict[str, Any]) -> None:
        handle = self._handle()
        if handle is None:
            self._message(f"{self.service} is not running", error=True)
            return
        handle.container.set_max_workers(int(change["new"]))
        self._message(f"{handle.name}: max_workers = {change['new']}")

    def _message(self, text: str, error: bool = False) -> None:
        if self.widget is not None:
            self.message_widget.value = message_html(text, error)

    def busy_workers(self) -> int | None:
        """The target service's busy workers, for the run's timeline."""
        handle = self._handle()
        return handle.busy_workers if handle is not None else None

    def polling(self) -> bool:
        return not self.run.done

    def refresh(self) -> None:
        if self.widget is None:
            return
        self.header.value = f"<b>{html.escape(self._headline())}</b>"
        self.plot.value = plot_svg(list(self.run.timeline))
        self.stop_button.disabled = self.run.done

    def _headline(self) -> str:
        run = self.run
        if run.done:
            result = run.wait()
            p50, p99 = milliseconds(result.p50), milliseconds(result.p99)
            return (
                f"load {run.target}: done, {result.throughput:.1f}/s, p50 {p50}, "
                f"p99 {p99}, {result.errors} error(s)"
            )
        return f"load {run.target}: {run.sent}/{run.total} sent at {run.rate:g}/s"

    # --- the result -------------------------------------------------------------------------

    def result(self, timeout: float | None = None) -> LoadResult:
        """The run's result, once it ended (waits for it)."""
        return self.run.wait(timeout)

    @property
    def throughput(self) -> float:
        return self.result().throughput

    @property
    def p50(self) -> float | None:
        return self.result().p50

    @property
    def p99(self) -> float | None:
        return self.result().p99

    @property
    def errors(self) -> int:
        return self.result().errors

    def table(self) -> str:
        return self.result().table()

    def stop(self) -> None:
        self.run.stop()

    def text(self) -> str:
        if self.run.done:
            return self.run.wait().table()
        return self._headline() + " (running; .result() waits for the end)"

    def data(self) -> Any:
        run = self.run
        data: dict[str, Any] = {"target": str(run.target), "done": run.done, "sent": run.sent}
        if run.done:
            result = run.wait()
            data.update(
                throughput=result.throughput,
                p50=result.p50,
                p99=result.p99,
                errors=result.errors,
                completed=result.completed,
            )
        return data


def plot_svg(timeline: list[LoadWindow]) -> str:
    """One small line plot per series, its latest value beside it; light enough for 2 Hz."""
    rows = []
    end = max((w.elapsed for w in timeline), default=1.0) or 1.0
    for index, (label, colour, read) in enumerate(SERIES):
        points = [(w.elapsed, read(w)) for w in timeline]
        points = [(x, y) for x, y in points if y is not None]
        top = PLOT_HEIGHT * index
        rows.append(_series_svg(label, colour, points, end, top))
    height = PLOT_HEIGHT * len(SERIES)
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{PLOT_WIDTH + 170}' height='{height}' "
        f"style='font: 11px sans-serif'>{''.join(rows)}</svg>"
    )


def _series_svg(label: str, colour: str, points: list, end: float, top: float) -> str:
    inner = PLOT_HEIGHT - 12
    peak = max((y for _, y in points), default=0) or 1
    coords = " ".join(
        f"{PLOT_WIDTH * x / end:.1f},{top + 4 + inner * (1 - y / peak):.1f}" for x, y in points
    )
    latest = f"{points[-1][1]:.4g}" if points else "-"
    return (
        f"<rect x='0' y='{top + 2}' width='{PLOT_WIDTH}' height='{inner + 4}' fill='#fafafa' "
        f"stroke='#e0e0e0'/><polyline points='{coords}' fill='none' stroke='{colour}' "
        f"stroke-width='1.5'/><text x='{PLOT_WIDTH + 8}' y='{top + 18}' fill='{colour}'>"
        f"{html.escape(label)}: {latest}</text><text x='{PLOT_WIDTH + 8}' y='{top + 32}' "
        f"fill='#9e9e9e'>max {peak:.4g}</text>"
    )
