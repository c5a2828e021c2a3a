"""The green runtime: one daemon OS thread that owns an eventlet hub.

Every green object (servers, connections, consumers, timers, workers) lives in that thread.
Other threads hand work to it with :meth:`GreenRuntime.submit` (a Future), :meth:`call` (blocking,
interruptible) or :meth:`acall` (awaitable). Nothing is monkey patched: a patched kernel wedges.
Instead, blocking calls made in the hub's green threads turn green there and only there
(:mod:`sandbox.blocking`); what cannot, runs on a plain thread (:func:`sandbox.offload`);
and a watchdog says so when something holds the hub anyway (:mod:`sandbox.watchdog`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

import eventlet
import eventlet.debug
import eventlet.event
import eventlet.hubs
import eventlet.patcher
import eventlet.tpool
import greenlet

from sandbox import blocking, watchdog
from sandbox.utils import Registrations

log = logging.getLogger(__name__)

T = TypeVar("T")

# The wake-up pipe is non-blocking and read from the hub itself: in a monkey-patched process the
# green os.read would wait on it there, which eventlet refuses.
_os = eventlet.patcher.original("os")

# A capturer runs in the submitting thread and returns a function that the green thread runs
# first. The notebook layer uses it to route a green thread's output to the cell that started it;
# the core knows nothing of IPython.
ContextCapturer = Callable[[], Callable[[], None] | None]
_capturers: Registrations[ContextCapturer] = Registrations()
add_context_capturer = _capturers.add
remove_context_capturer = _capturers.remove


def _capture() -> Callable[[], None]:
    """Snapshot the caller's context so the green thread runs as if it were the caller."""
    ctx = contextvars.copy_context()
    restorers = [r for r in (c() for c in _capturers) if r is not None]

    def enter() -> None:
        # A greenlet has its own contextvars context; adopting the caller's keeps ContextVars
        # (such as ipykernel's output routing) pointing where the caller pointed.
        greenlet.getcurrent().gr_context = ctx.copy()
        for restore in restorers:
            try:
                restore()
            except Exception:  # misrouted output is better than a job that never runs
                log.exception("context capturer failed")

    return enter


class RuntimeStopped(RuntimeError):
    pass


def runs_eventlet() -> bool:
    """Whether the calling thread, not the runtime's, has green work of its own that must go on
    while it waits for the runtime: a test that set an ``eventlet.Timeout`` or started green
    threads with ``eventlet.spawn`` expects them to fire and run meanwhile, as under Nameko.

    Without such work (no hub, or one with nothing scheduled), a plain wait is the same and
    cheaper. A green thread of the caller's hub always waits greenly, so that its siblings run;
    the hub's own greenlet must never wait.
    """
    hub = getattr(eventlet.hubs._threadlocal, "hub", None)  # eventlet's only record of it
    current = greenlet.getcurrent()
    if hub is None or current is hub.greenlet:
        return False
    if current.parent is not None:  # a green thread, not the thread's main greenlet
        return True
    # Cancelled timers stay in the heap until their time: only live ones count.
    timers = (timer for timer in (*hub.timers, *hub.next_timers) if not timer[-1].called)
    return any(timers) or any(hub.listeners[hub.READ]) or any(hub.listeners[hub.WRITE])


class _Expired(Exception):
    pass


class ThreadWakeup:
    """Wakes a green thread of another thread's hub, from any thread, through a pipe that hub
    polls: the hub goes on running its timers and green threads meanwhile."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._lock = threading.Lock()  # set() after close() must not write to a reused fd
        self._closed = False

    def set(self, *_: Any) -> None:
        """Any thread; also a Future's done callback."""
        with self._lock:
            if not self._closed:
                with contextlib.suppress(BlockingIOError):
                    _os.write(self._write_fd, b"x")

    def wait(self, timeout: float | None) -> bool:
        """Wait greenly until :meth:`set`; False when ``timeout`` seconds passed first."""
        try:
            eventlet.hubs.trampoline(
                self._read_fd, read=True, timeout=timeout, timeout_exc=_Expired
            )
        except _Expired:
            return False
        return True

    def __enter__(self) -> ThreadWakeup:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        with self._lock:
            self._closed = True
            _os.close(self._read_fd)
            _os.close(self._write_fd)


