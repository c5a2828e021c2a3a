"""The embedded broker's clock: a manual one makes TTLs and x-expires deterministic."""

import pytest

from sandbox.broker import Message, clock, get_broker, reset


def test_timers_fire_in_due_order_at_their_due_time():
    manual = clock.ManualClock()
    seen = []
    manual.call_later(0.2, lambda: seen.append(("b", manual.now())))
    first = manual.call_later(0.1, lambda: seen.append(("a", manual.now())))
    manual.call_later(
        0.1, lambda: manual.call_later(0.05, lambda: seen.append(("c", manual.now())))
    )
    manual.call_later(0.3, lambda: seen.append(("late", manual.now())))
    first.cancel()
    manual.advance(0.25)
    assert seen == [("c", pytest.approx(0.15)), ("b", 0.2)]
    assert manual.now() == 0.25 and manual.pending() == [0.3]
    with pytest.raises(ValueError, match="cannot go back"):
        manual.advance(-1)


def test_brokers_created_inside_manual_run_on_it():
    with clock.manual(epoch=1_000_000) as time:
        broker = get_broker("manual-clock")
        assert broker.clock is time and time.timestamp() == 1_000_000
    try:
        assert clock.current() is not time  # the real clock again for new brokers
        channel = broker.connect().channel()
        channel.queue_declare("q", arguments={"x-message-ttl": 1000})
        channel.basic_publish(Message(b"m", {}), "", "q")
        time.advance(0.999)
        assert channel.queue_declare("q", passive=True)[1] == 1
        time.advance(0.001)
        assert channel.queue_declare("q", passive=True)[1] == 0
    finally:
        reset("manual-clock")
