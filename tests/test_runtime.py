import asyncio
import contextvars
import logging
import os
import signal
import threading
import time

import eventlet
import pytest

from sandbox.pending import Pending
from sandbox.runtime import (
    GreenRuntime,
    add_context_capturer,
    get_runtime,
    remove_context_capturer,
)


@pytest.fixture
def runtime():
    rt = GreenRuntime(name="test-hub")
    yield rt
    rt.stop()


def test_call_runs_in_the_hub_thread(runtime):
    assert runtime.call(lambda: threading.current_thread()) is runtime.thread
    assert not runtime.in_hub()


def test_call_returns_and_raises(runtime):
    assert runtime.call(lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(ZeroDivisionError):
        runtime.call(lambda: 1 / 0)


def test_call_from_the_hub_thread_runs_inline(runtime):
    def outer():
        # Waiting on the hub from the hub would deadlock; inline it must be.
        return runtime.call(lambda: threading.current_thread() is runtime.thread)

    assert runtime.call(outer, timeout=5) is True


def test_submit_returns_a_future(runtime):
    event = eventlet.event.Event()
    future = runtime.submit(event.wait)
    assert not future.done()
    runtime.call(event.send, 42)
    assert future.result(5) == 42


def test_timeout_kills_the_green_thread(runtime):
    finished = []

    def slow():
        eventlet.sleep(10)
        finished.append(True)

    with pytest.raises(TimeoutError):
        runtime.call(slow, timeout=0.05)
    runtime.call(eventlet.sleep, 0.05)
    assert finished == []
    assert runtime.call(lambda: "still alive") == "still alive"


def test_keyboard_interrupt_while_waiting_kills_the_job_and_keeps_the_hub(runtime):
    reached, killed = threading.Event(), threading.Event()

    def long_job():
        reached.set()
        try:
            eventlet.sleep(30)
        finally:
            killed.set()

    def interrupt_main_when_reached():
        assert reached.wait(60)
        # A real signal, as a kernel interrupt sends: it wakes the blocked wait.
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_main_when_reached, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        runtime.call(long_job)
    assert killed.wait(5)
    assert runtime.call(lambda: 1) == 1


def test_acall_is_awaitable(runtime):
    async def main():
        return await runtime.acall(lambda: threading.current_thread().name)

    assert asyncio.run(main()) == "test-hub"


def test_acall_cancellation_kills_the_green_thread(runtime):
    killed = threading.Event()

    def long_job():
        try:
            eventlet.sleep(30)
        finally:
            killed.set()

    async def main():
        task = asyncio.ensure_future(runtime.acall(long_job))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert killed.wait(5)


def test_spawn_failure_is_logged_with_traceback(runtime, caplog):
    def broken():
        raise ValueError("boom in a green thread")

    with caplog.at_level(logging.ERROR, logger="sandbox.runtime"):
        thread = runtime.spawn(broken)
        with pytest.raises(ValueError):
            runtime.call(thread.wait)
    records = [r for r in caplog.records if r.exc_info]
    assert records and "boom in a green thread" in str(records[0].exc_info[1])


def test_green_threads_see_the_callers_context_and_capturers(runtime):
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    def capturer():
        marker = threading.current_thread().name
        return lambda: seen.append(marker)

    add_context_capturer(capturer)
    try:
        var.set("from caller")
        assert runtime.call(var.get) == "from caller"
    finally:
        remove_context_capturer(capturer)
    assert seen == [threading.current_thread().name]


def test_many_concurrent_submissions_from_threads(runtime):
    results = []

    def worker(n):
        results.append(runtime.call(lambda: n * 2))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [i * 2 for i in range(50)]


def test_posts_from_many_threads_at_once_all_run(runtime):
    """A post that finds a wake-up of the hub on its way writes none of its own: none may be
    left in the inbox with no wake-up to come. Threads woken together as the hub polls post
    together, as they do publishing (see AmqpPublisher.publish_from_any_thread)."""
    done = []

    def worker():
        for _ in range(2000):
            answered = Pending()
            runtime.post(answered.settle, True)
            answered.wait(None)
        done.append(True)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(10)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0))
    assert len(done) == 10, "a thread still waits for the hub to run what it posted"


def test_stop_kills_green_threads_and_refuses_new_work():
    rt = GreenRuntime()
    started, killed = threading.Event(), threading.Event()

    def forever():
        started.set()
        try:
            eventlet.sleep(60)
        finally:
            killed.set()

    rt.spawn(forever)
    assert started.wait(5)
    assert rt.stop(5)
    assert killed.is_set()
    with pytest.raises(RuntimeError):
        rt.submit(lambda: None)


def test_call_later_runs_in_the_hub_after_the_delay_from_any_thread(runtime):
    ran = []
    done = threading.Event()

    def record(label):
        ran.append((label, threading.current_thread() is runtime.thread))
        if len(ran) == 2:
            done.set()

    runtime.call_later(0.01, record, "from a cell")
    runtime.call(runtime.call_later, 0, record, "from the hub")
    assert done.wait(5)
    assert sorted(ran) == [("from a cell", True), ("from the hub", True)]


def test_a_thread_woken_from_the_hub_wakes_once_the_hub_polls():
    runtime = get_runtime()
    woken, order = threading.Lock(), []
    woken.acquire()

    def in_hub():
        runtime.wake_thread(woken.release)
        order.append("asked")
        assert woken.locked()  # not yet: the hub has not polled
        eventlet.sleep(0)  # now it does

    runtime.call(in_hub)
    assert woken.acquire(timeout=5)
    assert order == ["asked"]
    runtime.wake_thread(woken.release)  # from a plain thread: at once
    assert woken.acquire(timeout=0)