def wait_for(future: Future[T], timeout: float | None = None) -> T:
    """``future.result(timeout)`` for a thread other than the hub's; waited for greenly where
    that thread runs eventlet (see :func:`runs_eventlet`)."""
    if not future.done() and runs_eventlet():
        with ThreadWakeup() as wakeup:
            future.add_done_callback(wakeup.set)
            wakeup.wait(timeout)
        timeout = 0
    return future.result(timeout)


class _Job:
    __slots__ = ("fn", "args", "kwargs", "future", "enter", "thread")

    def __init__(self, fn, args, kwargs, enter):
        self.fn, self.args, self.kwargs, self.enter = fn, args, kwargs, enter
        self.future: Future = Future()
        self.thread: eventlet.greenthread.GreenThread | None = None


class GreenRuntime:
    """An OS thread running an eventlet hub, and thread-safe ways to run code in it.

    In a process that called ``eventlet.monkey_patch()`` threads are green: the runtime's loop
    is then a green thread of the hub of the OS thread that started it, and every green thread
    there (the test or script itself included) counts as in the hub, waits greenly and calls
    services inline, as under Nameko.
    """

    def __init__(self, name: str = "sandbox-hub"):
        self.name = name
        self.patched = eventlet.patcher.is_monkey_patched("thread")
        self.ident: int | None = None  # the hub's OS thread, once it runs
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        # Whether a post wrote to the pipe since the hub last drained it: posts made meanwhile
        # need not write again (each write lets go of the interpreter lock).
        self._wake_pending = False
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._stopping = False
        self._alive = True  # until the hub thread ends
        self._to_wake: list[Callable[[], None]] = []
        self._threads: set[eventlet.greenthread.GreenThread] = set()
        self._offload_pool: concurrent.futures.ThreadPoolExecutor | None = None
        # When the hub last came back from polling, and whether it polls now: the watchdog
        # reads them from its own thread to tell a busy hub from an idle one.
        self.turned_at = time.monotonic()
        self.polling = False
        # Who holds the hub (``service.entrypoint``) while the watchdog reports a stall.
        self.held_by: str | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    # --- the hub thread ---------------------------------------------------------------------

    def _main(self) -> None:
        self.ident = blocking.os_thread_ident()
        self.hub = eventlet.hubs.get_hub()
        if not self.patched:
            # Green thread failures are reported by _report, routed like any other output; the
            # hub's own printing would print them again, into whichever cell is current. A
            # patched process shares its hub with its author's code, whose failures it shows.
            eventlet.debug.hub_exceptions(False)
        # Threads waiting on the hub are woken as it polls (see wake_thread).
        wait_and_dispatch = self.hub.wait

        def wait(seconds: float | None = None) -> None:
            self._wake_threads()
            wait_and_dispatch(seconds)

        self.hub.wait = wait
        # Only the poll itself is idle time: the hub's wait goes on to resume the green threads
        # whose sockets are ready, and one of those may then hold the hub for long.
        poll = self.hub.do_poll

        def do_poll(seconds: float | None) -> Any:
            self.polling = True
            try:
                return poll(seconds)
            finally:
                # In this order: the watchdog reads ``polling`` first (see watchdog._watch).
                self.turned_at = time.monotonic()
                self.polling = False

        self.hub.do_poll = do_poll
        # The wake-up pipe stays registered with the hub: a trampoline per wake-up would add
        # and remove it each time. The listener drains the pipe (the hub polls level-
        # triggered) and resumes this loop only where it waits for work, never in the middle
        # of a task that waits for something else.
        loop = greenlet.getcurrent()
        waiting = [False]

        def wake(fd: int) -> None:
            self._drain_pipe()
            # Cleared once the pipe is empty (cleared before, a post's byte could be drained
            # with the flag left set, and later posts would never wake the hub), and before
            # the inbox is looked at again: what was posted before this is run.
            self._wake_pending = False
            if waiting[0]:
                loop.switch()

        listener = self.hub.add(self.hub.READ, self._read_fd, wake, loop.throw, None)
        blocking.add_hub(self.ident, self._offload)
        if not self.patched:  # there the whole process is the hub: the author's code holds it
            watchdog.watch(self)
        self._ready.set()
        try:
            while not self._stopping:
                self._run_inbox()
                waiting[0] = True
                try:
                    self.hub.switch()
                finally:
                    waiting[0] = False
        finally:
            self._alive = False
            blocking.remove_hub(self.ident)
            self.hub.remove(listener)
            self._shutdown()

    def wake_thread(self, release: Callable[[], None]) -> None:
        """Wake a plain thread that waits on the hub (call ``release``), once the hub polls.

        Woken any sooner, the thread would only wait again, for the hub thread to let go of
        the interpreter lock, which it does when it polls: a second sleep and wake-up.
        """
        if self.in_hub():
            self._to_wake.append(release)
        else:
            release()

    def _wake_threads(self) -> None:
        while self._to_wake:
            waking, self._to_wake = self._to_wake, []
            for release in waking:
                release()

    def _drain_pipe(self) -> None:
        try:
            while _os.read(self._read_fd, 65536):
                pass
        except BlockingIOError:
            pass

    def _run_inbox(self) -> None:
        while True:
            try:
                task = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                task()
            except Exception:
                log.exception("runtime task failed")

    def _shutdown(self) -> None:
        self._wake_threads()
        for thread in list(self._threads):
            thread.kill()
        if self._offload_pool is not None:
            self._offload_pool.shutdown(wait=False, cancel_futures=True)
        _os.close(self._read_fd)
        _os.close(self._write_fd)

    def _start_job(self, job: _Job) -> None:
        if job.future.set_running_or_notify_cancel():
            job.thread = self._green(self._run_job, job)

    def _run_job(self, job: _Job) -> None:
        try:
            job.enter()
            result = job.fn(*job.args, **job.kwargs)
        except greenlet.GreenletExit:
            job.future.set_exception(KeyboardInterrupt("cancelled"))
        except BaseException as exc:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def _green(self, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        thread = eventlet.spawn(fn, *args, **kwargs)
        self._threads.add(thread)
        thread.link(self._threads.discard)
        return thread

    # --- any thread -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._alive and not self._stopping

    def in_hub(self) -> bool:
        """Whether the caller runs in the hub's OS thread, where it must never block it."""
        return blocking.os_thread_ident() == self.ident

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the hub thread's own loop, as soon as it is free.

        For short work that must not wait on a green thread's start: it runs between the
        hub's other tasks, so it must not block for long. Failures are logged.
        """
        if self.in_hub():
            fn(*args)
        else:
            self._post(partial(fn, *args))

    def _post(self, task: Callable[[], None]) -> None:
        if not self.running:
            raise RuntimeStopped("the sandbox runtime is stopped")
        self._inbox.put(task)
        if self._wake_pending:
            return  # the hub runs the inbox after the wake-up on its way
        self._wake_pending = True
        try:
            _os.write(self._write_fd, b"x")
        except BlockingIOError:
            pass  # the pipe is full, so a wake-up is already pending
        except OSError as exc:  # closed by a stop that raced with us
            raise RuntimeStopped("the sandbox runtime is stopped") from exc

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn`` in a new green thread of the hub; the Future resolves with its outcome."""
        job = _Job(fn, args, kwargs, _capture())
        if self.in_hub():
            self._start_job(job)
        else:
            self._post(lambda: self._start_job(job))
        return job.future

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None, **kwargs) -> T:
        """Run ``fn`` in the hub and wait for it.

        Inline when already on the hub thread (waiting there would deadlock). A timeout, or a
        KeyboardInterrupt while waiting (a kernel interrupt), or an ``eventlet.Timeout`` of the
        caller's own, kills the green thread and raises.
        """
        if self.in_hub():
            return fn(*args, **kwargs)
        job = _Job(fn, args, kwargs, _capture())
        try:
            self._post(lambda: self._start_job(job))
            return wait_for(job.future, timeout)
        except BaseException:
            if not job.future.done():
                self._cancel(job)
            raise

    async def acall(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Awaitable :meth:`call`: a cell can ``await`` it without blocking the kernel's loop."""
        job = _Job(fn, args, kwargs, _capture())
        self._post(lambda: self._start_job(job))
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            self._cancel(job)
            raise

    def _cancel(self, job: _Job) -> None:
        def kill() -> None:
            if job.thread is not None:
                job.thread.kill()
            job.future.cancel()

        if self.running:
            self._post(kill)

    def spawn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        """Start a long-running green thread (a server, a consumer) and return it.

        Its failure is logged with its traceback, never swallowed.
        """
        enter = _capture()

        def body() -> Any:
            enter()
            try:
                return fn(*args, **kwargs)
            except greenlet.GreenletExit:
                raise
            except BaseException:
                log.exception("green thread %s failed", getattr(fn, "__qualname__", fn))
                raise

        if self.in_hub():
            return self._green(body)
        return self.call(self._green, body)

    def _offload(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on a plain thread of a pool; the calling green thread of this hub waits
        greenly, and the hub serves the other services meanwhile. Only for green threads of
        this hub: :func:`sandbox.blocking.offload` checks that and calls this.
        """
        if self.patched:  # where threading makes green threads, eventlet's pool has real ones
            return eventlet.tpool.execute(fn, *args, **kwargs)
        if self._offload_pool is None:
            self._offload_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=32, thread_name_prefix=f"{self.name}-offload"
            )
        future = self._offload_pool.submit(fn, *args, **kwargs)
        done = eventlet.event.Event()
        future.add_done_callback(lambda _: self._send_soon(done))
        done.wait()
        return future.result()

    def _send_soon(self, event: eventlet.event.Event) -> None:
        with contextlib.suppress(RuntimeStopped):  # a stopped hub has nobody left to wake
            self.post(event.send, None)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in a green thread of the hub ``delay`` seconds from now.

        Callable from any thread; nothing waits for it, so its failure is logged.
        """

        def later() -> None:
            eventlet.sleep(delay)
            try:
                fn(*args)
            except Exception:
                log.exception("%s failed", getattr(fn, "__qualname__", fn))

        if self.in_hub():
            self._green(later)
        else:
            self._post(lambda: self._green(later))

    def stop(self, timeout: float = 5) -> bool:
        """Kill every green thread and end the hub thread; True when it ended in time."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("the runtime cannot stop itself from its own thread")
        if self.thread.is_alive() and not self._stopping:
            self._stopping = True
            with contextlib.suppress(BlockingIOError, OSError):
                _os.write(self._write_fd, b"x")
        self.thread.join(timeout)
        return not self.thread.is_alive()


class HubThread:
    """A green thread of the runtime's hub, as held by another thread: its ``wait()`` and
    ``kill()`` run in the hub, where a green thread can be waited for or killed."""

    def __init__(self, runtime: GreenRuntime, thread: eventlet.greenthread.GreenThread):
        self.runtime, self.thread = runtime, thread

    @property
    def dead(self) -> bool:
        return self.thread.dead

    def wait(self) -> Any:
        """Its result, or its error raised; ``GreenletExit`` when it was killed (as eventlet's)."""
        killed, result = self.runtime.call(self._outcome)
        if killed:
            raise greenlet.GreenletExit()
        return result

    def _outcome(self) -> tuple[bool, Any]:
        # In the hub, a GreenletExit would read as the job itself being cancelled.
        try:
            return False, self.thread.wait()
        except greenlet.GreenletExit:
            return True, None

    def kill(self, *throw_args: Any) -> None:
        self.runtime.call(self.thread.kill, *throw_args)


_runtime: GreenRuntime | None = None
_lock = threading.Lock()


def get_runtime() -> GreenRuntime:
    """The process-wide runtime, started on first use and restarted after :func:`stop_runtime`."""
    global _runtime
    runtime = _runtime
    if runtime is not None and runtime.running:
        return runtime
    with _lock:
        if _runtime is None or not _runtime.running:
            _runtime = GreenRuntime()
        return _runtime


def stop_runtime(timeout: float = 5) -> None:
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None and threading.current_thread() is not runtime.thread:
        runtime.stop(timeout)


# Interpreters that exit with kombu still running in the hub thread were seen to segfault.
atexit.register(stop_runtime)
