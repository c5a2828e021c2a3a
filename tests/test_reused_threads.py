import contextvars

import eventlet
import eventlet.patcher
import greenlet
import pytest

from sandbox import reused_threads
from sandbox.runtime import get_runtime


def in_hub(fn):
    return get_runtime().call(fn)


def test_a_thread_whose_job_ended_runs_the_next_one():
    def run():
        threads = []
        first = reused_threads.spawn(lambda: threads.append(greenlet.getcurrent()) or 1)
        eventlet.sleep(0)
        second = reused_threads.spawn(lambda: threads.append(greenlet.getcurrent()) or 2)
        eventlet.sleep(0)
        return first.wait(), second.wait(), threads[0] is threads[1]

    assert in_hub(run) == (1, 2, True)


def test_at_once_runs_the_job_before_the_caller_goes_on():
    def run():
        order = []
        job = reused_threads.spawn(lambda: order.append("job"), at_once=True)
        order.append("caller")
        return order, job.dead

    assert in_hub(run) == (["job", "caller"], True)


def test_the_caller_goes_on_as_soon_as_a_job_at_once_ends_without_a_hub_turn():
    def run():
        order = []
        eventlet.hubs.get_hub().schedule_call_global(0, order.append, "hub turn")
        reused_threads.spawn(lambda: order.append("job"), at_once=True)
        order.append("caller")
        eventlet.sleep(0)
        return order

    assert in_hub(run) == ["job", "caller", "hub turn"]


def test_a_job_that_waits_lets_the_caller_go_on_and_ends_later():
    def run():
        done = eventlet.event.Event()
        ended = []
        job = reused_threads.spawn(done.wait, at_once=True)
        job.link(lambda job: ended.append(job.wait()))
        assert not job.dead
        done.send("sent")
        eventlet.sleep(0)
        return ended

    assert in_hub(run) == ["sent"]


def test_a_killed_job_ends_with_greenlet_exit_and_its_thread_serves_on():
    def run():
        threads, errors = [], []
        job = reused_threads.spawn(
            lambda: threads.append(greenlet.getcurrent()) or eventlet.sleep(30)
        )
        eventlet.sleep(0)
        job.link(lambda job: errors.append(pytest.raises(greenlet.GreenletExit, job.wait)))
        job.kill()
        assert job.dead and errors
        reused_threads.spawn(lambda: threads.append(greenlet.getcurrent()), at_once=True)
        return threads[0] is threads[1]

    assert in_hub(run)


def test_a_job_killed_before_it_started_never_runs():
    def run():
        ran = []
        job = reused_threads.spawn(lambda: ran.append(1))
        job.kill()
        eventlet.sleep(0)
        return ran, job.dead

    assert in_hub(run) == ([], True)


def test_a_job_s_error_is_raised_by_wait():
    def fail():
        raise ValueError("no")

    def run():
        job = reused_threads.spawn(fail, at_once=True)
        with pytest.raises(ValueError, match="no"):
            job.wait()
        return True

    assert in_hub(run)


def test_a_stray_wake_up_of_a_waiting_thread_is_no_job():
    def run():
        threads = []
        reused_threads.spawn(lambda: threads.append(greenlet.getcurrent()), at_once=True)
        # As a timer left behind by a job's last wait would.
        eventlet.hubs.get_hub().schedule_call_global(0, threads[0].switch, "stray")
        eventlet.sleep(0)
        job = reused_threads.spawn(lambda: threads.append(greenlet.getcurrent()), at_once=True)
        return job.dead, threads[0] is threads[1]

    assert in_hub(run) == (True, True)


def test_only_so_many_threads_wait_for_work_after_a_burst():
    def run():
        release = eventlet.event.Event()
        jobs = [reused_threads.spawn(release.wait) for _ in range(reused_threads.IDLE_KEPT + 5)]
        eventlet.sleep(0)
        release.send(None)
        eventlet.sleep(0)
        idle = reused_threads._idle[eventlet.hubs.get_hub()]
        return all(job.dead for job in jobs), len(idle)

    assert in_hub(run) == (True, reused_threads.IDLE_KEPT)


def test_a_job_sees_no_context_variable_that_an_earlier_job_in_its_thread_set():
    variable = contextvars.ContextVar("variable", default="unset")

    def run():
        seen, threads = [], []

        def job(value):
            threads.append(greenlet.getcurrent())
            seen.append(variable.get())
            variable.set(value)

        reused_threads.spawn(lambda: job("first"), at_once=True)
        reused_threads.spawn(lambda: job("second"), at_once=True)
        return seen, threads[0] is threads[1]

    assert in_hub(run) == (["unset", "unset"], True)


def test_in_a_monkey_patched_process_each_job_has_a_thread_of_its_own(monkeypatch):
    # There threading.local is green-local: a worker's locals must not be the next one's.
    monkeypatch.setattr(eventlet.patcher, "is_monkey_patched", lambda module: True)

    def run():
        threads = []
        for _ in range(2):
            reused_threads.spawn(lambda: threads.append(greenlet.getcurrent()), at_once=True)
        return threads[0] is threads[1]

    assert not in_hub(run)
