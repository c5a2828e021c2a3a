"""Green threads that run one short job after another: the handling of a message, say.

A new green thread costs its greenlet, eventlet's bookkeeping and a fresh frame stack that
the interpreter maps from the OS when the greenlet starts and unmaps when it ends: an mmap
and a munmap per message, with the page faults in between, about half of the 15 us a spawn
costs. A green thread whose job is done waits for the next job instead, in its hub.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import eventlet
import eventlet.greenthread
import eventlet.hubs
import eventlet.patcher
import greenlet

# A burst of messages makes as many threads; this many wait for more once it is over
# (a container runs 10 workers at a time unless told otherwise).
IDLE_KEPT = 16

_idle: weakref.WeakKeyDictionary[Any, list[greenlet.greenlet]] = weakref.WeakKeyDictionary()


class GreenJob:
    """A job run by a reused green thread; killed, linked and waited for as a green thread
    is (``kill()``, ``link(fn)``, ``wait()``, ``dead``), from its hub's thread."""

    __slots__ = ("_fn", "thread", "dead", "_result", "_error", "_links", "_handed_by")

    def __init__(self, fn: Callable[[], Any]):
        self._fn = fn
        self.thread: greenlet.greenlet | None = None  # while it runs
        self.dead = False
        self._result: Any = None
        self._error: BaseException | None = None
        self._links: list[Callable[[GreenJob], Any]] = []
        # Started at once: the green thread that handed it over, and the timer that
        # resumes that thread at the hub's next turn.
        self._handed_by: tuple[greenlet.greenlet, Any] | None = None

    def kill(self, *throw_args: Any) -> None:
        """End the job, as ``GreenThread.kill`` does (GreenletExit unless told otherwise)."""
        if self.dead:
            return
        if self.thread is None:  # not started: it never will
            self._finish(None, throw_args[1] if throw_args else greenlet.GreenletExit())
            return
        eventlet.greenthread.kill(self.thread, *throw_args)

    def link(self, callback: Callable[[GreenJob], Any]) -> None:
        """Call ``callback(job)`` once it ended (at once if it has)."""
        if self.dead:
            callback(self)
        else:
            self._links.append(callback)

    def wait(self) -> Any:
        """Its result, or its error raised; only once it ended (from a link)."""
        if not self.dead:
            raise RuntimeError("the job has not ended")
        if self._error is not None:
            raise self._error
        return self._result

    def _run(self, thread: greenlet.greenlet) -> None:
        if self.dead:  # killed before it started
            return
        self.thread = thread
        # Each job starts with no ContextVars set, as it would in a green thread of its own:
        # what an earlier job (a user's worker) set must not leak into the next.
        thread.gr_context = None
        try:
            result = self._fn()
        except BaseException as exc:  # a kill's GreenletExit too: the thread lives on
            self._finish(None, exc)
        else:
            self._finish(result, None)

    def _finish(self, result: Any, error: BaseException | None) -> None:
        self.thread = self._fn = None
        self.dead = True
        self._result, self._error = result, error
        links, self._links = self._links, []
        for callback in links:
            callback(self)


def spawn(fn: Callable[[], Any], at_once: bool = False) -> GreenJob:
    """Run ``fn`` in a green thread of the calling thread's hub, one that waited for work if
    any did, at the hub's next turn; ``at_once``, until it first waits or ends, and the
    calling green thread goes on then: at the hub's next turn if the job waits, at once if
    it ends (from the hub itself, a plain spawn).

    A consumer's loop hands each message to its worker at once when it came alone: the
    worker answers before the loop reads on, instead of one hub turn later.
    """
    hub = eventlet.hubs.get_hub()
    idle = _idle.setdefault(hub, [])
    thread = idle.pop() if idle else greenlet.greenlet(_serve, parent=hub.greenlet)
    job = GreenJob(fn)
    current = greenlet.getcurrent()
    if not at_once or current is hub.greenlet:
        hub.schedule_call_global(0, thread.switch, job)
        return job
    resume = hub.schedule_call_global(0, current.switch)
    job._handed_by = (current, resume)
    try:
        thread.switch(job)
    finally:
        # Resumed otherwise (a kill throws into the caller): the timer must not wake it
        # later, wherever it then waits.
        resume.cancel()
    return job


def _serve(job: GreenJob) -> None:
    hub = eventlet.hubs.get_hub()
    idle = _idle.setdefault(hub, [])
    thread = greenlet.getcurrent()
    while True:
        job._run(thread)
        handed_by = _still_waiting(job)
        job = None  # what it held goes now, not once the next job comes
        # Monkey patched, threading.local is green-local: a worker's locals would be the
        # next job's there, so each job has a thread of its own.
        if len(idle) >= IDLE_KEPT or eventlet.patcher.is_monkey_patched("thread"):
            return
        idle.append(thread)
        try:
            job = _next_job(hub, handed_by)
        except BaseException:  # thrown into a thread with no job: it ends instead
            idle.remove(thread)
            return


def _still_waiting(job: GreenJob) -> greenlet.greenlet | None:
    """The green thread that handed ``job`` over at once, if it still waits to go on."""
    handed_by = job._handed_by
    if handed_by is None or handed_by[1].called:  # its timer resumed it, or it was resumed
        return None
    return handed_by[0]


def _next_job(hub: Any, handed_by: greenlet.greenlet | None) -> GreenJob:
    """Wait for a job; ``handed_by`` goes on first, without the hub turn its timer waits for
    (it cancels the timer): one switch instead of two, and no turn of the hub."""
    job = hub.switch() if handed_by is None else handed_by.switch()
    # A stray wake-up (left by a job's last wait) is no job: wait on.
    while not isinstance(job, GreenJob):
        job = hub.switch()
    return job
