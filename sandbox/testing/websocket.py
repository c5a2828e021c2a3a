"""A websocket client for tests of ``sandbox.web.websocket`` services, as Nameko's.

``make_virtual_socket(host, port)`` returns ``(ws_app, connect)``: run ``ws_app.run_forever``
in a thread (:func:`run_in_thread`), then ``connect()`` waits for the connection and returns
a :class:`VirtualSocket`: ``rpc(method, **data)`` calls the service, ``wait_for_event(name)``
returns the next ``(name, data)`` pushed to it. The ``websocket`` pytest fixture does all
of that. It needs the ``websocket-client`` package (a test dependency, imported only when a
socket is made).
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sandbox.exceptions import deserialize

# How long a test waits for a connection, a result or an event before it fails.
DEFAULT_TIMEOUT = 30.0
# How often run_forever looks whether close() was called: its select otherwise waits for
# data, and may miss a close made from another thread.
CLOSE_POLL_SECONDS = 0.1


class WebSocketClosed(ConnectionError):
    """The connection closed before the awaited result or event came."""


_CLOSED = object()  # put in every queue when the connection closes


class VirtualSocket:
    """A client's end of a websocket: RPC calls, and the events pushed to it."""

    def __init__(self, send: Callable[[str], Any]):
        self._send = send
        self._lock = threading.Lock()
        self._event_queues: dict[str, queue.Queue] = defaultdict(queue.Queue)
        self._results: dict[str, queue.Queue] = {}
        # Set by the server's "connected" event, sent once it knows the socket.
        self.greeted = threading.Event()
        self.closed = False
        self.app: Any = None  # the websocket-client WebSocketApp, set by the fixture

    def get_event_queue(self, event_type: str) -> queue.Queue:
        with self._lock:
            events = self._event_queues[event_type]
            if self.closed and events.empty():
                events.put(_CLOSED)
            return events

    def wait_for_event(self, event_type: str, timeout: float | None = DEFAULT_TIMEOUT) -> tuple:
        """The next ``(event_type, data)`` pushed to this socket; TimeoutError after ``timeout``."""
        try:
            item = self.get_event_queue(event_type).get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no {event_type!r} event within {timeout}s") from None
        if item is _CLOSED:
            self.get_event_queue(event_type).put(_CLOSED)  # for the next waiter too
            raise WebSocketClosed(f"the websocket closed before a {event_type!r} event")
        return item

    def rpc(self, _method: str, timeout: float | None = DEFAULT_TIMEOUT, **data: Any) -> Any:
        """Call ``_method(socket_id, **data)``: its result, or its error raised here."""
        correlation_id = str(uuid.uuid4())
        answer: queue.Queue = queue.Queue()
        with self._lock:
            if self.closed:
                raise WebSocketClosed(f"cannot call {_method!r}: the websocket is closed")
            self._results[correlation_id] = answer
        frame = {"method": _method, "data": data, "correlation_id": correlation_id}
        self._send(json.dumps(frame))
        try:
            reply = answer.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer to {_method!r} within {timeout}s") from None
        finally:
            with self._lock:
                self._results.pop(correlation_id, None)
        if reply is _CLOSED:
            raise WebSocketClosed(f"the websocket closed before {_method!r} answered")
        if reply["success"]:
            return reply["data"]
        raise deserialize(reply["error"])

    def received(self, message: str) -> None:
        """Route a frame from the server to the call or the event queue awaiting it."""
        frame = json.loads(message)
        if frame.get("type") == "event":
            self.get_event_queue(frame["event"]).put((frame["event"], frame["data"]))
            if frame["event"] == "connected":
                self.greeted.set()
        elif frame.get("type") == "result":
            with self._lock:
                answer = self._results.get(frame.get("correlation_id"))
            if answer is not None:
                answer.put(frame)

    def connection_closed(self) -> None:
        with self._lock:
            self.closed = True
            waiting = [*self._results.values(), *self._event_queues.values()]
        for pending in waiting:
            pending.put(_CLOSED)


def make_virtual_socket(
    host: str, port: int, path: str = "/ws"
) -> tuple[Any, Callable[[], VirtualSocket]]:
    """``(ws_app, connect)``: a websocket-client app to run, and the wait for its socket.

    ``connect()`` returns once the server has sent its ``connected`` event (which stays in
    the socket's queue), and raises what stopped the connection (``ConnectionRefusedError``
    when nothing listens), or TimeoutError.
    """
    from websocket import WebSocketApp, WebSocketException  # websocket-client: for tests

    ready = threading.Event()
    failure: list[BaseException] = []

    def on_error(ws: Any, error: BaseException) -> None:
        if not ready.is_set():
            failure.append(error)
            ready.set()

    ws_app = WebSocketApp(
        f"ws://{host}:{port}{path}",
        on_open=lambda ws: ready.set(),
        on_message=lambda ws, message: sock.received(message),
        on_error=on_error,
        on_close=lambda ws, code, reason: sock.connection_closed(),
    )

    def send(text: str) -> None:
        try:
            ws_app.send(text)
        except WebSocketException as exc:  # closed before on_close could say so
            raise WebSocketClosed(str(exc)) from exc

    sock = VirtualSocket(send)

    def connect(timeout: float = DEFAULT_TIMEOUT) -> VirtualSocket:
        if not ready.wait(timeout):
            raise TimeoutError(f"no websocket connection to {ws_app.url} within {timeout}s")
        if failure:
            raise failure[0]
        if not sock.greeted.wait(timeout):
            raise TimeoutError(f"no 'connected' event from {ws_app.url} within {timeout}s")
        return sock

    return ws_app, connect


def run_in_thread(ws_app: Any) -> threading.Thread:
    """Run ``ws_app.run_forever`` in a daemon thread that ends soon after ``ws_app.close()``."""
    thread = threading.Thread(
        target=ws_app.run_forever,
        kwargs={"ping_timeout": CLOSE_POLL_SECONDS},  # no pings are sent: only the poll
        daemon=True,
        name=f"websocket {ws_app.url}",
    )
    thread.start()
    return thread
