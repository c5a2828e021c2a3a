"""Replaying recorded traffic against service classes: what contract tests call.

``sb.trace.to_pytest`` writes tests that start the exported services with
:func:`replaying` and send each recorded request again through :class:`ServiceReplay`: RPC
over the embedded broker, HTTP over a real socket, events straight to their handler. Results
come back as JSON-safe data (tuples as lists), the form the records keep.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from sandbox.constants import AMQP_URI_CONFIG_KEY, WEB_SERVER_CONFIG_KEY
from sandbox.containers import WorkerWatch
from sandbox.contracts import Raised
from sandbox.exceptions import RemoteError
from sandbox.records import jsonable
from sandbox.runners import ServiceRunner
from sandbox.standalone.rpc import ClusterRpcProxy
from sandbox.testing.services import entrypoint_hook
from sandbox.testing.utils import find_free_port

REPLAY_TIMEOUT = 30  # seconds one replayed call may take before the test fails


class ServiceReplay:
    """Sends recorded requests to running services; each method returns what came back."""

    def __init__(self, runner: ServiceRunner, config: dict[str, Any], rpc: Any):
        self.runner, self.config, self._rpc = runner, config, rpc

    def rpc(self, service: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """The method's result, as JSON-safe data, or the :class:`Raised` error."""
        try:
            return jsonable(getattr(self._rpc[service], method)(*args, **kwargs))
        except RemoteError as exc:
            return Raised(exc.exc_type, exc.value)

    @contextmanager
    def then(self, *entrypoints: str) -> Iterator[None]:
        """Wait, leaving the block, until a worker of each of ``entrypoints`` (one per
        mention, ``"service.method"``) has finished: the calls the replayed one led to, which
        later tests may depend on."""
        expected, seen = Counter(entrypoints), Counter()
        finished = threading.Event()

        def accept(worker_ctx: Any, result: Any, exc_info: Any) -> bool:
            key = f"{worker_ctx.service_name}.{worker_ctx.entrypoint.method_name}"
            if seen[key] < expected[key]:
                seen[key] += 1
            return seen == expected

        with WorkerWatch(accept, lambda *outcome: finished.set()):
            yield
            if not finished.wait(REPLAY_TIMEOUT):
                missing = ", ".join((expected - seen).elements())
                raise AssertionError(
                    f"these calls did not follow within {REPLAY_TIMEOUT}s: {missing}"
                )

    def event(self, service: str, method: str, payload: Any) -> Any:
        """The handler's result for ``payload`` (or its error, as :meth:`rpc` gives it)."""
        container = next(c for c in self.runner.containers if c.service_name == service)
        with entrypoint_hook(container, method, timeout=REPLAY_TIMEOUT) as handle:
            try:
                return jsonable(handle(payload))
            except Exception as exc:
                return Raised(type(exc).__name__, str(exc))

    def http(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """``(status, body)``: the body parsed when it is JSON, else text."""
        data = body.encode() if isinstance(body, str) else body
        if isinstance(body, dict | list):
            data = json.dumps(body).encode()
        address = self.config[WEB_SERVER_CONFIG_KEY]
        request = Request(f"http://{address}{path}", data, headers or {}, method=method)
        try:
            response = urlopen(request, timeout=REPLAY_TIMEOUT)
        except HTTPError as exc:  # a 4xx or 5xx is an answer to compare too
            response = exc
        with response:
            text = response.read().decode(errors="replace")
            if "json" in response.headers.get("Content-Type", "") and text:
                return response.status, json.loads(text)
            return response.status, text


def service_classes(module: ModuleType, *names: str) -> list[type]:
    """The classes of ``module`` that define the services ``names``, in that order."""
    found = {getattr(v, "name", None): v for v in vars(module).values() if isinstance(v, type)}
    missing = [name for name in names if name not in found]
    if missing:
        raise LookupError(f"{module.__name__} defines no service named {', '.join(missing)}")
    return [found[name] for name in names]


@contextmanager
def replaying(*service_classes: type) -> Iterator[ServiceReplay]:
    """Run ``service_classes`` on a fresh embedded vhost and a free HTTP port."""
    config = {
        AMQP_URI_CONFIG_KEY: f"memory:///contract-{uuid.uuid4().hex[:12]}",
        WEB_SERVER_CONFIG_KEY: f"127.0.0.1:{find_free_port()}",
    }
    runner = ServiceRunner(config)
    for service_cls in service_classes:
        runner.add_service(service_cls)
    runner.start()
    try:
        with ClusterRpcProxy(config, timeout=REPLAY_TIMEOUT) as rpc:
            yield ServiceReplay(runner, config, rpc)
    finally:
        runner.kill()
