"""Priority queues (``x-max-priority``), on both brokers and with services."""

import kombu
from broker_tools import send

from sandbox.messaging import Publisher, consume
from sandbox.rpc import rpc
from sandbox.standalone.rpc import ServiceRpcProxy
from sandbox.testing.services import entrypoint_waiter
from sandbox.testing.utils import get_container


def prioritised(name, max_priority=5, **arguments):
    return kombu.Queue(name, queue_arguments={"x-max-priority": max_priority, **arguments})


def test_highest_priority_first_fifo_within_a_priority(client):
    client.declare(prioritised("jobs"))
    # no priority means 0; above the maximum counts as the maximum, in arrival order
    for body, priority in [("a", 1), ("b", None), ("d", 5), ("c", 9), ("e", 1), ("f", 0)]:
        client.publish(body, routing_key="jobs", priority=priority)
    assert client.payloads("jobs") == ["d", "c", "a", "e", "b", "f"]


def test_a_plain_queue_ignores_priorities(client):
    client.declare(kombu.Queue("plain"))
    for body, priority in [("a", 1), ("b", 9)]:
        client.publish(body, routing_key="plain", priority=priority)
    assert client.payloads("plain") == ["a", "b"]


def test_a_requeued_message_goes_back_to_its_place_in_its_priority(client):
    client.declare(prioritised("jobs"))
    for body, priority in [("low", 1), ("high-1", 5), ("high-2", 5)]:
        client.publish(body, routing_key="jobs", priority=priority)
    assert client.reject("jobs", requeue=True) == "high-1"
    assert client.payloads("jobs") == ["high-1", "high-2", "low"]


def test_drop_head_drops_the_highest_priority(client):
    client.declare(prioritised("jobs", **{"x-max-length": 2}))
    for body, priority in [("a", 1), ("b", 5), ("c", 1)]:
        client.publish(body, routing_key="jobs", priority=priority)
    assert client.payloads("jobs") == ["a", "c"]


def test_expiry_looks_at_the_head_of_the_highest_priority(core, clock):
    core.queue_declare("jobs", arguments={"x-max-priority": 2})
    send(core, "jobs", "low-short", priority=0, expiration="10")
    send(core, "jobs", "high-long", priority=2, expiration="1000")
    clock.advance(0.5)
    assert core.queue_declare("jobs", passive=True)[1] == 2  # the low one waits behind
    assert core.basic_get("jobs", no_ack=True).message.body == b"high-long"
    assert core.basic_get("jobs", no_ack=True) is None  # now at the head, it expired


# -- services -------------------------------------------------------------------------------

urgent = kombu.Exchange("urgent", type="direct", durable=True)
tasks = kombu.Queue(
    "tasks",
    exchange=urgent,
    routing_key="task",
    durable=True,
    queue_arguments={"x-max-priority": 9},
)


class Dispatcher:
    name = "dispatcher"
    publish = Publisher(exchange=urgent, routing_key="task", declare=[tasks])

    @rpc
    def submit(self, task, priority):
        self.publish(task, priority=priority)


class Executor:
    name = "executor"
    done = []

    @consume(tasks, prefetch_count=1)
    def run(self, task):
        Executor.done.append(task)


def test_services_take_the_urgent_task_first(rabbit_config, runner_factory):
    Executor.done = []
    runner = runner_factory(rabbit_config, Dispatcher)
    runner.start()
    with ServiceRpcProxy("dispatcher") as dispatcher:
        for task, priority in [("chore", 0), ("fire", 9), ("bug", 5), ("memo", 0)]:
            dispatcher.submit(task, priority)
    executor = runner_factory(rabbit_config, Executor)
    last = entrypoint_waiter(
        get_container(executor, Executor), "run", callback=lambda *_: len(Executor.done) == 4
    )
    with last:
        executor.start()
    assert Executor.done == ["fire", "bug", "chore", "memo"]
