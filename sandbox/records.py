"""Message records: what the inspector lists and ``sandbox run`` can log.

A :class:`Recorder` is a :mod:`sandbox.recorder` observer. It keeps one :class:`Record` per
message (a worker's call, an HTTP request, a published event or message) in a ring buffer.
Recording happens in the hub thread on every message, so it only keeps references; turning
payloads into JSON-safe data waits until someone looks at a record.
"""

from __future__ import annotations

import itertools
import json
import logging
import shlex
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any

from sandbox import recorder
from sandbox.constants import CALL_ID_STACK_CONTEXT_KEY, HEADER_PREFIX
from sandbox.record_feed import RecordSubscription
from sandbox.utils import REDACTED, get_redacted_args

log = logging.getLogger(__name__)

HTTP, RPC, EVENT, TIMER, MESSAGE, CALL = "HTTP", "RPC", "EVENT", "TIMER", "MESSAGE", "CALL"
RUNNING, OK, ERROR, DROPPED = "running", "ok", "error", "dropped"
STATUSES = (OK, ERROR, RUNNING, DROPPED)

DEFAULT_SIZE = 10_000
MAX_TEXT = 20_000  # characters of one rendered string: a huge body must not flood a widget

_RPC_PUBLISHES = (recorder.PUBLISHED_RPC_REQUEST, recorder.PUBLISHED_RPC_REPLY)


def entrypoint_kind(entrypoint: Any) -> str:
    """What the entrypoint's workers are recorded as: its ``record_kind``."""
    return getattr(entrypoint, "record_kind", CALL)


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-safe data: containers kept, bytes decoded, anything else repr'd."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "..."
    if isinstance(value, bytes | bytearray):
        try:
            return jsonable(bytes(value).decode())
        except UnicodeDecodeError:
            return repr(bytes(value[:MAX_TEXT]))
    if depth > 20:
        return repr(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, depth + 1) for v in value]
    return repr(value)[:MAX_TEXT]


def describe_call_id(call_id: str | None) -> str | None:
    """``"svc.method"`` from a call id ``"svc.method.<uuid>"``."""
    return call_id.rsplit(".", 1)[0] if call_id else None


