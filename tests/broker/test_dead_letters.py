"""Dead-lettering, on both brokers and (for exact timing) on the embedded one's manual clock.

The expected ``x-death`` headers were read off messages dead-lettered by RabbitMQ 3.10.
"""

import kombu
import pytest
from broker_tools import eventually, got, recent, send

from sandbox.amqp.publish import AmqpPublisher, UndeliverableMessage
from sandbox.messaging import Publisher, consume
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.rpc import ServiceRpcProxy
from sandbox.testing.services import entrypoint_waiter
from sandbox.testing.utils import get_container

dlx = kombu.Exchange("dlx", type="fanout", durable=True)
dead = kombu.Queue("dead", exchange=dlx, durable=True)


def death_of(message) -> list[dict]:
    """The ``x-death`` header, each table's time checked and taken out."""
    deaths = message.headers["x-death"]
    for death in deaths:
        assert recent(death.pop("time"))
    return deaths


def first_death(message) -> dict:
    return {k: v for k, v in message.headers.items() if k.startswith("x-first-death-")}


def test_a_rejected_message_is_dead_lettered_with_x_death(client):
    work = kombu.Queue("work", durable=True, queue_arguments={"x-dead-letter-exchange": "dlx"})
    client.declare(dlx, dead, work)
    client.publish({"n": 1}, routing_key="work", expiration=60, headers={"CC": ["elsewhere"]})
    assert client.reject("work") == {"n": 1}

    message = client.wait_for("dead")
    assert message.payload == {"n": 1}
    assert (message.delivery_info["exchange"], message.delivery_info["routing_key"]) == (
        "dlx",
        "work",
    )
    assert "expiration" not in message.properties  # it would expire again
    assert death_of(message) == [
        {
            "count": 1,
            "reason": "rejected",
            "queue": "work",
            "exchange": "",
            "routing-keys": ["work", "elsewhere"],
            "original-expiration": "60000",
        }
    ]
    assert first_death(message) == {
        "x-first-death-exchange": "",
        "x-first-death-queue": "work",
        "x-first-death-reason": "rejected",
    }
    assert message.headers["CC"] == ["elsewhere"]


def test_queue_ttl_dead_letters_with_the_dead_letter_routing_key(client):
    delayed = kombu.Queue(
        "delayed",
        durable=True,
        queue_arguments={
            "x-message-ttl": 50,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "ready",
        },
    )
    client.declare(delayed, kombu.Queue("ready", durable=True))
    client.publish("later", exchange="amq.direct", routing_key="nowhere")  # unroutable
    client.run(lambda channel: channel.queue_bind("delayed", "amq.direct", "soon"))
    client.publish("later", exchange="amq.direct", routing_key="soon", headers={"CC": ["x"]})

    message = client.wait_for("ready")
    assert message.delivery_info["routing_key"] == "ready"
    assert "CC" not in message.headers  # the dead-letter routing key replaces every key
    assert death_of(message) == [
        {
            "count": 1,
            "reason": "expired",
            "queue": "delayed",
            "exchange": "amq.direct",
            "routing-keys": ["soon", "x"],
        }
    ]


def test_per_message_expiration_dead_letters_when_it_reaches_the_head(client):
    work = kombu.Queue("work", durable=True, queue_arguments={"x-dead-letter-exchange": "dlx"})
    client.declare(dlx, dead, work)
    client.publish("short", routing_key="work", expiration=0.05)
    message = client.wait_for("dead")
    assert message.payload == "short"
    [death] = death_of(message)
    assert (death["reason"], death["original-expiration"]) == ("expired", "50")


def test_max_length_drops_the_head_into_the_dead_letter_exchange(client):
    arguments = {"x-max-length": 1, "x-dead-letter-exchange": "dlx"}
    client.declare(dlx, dead, kombu.Queue("short", durable=True, queue_arguments=arguments))
    for n in (1, 2):
        client.publish(n, routing_key="short")
    message = client.wait_for("dead")
    assert message.payload == 1
    assert [d["reason"] for d in death_of(message)] == ["maxlen"]
    assert client.payloads("short") == [2]


def test_delayed_retry_counts_each_round_in_x_death(client):
    """The retry pattern: a rejected job waits in a TTL queue that dead-letters it back."""
    to = {"x-dead-letter-exchange": ""}
    work = kombu.Queue("work", queue_arguments={**to, "x-dead-letter-routing-key": "retry"})
    retry = kombu.Queue(
        "retry", queue_arguments={**to, "x-dead-letter-routing-key": "work", "x-message-ttl": 50}
    )
    client.declare(work, retry)
    client.publish("job", routing_key="work")
    for _ in range(2):
        eventually(lambda: client.count("work") == 1)
        client.reject("work")
    eventually(lambda: client.count("work") == 1)
    message = client.get("work")
    assert death_of(message) == [
        {
            "count": 2,
            "reason": "expired",
            "queue": "retry",
            "exchange": "",
            "routing-keys": ["retry"],
        },
        {
            "count": 2,
            "reason": "rejected",
            "queue": "work",
            "exchange": "",
            "routing-keys": ["work"],
        },
    ]
    assert first_death(message)["x-first-death-reason"] == "rejected"


