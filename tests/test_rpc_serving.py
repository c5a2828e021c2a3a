import kombu
import pytest

from sandbox import rpc_serving
from sandbox.rpc_serving import RequestLedger


def request(body=b'{"args": [], "kwargs": {}}', correlation_id="c-1", **headers):
    return kombu.Message(
        body=body,
        delivery_info={"exchange": "nameko-rpc", "routing_key": "svc.method"},
        properties={"reply_to": "reply-key", "correlation_id": correlation_id},
        headers=headers,
    )


@pytest.fixture
def digests(monkeypatch):
    """How many request digests were worked out."""
    made = []
    digest = rpc_serving.request_digest
    monkeypatch.setattr(
        rpc_serving, "request_digest", lambda *parts: made.append(1) or digest(*parts)
    )
    return made


def test_a_copy_joins_the_running_request_and_is_settled_with_it():
    ledger = RequestLedger()
    first, copy = request(), request()
    ledger.start(first)
    assert ledger.join(copy)
    assert ledger.finish(first, {"result": 1}) == [first, copy]
    assert ledger.reply_for(request()) == {"result": 1}


def test_a_request_that_reuses_the_ids_of_another_is_another_request():
    ledger = RequestLedger()
    first = request()
    ledger.start(first)
    other = request(body=b'{"args": [2], "kwargs": {}}')
    assert not ledger.join(other)
    ledger.start(other)
    assert ledger.finish(other, {"result": 2}) == [other]
    assert ledger.finish(first, {"result": 1}) == [first]
    assert ledger.reply_for(request()) == {"result": 1}
    assert ledger.reply_for(request(body=b'{"args": [2], "kwargs": {}}')) == {"result": 2}
    assert ledger.reply_for(request(body=b"{}")) is None
    # A redelivery counts its deliveries in a header: still the same request.
    assert ledger.reply_for(request(**{"x-delivery-count": 1})) == {"result": 1}


def test_no_digest_is_worked_out_for_requests_that_share_no_ids(digests):
    ledger = RequestLedger()
    for number in range(3):
        message = request(correlation_id=f"c-{number}")
        assert not ledger.join(message)
        assert ledger.reply_for(message) is None
        ledger.start(message)
        assert ledger.finish(message, {"result": number}) == [message]
    assert digests == []
    assert ledger.reply_for(request(correlation_id="c-1")) == {"result": 1}
    assert digests == [1, 1]  # the copy's and the answered request's


def test_a_request_forgotten_runs_again_when_it_comes_back():
    ledger = RequestLedger()
    first = request()
    ledger.start(first)
    ledger.forget(first)
    assert not ledger.join(request())
    assert ledger.finish(first, {"result": 1}) == [first]  # nothing to remember


def test_only_the_last_requests_are_remembered():
    ledger = RequestLedger(remembered=2)
    for number in range(3):
        message = request(correlation_id=f"c-{number}")
        ledger.start(message)
        ledger.finish(message, {"result": number})
    assert ledger.reply_for(request(correlation_id="c-0")) is None
    assert ledger.reply_for(request(correlation_id="c-2")) == {"result": 2}


def test_only_a_request_that_shares_ids_with_one_running_or_answered_may_be_known():
    ledger = RequestLedger()
    first = request()
    assert not ledger.may_know(first)
    ledger.start(first)
    assert ledger.may_know(request())
    assert ledger.may_know(request(body=b"{}"))  # the same ids: worth a closer look
    assert not ledger.may_know(request(correlation_id="c-2"))
    ledger.finish(first, {"result": 1})
    assert ledger.may_know(request())
    assert not ledger.may_know(request(correlation_id=None))  # no id, nobody can tell
