"""sandbox.utils.retry: Nameko's retry decorator."""

import math
from unittest.mock import Mock, patch

import pytest

from sandbox.testing.services import once
from sandbox.testing.waiting import wait_for_call
from sandbox.timer import timer
from sandbox.utils.retry import retry


@pytest.fixture
def slept():
    """The waits retry asked for, without waiting."""
    with patch("sandbox.utils.retry.sleep") as sleep:
        yield lambda: [delay for (delay,), _ in sleep.call_args_list]


def failing(times, error=ValueError):
    """A mock that raises ``error`` ``times`` times, then returns "done"."""
    return Mock(side_effect=[error()] * times + ["done"])


def test_bare_decorator_retries_three_times_a_second_apart(slept):
    fn = failing(10)
    with pytest.raises(ValueError):
        retry(fn)()
    assert fn.call_count == 4
    assert slept() == [1, 1, 1]


def test_success_after_failures_returns_the_result(slept):
    fn = failing(2)
    assert retry(max_attempts=5)(fn)("arg", key="word") == "done"
    fn.assert_called_with("arg", key="word")
    assert fn.call_count == 3


@pytest.mark.parametrize("exceptions", [KeyError, (OSError, KeyError)])
def test_only_for_exceptions_are_retried(slept, exceptions):
    fn = failing(1, error=ValueError)
    with pytest.raises(ValueError):
        retry(for_exceptions=exceptions)(fn)()
    assert fn.call_count == 1
    assert retry(for_exceptions=exceptions)(failing(2, KeyError))() == "done"


@pytest.mark.parametrize("forever", [None, math.inf])
def test_max_attempts_none_retries_until_it_works(slept, forever):
    fn = failing(50)
    assert retry(max_attempts=forever, delay=0)(fn)() == "done"
    assert fn.call_count == 51


def test_max_attempts_zero_calls_once(slept):
    fn = failing(1)
    with pytest.raises(ValueError):
        retry(max_attempts=0)(fn)()
    assert fn.call_count == 1 and slept() == []


def test_backoff_multiplies_each_delay_up_to_max_delay(slept):
    with pytest.raises(ValueError):
        retry(max_attempts=5, delay=2, backoff=3)(failing(10))()
    assert slept() == [6, 18, 54, 162, 486]


def test_max_delay_caps_the_delay(slept):
    with pytest.raises(ValueError):
        retry(max_attempts=4, delay=1, backoff=2, max_delay=5)(failing(10))()
    assert slept() == [2, 4, 5, 5]


def test_each_call_starts_with_the_first_delay(slept):
    decorated = retry(max_attempts=2, delay=5, backoff=2)(failing(10))
    for _ in range(2):
        with pytest.raises(ValueError):
            decorated()
    assert slept() == [10, 20, 10, 20]


def test_the_decorated_function_keeps_its_name_and_works_as_a_method(slept):
    class Client:
        attempts = 0

        @retry(delay=0)
        def fetch(self, key):
            """Fetch a key."""
            self.attempts += 1
            if self.attempts < 2:
                raise OSError("flaky")
            return key

    client = Client()
    assert client.fetch("k") == "k" and client.attempts == 2
    assert Client.fetch.__name__ == "fetch" and Client.fetch.__doc__ == "Fetch a key."


class Ticking:
    """A timer that counts, and a worker that retries while the timer goes on."""

    name = "ticking"
    ticks = 0
    seen = []

    @timer(interval=0.01)
    def tick(self):
        Ticking.ticks += 1

    @once()
    def flaky(self):
        @retry(delay=0.2, max_attempts=2)
        def attempt():
            Ticking.seen.append(Ticking.ticks)
            if len(Ticking.seen) < 3:
                raise OSError("not yet")

        attempt()
        self.done()

    def done(self):
        pass


def test_in_a_service_the_wait_holds_only_its_worker(container_factory):
    Ticking.ticks, Ticking.seen = 0, []
    container = container_factory(Ticking)
    with wait_for_call(Ticking, "done"):
        container.start()
    first, second, third = Ticking.seen
    assert first < second < third  # the timer ticked during each wait
