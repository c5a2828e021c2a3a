"""Records fed to a subscriber in batches."""

import logging
from types import SimpleNamespace

from polling import wait_until

from sandbox.record_feed import RecordSubscription


def records(*names):
    return [SimpleNamespace(name=name) for name in names]


def test_a_batch_holds_each_pushed_record_once_in_order():
    batches = []
    first, second = records("first", "second")
    feed = RecordSubscription(None, batches.append, interval=3600)
    for record in (first, second, first, None):
        feed.push(record)
    feed.flush()
    assert batches == [[first, second]]
    assert (feed.batches, feed.delivered) == (1, 2)


def test_a_push_schedules_a_flush_in_the_hub():
    batches = []
    feed = RecordSubscription(None, batches.append, interval=0.01)
    (record,) = records("one")
    feed.push(record)
    wait_until(lambda: batches == [[record]])


def test_a_failing_subscriber_is_logged_and_fed_again(caplog):
    calls = []

    def failing(batch):
        calls.append(batch)
        raise RuntimeError("widget gone")

    feed = RecordSubscription(None, failing, interval=3600)
    with caplog.at_level(logging.ERROR, logger="sandbox.records"):
        feed.flush()
    feed.flush()
    assert calls == [[], []]
    assert "record subscriber" in caplog.text


def test_cancel_unsubscribes_from_its_recorder():
    cancelled = []
    feed = RecordSubscription(SimpleNamespace(unsubscribe=cancelled.append), print, interval=1)
    feed.cancel()
    assert cancelled == [feed]