class Record:
    """One message: who sent it where, what it carried, what came back, and how long it took."""

    __slots__ = (
        "id",
        "time",
        "kind",
        "service",
        "entrypoint",
        "call_id",
        "call_id_stack",
        "args",
        "kwargs",
        "context",
        "result",
        "error",
        "status",
        "code",
        "duration",
        "source",
        "target",
        "http",
        "event",
        "fault",
        "outside",
        "_summary",
        "_text",
    )

    def __init__(self, id: int, kind: str, time: float):
        self.id, self.kind, self.time = id, kind, time
        self.service: str | None = None
        self.entrypoint: str | None = None
        self.call_id: str | None = None
        self.call_id_stack: list[str] = []
        self.args: tuple = ()
        self.kwargs: dict[str, Any] = {}
        self.context: dict[str, Any] = {}
        self.result: Any = None
        self.error: dict[str, str] | None = None
        self.status = RUNNING
        self.code: int | None = None  # the HTTP status, for HTTP records
        self.duration: float | None = None
        self.source: str | None = None
        self.target: str | None = None
        self.http: dict[str, Any] | None = None  # request and response, for HTTP records
        self.event: dict[str, Any] | None = None  # the publish, for EVENT/MESSAGE publishes
        self.fault: str | None = None  # what sandbox.faults did to this message
        self.outside = False  # seen on a cluster's exchanges (sandbox.tap), not run here
        self._summary: str | None = None
        self._text: str | None = None

    # --- derived views: rendered when asked, never on the hot path --------------------------

    @property
    def origin_call_id(self) -> str | None:
        return self.call_id_stack[0] if self.call_id_stack else self.call_id

    @property
    def parent_call_id(self) -> str | None:
        """The call that caused this message: the publishing worker's, or the calling one's."""
        if self.event is not None:
            return self.call_id_stack[-1] if self.call_id_stack else None
        return self.call_id_stack[-2] if len(self.call_id_stack) > 1 else None

    @property
    def request(self) -> Any:
        """The request payload as JSON-safe data."""
        if self.http is not None:
            return self._http_message("request", "method", "url")
        if self.event is not None:
            return jsonable(self.event["payload"])
        return {"args": jsonable(self.args), "kwargs": jsonable(self.kwargs)}

    @property
    def response(self) -> Any:
        """The reply as JSON-safe data: the result, the HTTP response, or the error."""
        if self.http is not None:
            return self._http_message("response", "status", "headers")
        if self.error is not None:
            return {"error": self.error}
        return jsonable(self.result)

    def _http_message(self, side: str, *fields: str) -> dict[str, Any]:
        """The HTTP request or response: ``fields`` as recorded, and the body parsed."""
        message = self.http[side]
        body = _parsed_body(message["body"], message["headers"])
        return {**{field: message[field] for field in fields}, "body": body}

    @property
    def headers(self) -> dict[str, Any]:
        if self.http is not None:
            return jsonable(self.http["request"].get("headers", {}))
        if self.event is not None:
            return jsonable(self.event.get("headers") or {})
        # The stack is shown on its own; the rest is what the caller's headers carried.
        return {k: jsonable(v) for k, v in self.context.items() if k != CALL_ID_STACK_CONTEXT_KEY}

    @property
    def shown_status(self) -> str:
        return str(self.code) if self.code is not None else self.status

    def summary(self) -> str:
        """One line: time, kind, source -> target, status, duration; cached once complete."""
        if self._summary is not None:
            return self._summary
        clock = time.strftime("%H:%M:%S", time.localtime(self.time))
        millis = int(self.time * 1000) % 1000
        if self.duration is not None:
            took = f"{self.duration * 1000:.1f}ms"
        else:  # a publish takes no time of its own; a worker without one is still running
            took = "..." if self.status == RUNNING else ""
        marks = (f"  [fault: {self.fault}]" if self.fault else "") + "  [outside]" * self.outside
        summary = (
            f"{clock}.{millis:03d} {self.kind:<7} {self.source or '-'} -> {self.target or '-'}"
            f"  {self.shown_status} {took}".rstrip()
            + marks
        )
        if self.status != RUNNING:
            self._summary = summary
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "kind": self.kind,
            "source": self.source,
            "target": self.target,
            "service": self.service,
            "entrypoint": self.entrypoint,
            "status": self.shown_status,
            "duration": self.duration,
            "call_id": self.call_id,
            "call_id_stack": list(self.call_id_stack),
            "request": self.request,
            "response": self.response,
            "headers": self.headers,
            "fault": self.fault,
            "outside": self.outside,
        }

    def text(self) -> str:
        """Everything searchable, lower case; cached once the record is complete."""
        if self._text is not None:
            return self._text
        text = " ".join(
            [self.summary(), self.call_id or "", json.dumps([self.request, self.response])]
        ).lower()
        if self.status != RUNNING:
            self._text = text
        return text

    def matches(
        self,
        service: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        text: str | None = None,
    ) -> bool:
        """Filter test: every criterion given must hold; ``text`` is a case-free substring."""
        if service and service not in (self.service, describe_call_id(self.source)):
            return False
        if kind and kind != self.kind:
            return False
        if status and status not in (self.status, self.shown_status):
            return False
        return not text or text.lower() in self.text()

    def curl(self) -> str | None:
        """The HTTP request as a curl command line, for HTTP records."""
        if self.http is None:
            return None
        request = self.http["request"]
        words = ["curl", "-X", request["method"], request["url"]]
        for name, value in request.get("headers", {}).items():
            if name.lower() not in ("host", "content-length", "accept-encoding", "connection"):
                words += ["-H", f"{name}: {value}"]
        body = request.get("body")
        if body:
            words += ["--data-raw", body.decode(errors="replace")]
        return " ".join(shlex.quote(word) for word in words)

    def __repr__(self) -> str:
        return f"<Record #{self.id} {self.summary()}>"


