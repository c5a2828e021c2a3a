"""The embedded broker's memory of each message's steps: what sb.why reads, bounded."""

from sandbox.broker import Broker, ManualClock, Message
from sandbox.broker.fates import ACKED, DELIVERED, DIED, MAX_STEPS, QUEUED, ROUTED, Fates, Step


def message(number: int) -> Message:
    return Message(b"{}", {"message_id": f"m-{number}"})


def test_only_the_last_messages_and_steps_are_kept():
    fates = Fates(size=3)
    for number in range(5):
        fates.note(message(number), ROUTED, detail=("q",))
    assert fates.steps("m-0") is None and fates.steps("m-1") is None
    assert fates.steps("m-4") == [Step(ROUTED, None, ("q",))]
    for _ in range(MAX_STEPS + 5):
        fates.note(message(4), QUEUED, "q")
    assert len(fates.steps("m-4")) == MAX_STEPS
    assert fates.steps("m-4")[0] == Step(QUEUED, "q")


def test_a_message_without_id_is_not_followed():
    fates = Fates()
    fates.note(Message(b"{}", {}), ROUTED, detail=())
    assert fates._steps == {}


def test_the_broker_notes_delivery_ack_and_expiry():
    clock = ManualClock()
    broker = Broker("/", clock=clock)
    connection = broker.connect()
    channel = connection.channel()
    channel.queue_declare("work")
    channel.queue_declare("idle", arguments={"x-message-ttl": 100})
    channel.basic_consume("work", "worker")
    channel.basic_publish(message(1), "", "work")
    channel.basic_ack(connection.inbox.popleft().delivery_tag)
    channel.basic_publish(message(2), "", "idle")
    clock.advance(0.2)
    assert broker.ready_count(broker.queues["idle"]) == 0
    assert broker.fates.steps("m-1") == [
        Step(ROUTED, None, ("work",)),
        Step(DELIVERED, "work", "worker"),
        Step(ACKED, "work"),
    ]
    assert broker.fates.steps("m-2") == [
        Step(ROUTED, None, ("idle",)),
        Step(QUEUED, "idle"),
        Step(DIED, "idle", ("expired", None)),
    ]
