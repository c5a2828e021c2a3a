import threading

import pytest

from sandbox.contextdata import ContextDataProvider
from sandbox.events import (
    BROADCAST,
    SERVICE_POOL,
    SINGLETON,
    EventDispatcher,
    EventHandler,
    EventHandlerConfigurationError,
    event_handler,
)
from sandbox.extensions import DependencyProvider
from sandbox.rpc import rpc
from sandbox.standalone.events import event_dispatcher
from sandbox.standalone.rpc import ServiceRpcProxy
from sandbox.testing.services import entrypoint_waiter
from sandbox.testing.utils import get_container, get_extension


class Deliveries:
    """Who handled which payload; wait() until ``count`` events were handled."""

    def __init__(self):
        self.handled = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def add(self, who, payload):
        with self._changed:
            self.handled.append((who, payload))
            self._changed.notify_all()

    def wait(self, count, timeout=10):
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.handled) >= count, timeout)
            return list(self.handled)


@pytest.fixture
def deliveries():
    Handler.deliveries = Deliveries()
    return Handler.deliveries


class Handler:
    """Records which container handled what; each test builds its own service from it."""

    deliveries: Deliveries

    def record(self, tag, payload):
        self.deliveries.add((tag, id(self.container_marker)), payload)


class ContainerMarker(DependencyProvider):
    """Something unique per container, to tell two instances of one service apart."""

    def get_dependency(self, worker_ctx):
        return worker_ctx.container


def handler_service(name, handler_type, **options):
    class Service(Handler):
        container_marker = ContainerMarker()

        @event_handler("source", "happened", handler_type=handler_type, **options)
        def handle(self, payload):
            self.record(name, payload)

    Service.name = name
    return Service


def test_service_pool_hands_each_event_to_one_instance(
    rabbit_config, container_factory, deliveries
):
    service = handler_service("pool", SERVICE_POOL)
    for _ in range(2):
        container_factory(service, rabbit_config).start()
    dispatch = event_dispatcher(rabbit_config)
    for n in range(20):
        dispatch("source", "happened", n)
    handled = deliveries.wait(20)
    assert sorted(payload for _, payload in handled) == list(range(20))
    assert len({who for who, _ in handled}) == 2  # both instances took their share
    dispatch("source", "happened", "last")
    assert len(deliveries.wait(21)) == 21


class StableBroadcast(EventHandler):
    @property
    def broadcast_identifier(self):
        return f"instance-{id(self.container)}"


def test_broadcast_reaches_every_instance(rabbit_config, container_factory, deliveries):
    class Reliable(Handler):
        name = "reliable"
        container_marker = ContainerMarker()

        @StableBroadcast.decorator("source", "happened", handler_type=BROADCAST)
        def handle(self, payload):
            self.record("reliable", payload)

    unreliable = handler_service("unreliable", BROADCAST, reliable_delivery=False)
    containers = [container_factory(cls, rabbit_config) for cls in (Reliable, Reliable)]
    containers += [container_factory(unreliable, rabbit_config) for _ in range(2)]
    for container in containers:
        container.start()
    event_dispatcher(rabbit_config)("source", "happened", "hello")
    handled = deliveries.wait(4)
    assert len({who for who, _ in handled}) == 4
    queue = get_extension(containers[2], EventHandler).queue
    assert queue.name.startswith("evt-source-happened--unreliable.handle-")
    assert (queue.durable, queue.auto_delete, queue.exclusive) == (True, True, True)


def test_broadcast_with_reliable_delivery_needs_its_own_identifier(container_factory):
    with pytest.raises(EventHandlerConfigurationError, match="broadcast identifier"):
        container_factory(handler_service("broadcaster", BROADCAST), {})


def test_singleton_hands_each_event_to_one_handler_anywhere(
    rabbit_config, container_factory, deliveries
):
    for name in ("first", "second"):
        container_factory(handler_service(name, SINGLETON), rabbit_config).start()
    dispatch = event_dispatcher(rabbit_config)
    for n in range(10):
        dispatch("source", "happened", n)
    handled = deliveries.wait(10)
    assert sorted(payload for _, payload in handled) == list(range(10))
    dispatch("source", "happened", "last")
    assert len(deliveries.wait(11)) == 11


def test_queue_names_and_flags_follow_nameko(rabbit_config, container_factory):
    pool = container_factory(handler_service("pool", SERVICE_POOL), rabbit_config)
    singleton = container_factory(handler_service("single", SINGLETON), rabbit_config)
    for container in (pool, singleton):
        container.start()
    pool_queue = get_extension(pool, EventHandler).queue
    singleton_queue = get_extension(singleton, EventHandler).queue
    assert pool_queue.name == "evt-source-happened--pool.handle"
    assert singleton_queue.name == "evt-source-happened"
    assert (pool_queue.durable, pool_queue.auto_delete, pool_queue.exclusive) == (
        True,
        False,
        False,
    )
    assert pool_queue.routing_key == "happened"
    assert pool_queue.exchange.name == "source.events"


class Flaky:
    name = "flaky"
    attempts = 0

    @event_handler("source", "happened", requeue_on_error=True)
    def handle(self, payload):
        Flaky.attempts += 1
        if Flaky.attempts == 1:
            raise RuntimeError("first attempt fails")
        return payload


def test_requeue_on_error_redelivers(rabbit_config, container_factory):
    Flaky.attempts = 0
    container = container_factory(Flaky, rabbit_config)
    container.start()
    succeeded = entrypoint_waiter(
        container, "handle", callback=lambda worker_ctx, result, exc_info: exc_info is None
    )
    with succeeded as result:
        event_dispatcher(rabbit_config)("source", "happened", "again")
    assert result.get() == "again"
    assert Flaky.attempts == 2


class Dispatcher:
    name = "source"
    dispatch = EventDispatcher()

    @rpc
    def emit(self, payload):
        self.dispatch("happened", payload)


class Listener:
    name = "listener"
    stack = ContextDataProvider("call_id_stack")
    language = ContextDataProvider("language")

    @event_handler("source", "happened")
    def handle(self, payload):
        return payload, self.stack, self.language


def test_events_carry_the_context_of_their_dispatcher(rabbit_config, runner_factory):
    runner = runner_factory(rabbit_config, Dispatcher, Listener)
    runner.start()
    listener = get_container(runner, Listener)
    proxy = ServiceRpcProxy("source", context_data={"language": "nl"})
    with entrypoint_waiter(listener, "handle") as result, proxy as source:
        source.emit({"n": 1})
    payload, stack, language = result.get()
    assert payload == {"n": 1}
    assert language == "nl"
    assert [call.split(".")[0] for call in stack] == ["standalone_rpc_proxy", "source"]