def test_an_expiring_queue_takes_its_messages_with_it(client):
    arguments = {"x-expires": 100, "x-dead-letter-exchange": "dlx"}
    client.declare(dlx, dead, kombu.Queue("brief", queue_arguments=arguments))
    client.publish("kept?", routing_key="brief")
    probe = AmqpPublisher(client.amqp_uri, mandatory=True, retry=False)

    def gone():  # a publish does not renew the queue's lease, a declare would
        try:
            get_runtime().call(probe.publish, "probe", routing_key="brief")
        except UndeliverableMessage:
            return True
        return False

    eventually(gone)
    assert client.count("dead") == 0  # RabbitMQ does not dead-letter them either


# -- services -------------------------------------------------------------------------------

delay = kombu.Exchange("delay", type="direct", durable=True)
waiting = kombu.Queue(
    "waiting",
    exchange=delay,
    routing_key="later",
    durable=True,
    queue_arguments={
        "x-message-ttl": 100,
        "x-dead-letter-exchange": "due",
        "x-dead-letter-routing-key": "now",
    },
)
due = kombu.Exchange("due", type="direct", durable=True)


class Scheduler:
    name = "scheduler"
    publish = Publisher(exchange=delay, routing_key="later", declare=[waiting, due])

    @rpc
    def later(self, job):
        self.publish(job)


class Doer:
    name = "doer"

    @consume(kombu.Queue("due-jobs", exchange=due, routing_key="now", durable=True))
    def do(self, job):
        return job


def test_services_delay_a_job_through_a_ttl_queue(rabbit_config, runner_factory):
    runner = runner_factory(rabbit_config, Scheduler, Doer)
    runner.start()
    doer = get_container(runner, Doer)
    with entrypoint_waiter(doer, "do") as result, ServiceRpcProxy("scheduler") as scheduler:
        scheduler.later({"id": 3})
    assert result.get() == {"id": 3}


# -- the embedded broker, on its manual clock --------------------------------------------------


@pytest.fixture
def dead_letters(core):
    core.exchange_declare("dlx", "fanout")
    core.queue_declare("dead")
    core.queue_bind("dead", "dlx")
    return core


def test_ttl_expires_exactly_on_time_and_only_at_the_head(dead_letters, clock):
    core = dead_letters
    core.queue_declare("q", arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "dlx"})
    send(core, "q", "a")
    clock.advance(0.05)
    send(core, "q", "b")
    clock.advance(0.0499)
    assert got(core, "dead") == []
    clock.advance(0.0001)
    assert got(core, "dead") == ["a"]
    clock.advance(0.05)
    assert got(core, "dead") == ["b"]

    core.queue_declare("p", arguments={"x-dead-letter-exchange": "dlx"})
    send(core, "p", "long", expiration="10000")
    send(core, "p", "shielded", expiration="1")
    clock.advance(1)
    assert got(core, "dead") == []  # 'shielded' expired behind a live head: it waits
    assert got(core, "p") == ["long"]
    assert got(core, "dead") == ["shielded"]  # dropped once it reached the head


def test_x_death_time_comes_from_the_clock(dead_letters, clock):
    core = dead_letters
    core.queue_declare("q", arguments={"x-message-ttl": 0, "x-dead-letter-exchange": "dlx"})
    send(core, "q", "gone")
    clock.advance(3600)
    [delivery] = [core.basic_get("dead", no_ack=True)]
    [death] = delivery.message.headers["x-death"]
    assert death["time"].timestamp() == pytest.approx(clock.timestamp() - 3600, abs=1)


def test_nack_multiple_without_requeue_dead_letters_in_order(dead_letters):
    core = dead_letters
    core.queue_declare("q", arguments={"x-dead-letter-exchange": "dlx"})
    send(core, "q", "1", "2", "3")
    tags = [core.basic_get("q").delivery_tag for _ in range(3)]
    core.basic_nack(tags[1], multiple=True, requeue=False)
    assert got(core, "dead") == ["1", "2"]
    core.basic_nack(tags[2], requeue=True)
    assert got(core, "q") == ["3"]


def test_an_expiry_cycle_is_dropped_a_rejection_cycle_is_not(core, clock):
    back = {"x-dead-letter-exchange": "", "x-message-ttl": 10}
    core.queue_declare("loop", arguments=back)  # dead-letters to itself by its own name
    send(core, "loop", "round")
    clock.advance(1)
    assert got(core, "loop") == []

    core.queue_declare("bounce", arguments={"x-dead-letter-exchange": ""})  # back to itself
    send(core, "bounce", "again")
    for _ in range(2):
        core.basic_reject(core.basic_get("bounce").delivery_tag, requeue=False)
    [death] = core.basic_get("bounce", no_ack=True).message.headers["x-death"]
    assert (death["reason"], death["count"]) == ("rejected", 2)


def test_a_missing_dead_letter_exchange_drops_the_message(core):
    core.queue_declare("q", arguments={"x-dead-letter-exchange": "missing"})
    send(core, "q", "m")
    core.basic_reject(core.basic_get("q").delivery_tag, requeue=False)
    assert core.queue_declare("q", passive=True)[1] == 0
