"""Queue, exchange and message arguments: refused as RabbitMQ refuses them, word for word
(on both brokers); what the embedded broker does not implement is refused by name."""

import kombu
import pytest
from amqp.exceptions import PreconditionFailed, ResourceLocked

INT = '"expected integer, got {}"'
REFUSED_QUEUE_ARGUMENTS = [
    ("x-expires", 0, "{value_zero,0}"),
    ("x-expires", -5, "{value_negative,-5}"),
    ("x-message-ttl", "1", INT.format("longstr")),
    ("x-max-length", None, INT.format("void")),
    ("x-max-length-bytes", 1.5, INT.format("double")),
    ("x-max-priority", 256, "{max_value_exceeded,256}"),
    ("x-max-priority", True, INT.format("bool")),
    ("x-overflow", "drop-tail", "invalid_overflow"),
    ("x-overflow", 1, "{unacceptable_type,signedint}"),
    ("x-single-active-consumer", "true", "{unacceptable_type,longstr}"),
    ("x-dead-letter-routing-key", "k", "routing_key_but_no_dlx_defined"),
    ("x-queue-mode", "fast", "\"unsupported queue mode 'fast'\""),
    ("x-queue-type", "bogus", "\"unsupported queue type 'bogus'\""),
]


def refused_declare(client, queue) -> str:
    with pytest.raises(PreconditionFailed) as refused:
        client.declare(queue)
    return refused.value.reply_text


@pytest.mark.parametrize("name, value, problem", REFUSED_QUEUE_ARGUMENTS)
def test_bad_queue_arguments_are_refused_as_rabbitmq_refuses_them(client, name, value, problem):
    reply = refused_declare(client, kombu.Queue("q", queue_arguments={name: value}))
    assert reply == (
        f"PRECONDITION_FAILED - invalid arg '{name}' for queue 'q' in vhost '{client.vhost}': "
        f"{problem}"
    )


@pytest.mark.parametrize(
    "entity, argument",
    [
        (kombu.Queue("q", queue_arguments={"x-dead-letter-exchange": 5}), "x-dead-letter-exchange"),
        (kombu.Exchange("x", arguments={"alternate-exchange": 5}), "alternate-exchange"),
    ],
)
def test_exchange_names_in_arguments_must_be_text(client, entity, argument):
    kind = "queue" if isinstance(entity, kombu.Queue) else "exchange"
    assert refused_declare(client, entity) == (
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg '{argument}' in "
        f"{kind} '{entity.name}' in vhost '{client.vhost}'"
    )


def test_arguments_rabbitmq_knows_are_accepted(client):
    accepted = {
        "x-queue-type": "classic",
        "x-queue-mode": "lazy",
        "x-message-ttl": 0,
        "x-max-priority": 0,
        "x-single-active-consumer": False,
        "x-overflow": "reject-publish-dlx",
        "x-max-length": 2**40,
        "x-dead-letter-exchange": "",
    }
    client.declare(kombu.Queue("q", queue_arguments=accepted))


REDECLARED = [
    (
        {"x-max-priority": 5},
        "x-message-ttl",
        "received none but current is the value '1000' of type 'signedint'",
    ),
    (
        {"x-max-priority": 5, "x-message-ttl": 2000},
        "x-message-ttl",
        "received '2000' but current is '1000'",
    ),
    (
        {"x-max-priority": 5, "x-message-ttl": 1000, "x-max-length": 3},
        "x-max-length",
        "received the value '3' of type 'signedint' but current is none",
    ),
]


@pytest.mark.parametrize("arguments, name, difference", REDECLARED)
def test_a_redeclare_with_other_arguments_is_refused(client, arguments, name, difference):
    client.declare(kombu.Queue("q", queue_arguments={"x-max-priority": 5, "x-message-ttl": 1000}))
    reply = refused_declare(client, kombu.Queue("q", queue_arguments=arguments))
    assert reply == (
        f"PRECONDITION_FAILED - inequivalent arg '{name}' for queue 'q' in vhost "
        f"'{client.vhost}': {difference}"
    )


def test_a_redeclare_as_exclusive_is_locked_out(client):
    client.declare(kombu.Queue("q"))
    with pytest.raises(ResourceLocked):
        client.declare(kombu.Queue("q", exclusive=True))


@pytest.mark.parametrize(
    "expiration, problem",
    [("abc", "no_integer"), ("-1", "{value_negative,-1}"), ("1.5", '{leftover_string,".5"}')],
)
def test_a_bad_expiration_is_refused(client, expiration, problem):
    client.declare(kombu.Queue("q"))
    with pytest.raises(PreconditionFailed) as refused:
        client.run(
            lambda channel: channel.basic_publish(
                channel.prepare_message(b"m", properties={"expiration": expiration}), "", "q"
            ),
            confirms=True,
        )
    assert refused.value.reply_text == (
        f"PRECONDITION_FAILED - invalid expiration '{expiration}': {problem}"
    )


# -- what only the embedded broker refuses: RabbitMQ would accept and ignore it ---------------


@pytest.mark.parametrize(
    "arguments, name",
    [
        ({"x-foo": 1}, "x-foo"),
        ({"foo": "bar"}, "foo"),
        ({"x-max-in-memory-length": 3}, "x-max-in-memory-length"),
        ({"x-delivery-limit": 3}, "x-delivery-limit"),
    ],
)
def test_unimplemented_queue_arguments_are_refused_by_name(core, arguments, name):
    with pytest.raises(PreconditionFailed, match=f"invalid arg '{name}' for queue 'q'.*embedded"):
        core.queue_declare("q", arguments=arguments)
    core.queue_declare("q")
    with pytest.raises(PreconditionFailed, match=f"'{name}'.*not implemented"):
        core.queue_declare("q", arguments=arguments)  # on a redeclare too


def test_quorum_queues_are_refused(core):
    with pytest.raises(PreconditionFailed, match="quorum queues are not implemented"):
        core.queue_declare("q", arguments={"x-queue-type": "quorum"})


def test_unimplemented_exchange_and_consumer_arguments_are_refused_by_name(core):
    with pytest.raises(PreconditionFailed, match="invalid arg 'x-delayed-type' for exchange 'x'"):
        core.exchange_declare("x", "direct", arguments={"x-delayed-type": "direct"})
    core.queue_declare("q")
    with pytest.raises(PreconditionFailed, match="consumer argument 'x-priority'"):
        core.basic_consume("q", arguments={"x-priority": 10})