class Recorder:
    """Keeps the last ``size`` message records; an observer of :mod:`sandbox.recorder`.

    Records are created and updated in the hub thread; :meth:`records` may be read from any.
    """

    def __init__(self, size: int | None = None):
        if size is None:
            from sandbox.config import config

            size = int(config.get("RECORDER_SIZE", DEFAULT_SIZE))
        self._records: deque[Record] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._open: dict[int, Record] = {}  # id(worker_ctx) -> its record, while it runs
        self._open_http: dict[str, Record] = {}  # call id -> HTTP record awaiting its response
        # correlation id -> a tapped request awaiting its reply (see sandbox.tap)
        self._open_tapped: OrderedDict[str | None, Record] = OrderedDict()
        self._subscriptions: list[RecordSubscription] = []

    @property
    def size(self) -> int:
        return self._records.maxlen or 0

    def start(self) -> Recorder:
        recorder.add_observer(self)
        return self

    def stop(self) -> None:
        recorder.remove_observer(self)

    # --- reading: any thread ----------------------------------------------------------------

    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records())

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
        for subscription in list(self._subscriptions):
            subscription.push(None)

    def subscribe(
        self, callback: Callable[[list[Record]], None], interval: float = 0.15
    ) -> RecordSubscription:
        subscription = RecordSubscription(self, callback, interval)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: RecordSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    # --- writing: hub thread ----------------------------------------------------------------

    def _add(self, record: Record) -> None:
        with self._lock:
            self._records.append(record)
        self._publish(record)

    def _publish(self, record: Record) -> None:
        for subscription in self._subscriptions:
            subscription.push(record)

    def worker_started(self, worker_ctx: Any) -> None:
        entrypoint = worker_ctx.entrypoint
        record = Record(next(self._ids), entrypoint_kind(entrypoint), worker_ctx.started_at)
        record.service = worker_ctx.service_name
        record.entrypoint = entrypoint.method_name
        record.target = f"{record.service}.{record.entrypoint}"
        record.call_id = worker_ctx.call_id
        record.call_id_stack = worker_ctx.call_id_stack
        record.context = worker_ctx.data
        record.source = describe_call_id(worker_ctx.immediate_parent_call_id)
        record.fault = getattr(worker_ctx, "fault", None)
        if entrypoint.sensitive_arguments:
            record.kwargs = _redacted(entrypoint, worker_ctx.args, worker_ctx.kwargs)
        else:
            record.args, record.kwargs = worker_ctx.args, worker_ctx.kwargs
        if record.kind == HTTP:
            self._open_http[record.call_id] = record
        elif record.kind == EVENT and record.source is None:
            record.source = getattr(entrypoint, "source_service", None)
        self._open[id(worker_ctx)] = record
        self._add(record)

    def worker_finished(self, worker_ctx: Any, result: Any, exc_info: tuple | None) -> None:
        record = self._open.pop(id(worker_ctx), None)
        if record is None:  # started before this recorder was
            return
        record.duration = worker_ctx.finished_at - worker_ctx.started_at
        if exc_info is not None:
            record.status = ERROR
            record.error = {
                "type": exc_info[0].__name__,
                "message": str(exc_info[1]),
                "traceback": "".join(traceback.format_exception(*exc_info)),
            }
        else:
            record.status = OK
            record.result = result
        self._publish(record)

    def delivery_dropped(self, info: dict[str, Any]) -> None:
        """A ``drop`` fault took a delivery before any worker ran (see sandbox.faults)."""
        entrypoint = info["entrypoint"]
        record = Record(next(self._ids), entrypoint_kind(entrypoint), time.time())
        record.service = info["service"]
        record.entrypoint = entrypoint.method_name
        record.target = f"{record.service}.{record.entrypoint}"
        record.args, record.kwargs = tuple(info["args"]), dict(info["kwargs"] or {})
        if entrypoint.sensitive_arguments:
            record.args, record.kwargs = (), _redacted(entrypoint, record.args, record.kwargs)
        record.status, record.fault = DROPPED, "drop"
        self._add(record)

    def call_refused(self, info: dict[str, Any]) -> None:
        """An RPC request answered with an error before any worker ran: MethodNotFound, or
        IncorrectSignature (its arguments do not fit the method)."""
        message, error = info["message"], info["error"]
        target = message.delivery_info["routing_key"]
        record = self._rpc_record(target, message.headers, message.payload)
        entrypoint = info["entrypoints"].get(record.entrypoint)
        if entrypoint is not None and entrypoint.sensitive_arguments:
            record.args, record.kwargs = (), _redacted(entrypoint, record.args, record.kwargs)
        record.status, record.duration = ERROR, 0.0
        record.error = {"type": type(error).__name__, "message": str(error), "traceback": ""}
        self._add(record)

    def message_tapped(self, info: dict[str, Any]) -> None:
        """A copy of a cluster's message (see sandbox.tap): an RPC request, its reply, or an
        event, handled by services outside this process."""
        if info["kind"] == "rpc-reply":
            self._tapped_reply(info)
            return
        if info["kind"] == "rpc-request":
            record = self._rpc_record(info["routing_key"], info["headers"], info["payload"])
            record.time = info["time"]
            self._open_tapped[info["correlation_id"]] = record
            while len(self._open_tapped) > self.size:  # replies that never came
                self._open_tapped.popitem(last=False)
        else:
            record = self._published(info)
        record.outside = True
        self._add(record)

    def _rpc_record(self, target: str, headers: Any, payload: Any) -> Record:
        """The record of an RPC request to ``target`` (``service.method``), no worker's."""
        record = Record(next(self._ids), RPC, time.time())
        record.service, _, record.entrypoint = target.partition(".")
        record.target = target
        record.call_id_stack = stack = decode_call_stack(headers)
        record.source = describe_call_id(stack[-1]) if stack else None
        payload = payload if isinstance(payload, dict) else {}
        record.args, record.kwargs = tuple(payload.get("args") or ()), payload.get("kwargs") or {}
        return record

    def _tapped_reply(self, info: dict[str, Any]) -> None:
        record = self._open_tapped.pop(info["correlation_id"], None)
        if record is None:  # a reply to a call of this process's services, or from before
            return
        body = info["payload"] if isinstance(info["payload"], dict) else {}
        record.duration, error = info["time"] - record.time, body.get("error")
        if error:
            message = str(error.get("value", ""))
            record.error = {"type": str(error.get("exc_type")), "message": message, "traceback": ""}
            record.status = ERROR
        else:
            record.status, record.result = OK, body.get("result")
        record._summary = record._text = None
        self._publish(record)

    def http_request(self, info: dict[str, Any]) -> None:
        record = self._open_http.pop(info.get("call_id") or "", None)
        if record is None:  # no worker ran: an unknown route, a body too large...
            record = Record(next(self._ids), HTTP, time.time() - info["duration"])
            record.target = info["path"]
            record.status = ERROR
            self._add(record)
        request, response = info["request"], info["response"]
        record.code = info["status"]
        record.duration = info["duration"]
        record.status = ERROR if record.code >= 400 else OK
        record.source = record.source or request.remote_addr
        record.http = {
            "request": _http_request(request, info.get("url") or request.url),
            "response": _http_response(response),
        }
        record._summary = record._text = None  # rendered when its worker finished, maybe
        self._publish(record)

    def message_published(self, info: dict[str, Any]) -> None:
        # An RPC request or reply is already the record of the worker that handled it.
        if info.get("kind") not in _RPC_PUBLISHES:
            self._add(self._published(info))

    def _published(self, info: dict[str, Any]) -> Record:
        published = info.get("kind")
        exchange = info.get("exchange") or ""
        kind = EVENT if published == recorder.PUBLISHED_EVENT else MESSAGE
        record = Record(next(self._ids), kind, info.get("time") or time.time())
        stack = decode_call_stack(info.get("headers"))
        record.call_id_stack = stack
        record.source = describe_call_id(stack[-1]) if stack else None
        record.service = exchange[: -len(".events")] if kind == EVENT else None
        record.target = f"{exchange}:{info.get('routing_key', '')}"
        record.status = ERROR if info.get("returned") else OK
        record.event = info
        return record


