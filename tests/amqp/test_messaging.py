import kombu
import pytest

from sandbox.amqp.publish import AmqpPublisher, UndeliverableMessage
from sandbox.contextdata import ContextDataProvider
from sandbox.messaging import (
    HeaderDecoder,
    HeaderEncoder,
    Publisher,
    consume,
    decode_from_headers,
    encode_to_headers,
)
from sandbox.rpc import rpc
from sandbox.runtime import get_runtime
from sandbox.standalone.rpc import ServiceRpcProxy
from sandbox.testing.services import entrypoint_waiter
from sandbox.testing.utils import get_container

jobs = kombu.Exchange("jobs", type="direct", durable=True)
jobs_queue = kombu.Queue("jobs", exchange=jobs, routing_key="job", durable=True)


def test_context_data_in_headers_round_trip():
    headers = encode_to_headers({"call_id_stack": ["a.b.1"], "language": "en"})
    assert headers == {"nameko.call_id_stack": ["a.b.1"], "nameko.language": "en"}
    decoded = decode_from_headers({**headers, "x-custom": 1})
    assert decoded == {"call_id_stack": ["a.b.1"], "language": "en", "x-custom": 1}
    assert decode_from_headers({"x.y": 1}, prefix="x") == {"y": 1}


def test_nameko_2_header_mixins():
    class WorkerContext:
        context_data = {"language": "en"}

    class Message:
        headers = {"nameko.language": "en"}

    assert HeaderEncoder().get_message_headers(WorkerContext()) == {"nameko.language": "en"}
    assert HeaderDecoder().unpack_message_headers(Message()) == {"language": "en"}


class Producer:
    name = "producer"
    publish = Publisher(exchange=jobs, routing_key="job")

    @rpc
    def send(self, job):
        self.publish(job)


class Worker:
    name = "worker"
    stack = ContextDataProvider("call_id_stack")

    @consume(jobs_queue)
    def work(self, job):
        return job, self.stack


def test_publisher_and_consumer(rabbit_config, runner_factory, published):
    runner = runner_factory(rabbit_config, Producer, Worker)
    runner.start()
    worker = get_container(runner, Worker)
    with entrypoint_waiter(worker, "work") as result, ServiceRpcProxy("producer") as producer:
        producer.send({"id": 7})
    job, stack = result.get()
    assert job == {"id": 7}
    assert [call.split(".")[0] for call in stack] == ["standalone_rpc_proxy", "producer"]

    request, message, reply = sorted(published, key=lambda record: record["time"])
    assert (request["kind"], request["routing_key"]) == ("rpc-request", "producer.send")
    assert request["reply_to"] and request["correlation_id"]
    assert request["payload"] == {"args": [{"id": 7}], "kwargs": {}}
    assert (message["kind"], message["exchange"], message["routing_key"]) == (
        "message",
        "jobs",
        "job",
    )
    assert message["payload"] == {"id": 7}
    assert message["headers"]["nameko.call_id_stack"] == stack
    assert (reply["kind"], reply["correlation_id"]) == ("rpc-reply", request["correlation_id"])
    assert reply["payload"] == {"result": None, "error": None}


class Picky:
    name = "picky"
    attempts = []

    @consume(jobs_queue, requeue_on_error=True)
    def work(self, job):
        Picky.attempts.append(job)
        if len(Picky.attempts) == 1:
            raise ValueError("not yet")
        return job


def test_consume_requeues_on_error_when_asked(rabbit_config, container_factory):
    Picky.attempts = []
    container = container_factory(Picky, rabbit_config)
    container.start()
    publisher = AmqpPublisher(rabbit_config["AMQP_URI"])
    succeeded = entrypoint_waiter(container, "work", callback=lambda ctx, res, exc: exc is None)
    with succeeded as result:
        get_runtime().call(publisher.publish, "job", exchange=jobs, routing_key="job")
    assert result.get() == "job"
    assert Picky.attempts == ["job", "job"]


def test_mandatory_publish_of_an_unroutable_message(rabbit_config, container_factory):
    container_factory(Worker, rabbit_config).start()  # declares the exchange
    publisher = AmqpPublisher(rabbit_config["AMQP_URI"], mandatory=True)
    with pytest.raises(UndeliverableMessage, match="NO_ROUTE"):
        get_runtime().call(publisher.publish, "lost", exchange=jobs, routing_key="nobody")
