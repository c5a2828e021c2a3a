"""``sb``: the notebook's client to its services (like ``n`` in ``nameko shell``)."""

from __future__ import annotations

import dis
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sandbox import recorder
from sandbox.config import config
from sandbox.notebook.breaking import breaking_notice
from sandbox.notebook.calls import replay
from sandbox.notebook.errors import describe_error, show_error
from sandbox.notebook.faults import KernelFaults, checked_faults
from sandbox.notebook.http import HttpClient
from sandbox.notebook.rpc import NotebookRpc, NotebookRpcProxy, PendingCalls, call_timeout
from sandbox.notebook.session import RUNNING, ServiceHandle, Session
from sandbox.notebook.status import service_line, services_table
from sandbox.notebook.trace import Trace
from sandbox.notebook.widgets.logs import ServiceLogs
from sandbox.records import Record, get_recorder
from sandbox.utils import sanitize_url
from sandbox.validation import VALIDATE_CONFIG_KEY

if TYPE_CHECKING:
    from sandbox.docs import ApiDocs
    from sandbox.faults import Faults


class NotebookClient:
    """What a notebook cell uses to reach and drive the kernel's services."""

    def __init__(self, session: Session):
        self._session = session
        self._rpc: NotebookRpc | None = None
        self._calls: PendingCalls | None = None
        self._dispatch = None
        # The client's own broker config once connected alone; None: the kernel's config.
        self._alone: dict[str, Any] | None = None
        self._cluster_tap: Any = None
        self.http = HttpClient(self._mark, call_timeout)
        self._last_action = 0.0
        self._finished = _FinishedWorkers()
        recorder.add_observer(self._finished)
        self._recorder = get_recorder().start()
        self.trace = Trace(self._recorder)
        self._logs = ServiceLogs().install()
        self._views: dict[str, Any] = {}
        self._kernel_faults = KernelFaults(session)  # what %sandbox faults turned on

    def _mark(self) -> None:
        self._last_action = time.time()

    # --- services ---------------------------------------------------------------------------

    @property
    def services(self) -> ServicesView:
        return ServicesView(self._session)

    def start(self, service_cls: type) -> ServiceHandle | None:
        """Start (or reload) a service class; prints one status line, or one error line."""
        name = getattr(service_cls, "name", service_cls.__name__)
        previous = self._session.services.get(name)
        reloading = previous is not None and previous.state == RUNNING
        try:
            handle = self._session.start(service_cls)
        except Exception as exc:
            kept = "; the previous version keeps running" if reloading else ""
            show_error(f"could not start {name!r}: {describe_error(exc)}{kept}")
            return None
        if previous is not None and previous.cls.__qualname__ != service_cls.__qualname__:
            replaced = previous.cls.__qualname__
            show_error(f'{service_cls.__qualname__} replaces {replaced} as service "{name}"')
        print(service_line(handle, reloaded=reloading))
        notice = None
        if reloading:
            validating = bool(handle.container.config.get(VALIDATE_CONFIG_KEY))
            notice = breaking_notice(service_cls, self._recorder.records(), validating)
        if notice is not None:
            show_error(notice)
        return handle

    def stop(self, service: str | type) -> None:
        handle = self._session.stop(service)
        print(service_line(handle))

    def restart(self, service: str | type) -> None:
        handle = self._session.restart(service)
        print(service_line(handle))

    # --- calls ------------------------------------------------------------------------------

    @property
    def rpc(self) -> NotebookRpc:
        """``sb.rpc.<service>.<method>(...)``, ``.call_async(...)``, ``sb.rpc["name"]``.

        A call waits ``NOTEBOOK_CALL_TIMEOUT`` seconds at most, and fails at once when its
        service crashes in this kernel.
        """
        if self._rpc is None:
            self._rpc_proxy = NotebookRpcProxy(self._settings())
            self._rpc_proxy.start()
            # Connected alone, a crash of a kernel service says nothing of the cluster's.
            watched = self._session if self._alone is None else Session()
            self._calls = PendingCalls(watched, self._rpc_proxy.send)
            self._rpc = NotebookRpc(self._calls.send)
        self._mark()
        return self._rpc

    def dispatch(self, service_name: str, event_type: str, event_data: Any = None) -> None:
        """Publish an event as if ``service_name`` had dispatched it."""
        if self._dispatch is None:
            from sandbox.standalone.events import event_dispatcher

            self._dispatch = event_dispatcher(self._settings())
        self._mark()
        self._dispatch(service_name, event_type, event_data)

    def wait_for(
        self,
        service: str,
        entrypoint: str,
        timeout: float = 10,
        callback: Callable[[Any, Any, Any], bool] | None = None,
    ):
        """Wait until ``service.entrypoint`` has run a worker.

        ``with sb.wait_for("svc", "handler"): ...`` waits, after the block, for a worker that
        finished after the block began. A plain ``sb.wait_for("svc", "handler")`` returns at once
        when such a worker finished since the last call made through ``sb``, else waits for one.
        """
        waiter = Waiter(self._finished, service, entrypoint, timeout, callback)
        if _called_in_with_statement(sys._getframe(1)):
            return waiter
        waiter.since = self._last_action
        return waiter.wait()

    def replay(self, record: Record | int) -> Any:
        """Send a recorded request again (``sb.replay(sb.trace[-1])`` or a record id)."""
        if isinstance(record, int):
            record = self.trace.find(record)
        self._mark()
        return replay(self, record)

    def load(
        self,
        target: str,
        args: Any = (),
        kwargs: dict[str, Any] | None = None,
        rate: float = 10,
        duration: float = 5,
        concurrency: int = 100,
        timeout: float = 10,
    ):
        """Drive ``target`` at ``rate`` requests a second for ``duration`` seconds.

        ``target``: ``"service.method"`` (RPC), ``"GET /path"`` (HTTP; ``args[0]`` is the
        JSON body) or ``"event:source.event_type"`` (``args[0]`` is the event data). Returns
        at once with a live plot and a max_workers slider for the target service;
        ``.throughput``, ``.p50``, ``.p99``, ``.errors`` and ``.table()`` wait for the end.
        """
        from sandbox.load import LoadRun, LoadTarget
        from sandbox.notebook.widgets.load import LoadView, target_service

        view: LoadView | None = None
        try:
            parsed = LoadTarget.parse(target)
            run = LoadRun(
                parsed,
                args,
                kwargs,
                rate=rate,
                duration=duration,
                concurrency=concurrency,
                timeout=timeout,
                config=self._settings(),
                base_url=self.http.base_url,
                busy_workers=lambda: view.busy_workers() if view is not None else None,
            ).start()
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ValueError | TypeError) else describe_error(exc)
            show_error(f"cannot load {target!r}: {reason}")
            return None
        self._mark()
        # Connected alone, sb reaches a cluster the kernel's services are not part of.
        service = target_service(self._session, parsed) if self._alone is None else None
        view = LoadView(run, self._session, service)
        return view

    # --- widgets ----------------------------------------------------------------------------

    def inspect(self, service=None, kind=None, status=None, text=None):
        """The message inspector, filtered as asked: a live widget in a notebook, text elsewhere.

        There is one per kernel: showing it again shows the same live view.
        """
        from sandbox.notebook.widgets.inspector import Inspector

        inspector = self._view("inspector", lambda: Inspector(self._recorder, self))
        return inspector.filter(service, kind, status, text)

    def dashboard(self):
        """Every service with its state, entrypoints, workers, buttons and log."""
        from sandbox.notebook.widgets.dashboard import Dashboard

        return self._view("dashboard", lambda: Dashboard(self._session, self._logs))

    def call_form(self, target: str | None = None):
        """A form to call an RPC method, HTTP route or event handler and see the reply;
        ``target`` (``"greeter.hello"``) chooses one, else the first is chosen. The arguments
        start as a template of the method's parameters."""
        from sandbox.notebook.widgets.call_form import CallForm

        form = self._view("call_form", lambda: CallForm(self, self._session))
        form.refresh()
        if target is not None:
            form.choose(target)
        return form

    def topology(self):
        """The running system as a live graph: services, exchanges, queues and bindings, with
        queue depths and messages flowing; click a node for its details. Text elsewhere.

        On RabbitMQ it reads the management API (config ``RABBIT_MANAGEMENT_URI``, by default
        port 15672 of the broker's host) and says so when that does not answer.
        """
        from sandbox.notebook.widgets.topology import Topology

        return self._view("topology", lambda: Topology(self._snapshot))

    def _snapshot(self) -> dict[str, Any]:
        from sandbox.topology import snapshot

        containers = [h.container for h in self._session.running() if h.container is not None]
        return snapshot(config["AMQP_URI"], containers, config.get("RABBIT_MANAGEMENT_URI"))

    def why(self, record: Record | int) -> str:
        """What became of a recorded message (``sb.why(sb.trace[-1])`` or a record id), in one
        paragraph: the queues and consumers it reached, or why it reached none."""
        from sandbox.why import Explanation, explain

        if isinstance(record, int):
            record = self.trace.find(record)
        records = self._recorder.records()
        later = records[records.index(record) + 1 :] if record in records else []
        management = config.get("RABBIT_MANAGEMENT_URI")
        return Explanation(explain(record, config["AMQP_URI"], later, management=management))

    def _view(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self._views:
            self._views[name] = make()
        return self._views[name]

    # --- faults -----------------------------------------------------------------------------

    def faults(self, **rules: Any) -> Faults:
        """Faults for the kernel's services while a ``with`` block (or decorated function)
        runs: ``with sb.faults(drop={"shop.buy": 0.3}, seed=1): ...``. Rules: ``latency``,
        ``drop``, ``duplicate``, ``error``, ``kill_worker``, each a dict keyed by
        ``service.method`` (patterns allowed), and ``seed``; :mod:`sandbox.faults` says what
        each does.
        """
        return checked_faults(self._session, **rules)

    # --- documentation ----------------------------------------------------------------------

    def docs(self, *services: str | type) -> ApiDocs:
        """The OpenAPI and AsyncAPI documents of the services (all the session's by default),
        shown as a page that needs no network; ``.openapi`` and ``.asyncapi`` are the dicts."""
        from sandbox.docs import service_docs
        from sandbox.web.server import get_base_url

        handles = [self._session._handle(s) for s in services] or self._session.services.values()
        return service_docs([h.cls for h in handles], config, server_url=get_base_url())

    # --- export -----------------------------------------------------------------------------

    def export(self, path: str = "services.py", *services: str, manifests: bool = False) -> None:
        """Write the services (all, or those named) to a module ``sandbox run`` can run.

        The module holds the classes with the imports, helpers and constants they use, found
        in the cells run so far; ``config.yaml`` beside it holds the kernel's config, secrets
        as ``${ENV}`` placeholders. Names that cannot be exported are listed as warnings.
        ``manifests=True`` also writes a Dockerfile, compose.yaml and k8s/ beside them.
        """
        from sandbox.export import ExportError
        from sandbox.export.manifests import ManifestError
        from sandbox.notebook.export import export_from_kernel

        try:
            export_from_kernel(path, services, manifests)
        except (ExportError, ManifestError, OSError) as exc:
            show_error(f"cannot export: {exc}")

    # --- connection -------------------------------------------------------------------------

    def connect(self, uri: str, services: bool = True, http: str | None = None) -> None:
        """Move the kernel's services and this client to the broker at ``uri``.

        ``amqp://user:pass@host:5672/vhost`` joins a RabbitMQ (and the cluster behind it);
        ``memory://`` comes back to the embedded broker.

        ``services=False`` connects this client alone: ``sb.rpc`` and ``sb.dispatch`` reach
        the cluster while the kernel's services stay where they run, so they do not compete
        with its deployed replicas for requests. ``http`` is the cluster's web address
        (``http://host:8000``), where ``sb.http`` then sends its paths.
        """
        self._disconnect()
        if http is not None:
            self.http.base_url = http
        if not services:
            self._alone = {**config, "AMQP_URI": uri}
            kept = sanitize_url(str(config["AMQP_URI"]))
            print(f"sb connected to {sanitize_url(uri)}; the kernel's services stay on {kept}")
            self._tap()
            return
        self._alone = None
        running = [h.cls for h in self._session.services.values() if h.state == RUNNING]
        self._session.stop_all()
        config["AMQP_URI"] = uri
        print(f"connected to {sanitize_url(uri)}")
        for service_cls in running:
            self.start(service_cls)
        self._tap()

    def _settings(self) -> Any:
        return config if self._alone is None else self._alone

    def _tap(self) -> None:
        """Watch the cluster's RPC and event traffic, so calls handled elsewhere are listed."""
        from sandbox.management import ManagementApi, management_uri
        from sandbox.tap import ClusterTap

        settings = self._settings()
        if not str(settings["AMQP_URI"]).startswith(("amqp://", "amqps://")):
            return
        uri = management_uri(settings["AMQP_URI"], config.get("RABBIT_MANAGEMENT_URI"))
        # Services of the kernel on another broker are not the cluster's: none is local then.
        local = self._session if self._alone is None else Session()

        def is_local(name: str) -> bool:
            return any(handle.name == name for handle in local.running())

        self._cluster_tap = ClusterTap(settings, is_local, ManagementApi(uri)).start()

    def _disconnect(self) -> None:
        if self._cluster_tap is not None:
            self._cluster_tap.stop()
            self._cluster_tap = None
        if self._rpc is not None:
            self._calls.close()
            self._rpc_proxy.stop()
            self._rpc = self._calls = None
        self._dispatch = None

    def close(self) -> None:
        self._kernel_faults.off()
        recorder.remove_observer(self._finished)
        for view in self._views.values():
            view.close()
        self._views.clear()
        self._logs.close()
        self._recorder.stop()
        self._disconnect()
        self.http.close()

    def __repr__(self) -> str:
        running = sum(1 for h in self._session.services.values() if h.state == RUNNING)
        return f"<sandbox client: {running} service(s) running; see sb.services>"


class ServicesView:
    """``sb.services``: a live table of the session's services."""

    def __init__(self, session: Session):
        self._session = session

    def __getitem__(self, name: str) -> ServiceHandle:
        return self._session._handle(name)

    def __iter__(self):
        return iter(list(self._session.services.values()))

    def __len__(self) -> int:
        return len(self._session.services)

    def __contains__(self, name: object) -> bool:
        return name in self._session.services

    def __repr__(self) -> str:
        return services_table(self._session.services.values())


class _FinishedWorkers:
    """A recorder observer remembering the last finished worker of each entrypoint."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], tuple[float, Any, Any, Any]] = {}
        self.condition = threading.Condition()

    def worker_finished(self, worker_ctx, result, exc_info) -> None:
        key = (worker_ctx.service_name, worker_ctx.entrypoint.method_name)
        with self.condition:
            self.last[key] = (worker_ctx.finished_at or time.time(), result, exc_info, worker_ctx)
            self.condition.notify_all()


class Waiter:
    """The outcome of ``sb.wait_for``: ``.result``, ``.exc_info``, ``.get()`` re-raises."""

    def __init__(self, finished, service, entrypoint, timeout, callback):
        self._finished = finished
        self.service, self.entrypoint, self.timeout = service, entrypoint, timeout
        self.callback = callback
        self.since = time.time()
        self.result: Any = None
        self.exc_info: tuple | None = None

    def __enter__(self) -> Waiter:
        self.since = time.time()
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.wait()

    def wait(self) -> Waiter:
        key = (self.service, self.entrypoint)
        deadline = time.monotonic() + self.timeout
        with self._finished.condition:
            while True:
                entry = self._finished.last.get(key)
                if entry is not None and entry[0] >= self.since and self._accepts(entry):
                    _, self.result, self.exc_info, _ = entry
                    return self
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.service}.{self.entrypoint} did not run within {self.timeout}s"
                    )
                self._finished.condition.wait(remaining)

    def _accepts(self, entry) -> bool:
        if self.callback is None:
            return True
        _, result, exc_info, worker_ctx = entry
        return bool(self.callback(worker_ctx, result, exc_info))

    def get(self) -> Any:
        if self.exc_info is not None:
            raise self.exc_info[1]
        return self.result

    def __repr__(self) -> str:
        outcome = f"raised {self.exc_info[1]!r}" if self.exc_info else f"returned {self.result!r}"
        return f"<{self.service}.{self.entrypoint} {outcome}>"


def _called_in_with_statement(frame) -> bool:
    """True when the caller's next instruction enters a ``with`` block on our return value.

    ``sb.wait_for`` serves both as a plain call and as a context manager; only the compiled
    code of the caller can tell which one is meant.
    """
    following = [
        ins.opname
        for ins in dis.get_instructions(frame.f_code)
        if ins.offset > frame.f_lasti and ins.opname not in ("CACHE", "EXTENDED_ARG")
    ][:2]
    return following[:1] == ["BEFORE_WITH"] or following == ["COPY", "LOAD_SPECIAL"]