def decode_call_stack(headers: dict[str, Any] | None) -> list[str]:
    """The call id stack a message's headers carry (the newest call last)."""
    return list((headers or {}).get(f"{HEADER_PREFIX}.{CALL_ID_STACK_CONTEXT_KEY}") or [])


def _redacted(entrypoint: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    try:
        return get_redacted_args(entrypoint, *args, **kwargs)
    except TypeError:  # arguments that do not fit the method: show none of them
        return {"arguments": REDACTED}


def _http_request(request: Any, url: str) -> dict[str, Any]:
    try:
        body = request.get_data(cache=True)[:MAX_TEXT]
    except Exception:  # a body refused as too large, a client gone: record none
        body = b""
    return {
        "method": request.method,
        "url": url,
        "headers": dict(request.headers),
        "body": body,
    }


def _http_response(response: Any) -> dict[str, Any]:
    body = b"" if response.is_streamed else response.get_data()[:MAX_TEXT]
    return {"status": response.status_code, "headers": dict(response.headers), "body": body}


def _parsed_body(body: bytes, headers: dict[str, str]) -> Any:
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if body and "json" in content_type:
        try:
            return json.loads(body)
        except ValueError:
            pass
    return jsonable(body)


_recorder: Recorder | None = None


def get_recorder() -> Recorder:
    """The process-wide recorder (created, not started, on first use)."""
    global _recorder
    if _recorder is None:
        _recorder = Recorder()
    return _recorder
