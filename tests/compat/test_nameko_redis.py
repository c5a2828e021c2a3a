"""nameko-redis 1.1.0 on sandbox, against a real redis-server: redis's socket waits greenly, so
a worker blocked on the server leaves the others running."""

import pytest
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import entrypoint_hook
from nameko_redis import Redis


class Counter:
    name = "counter"
    redis = Redis("counter")

    @rpc
    def incr(self, key):
        return self.redis.incr(key)

    @rpc
    def pop(self, key, timeout):
        """Wait up to ``timeout`` s for an item to be pushed onto ``key``."""
        popped = self.redis.blpop(key, timeout)
        return popped and popped[1]

    @rpc
    def push(self, key, value):
        return self.redis.rpush(key, value)


@pytest.fixture
def counter_config(rabbit_config, redis_server):
    return {**rabbit_config, "REDIS_URIS": {"counter": redis_server}}


def test_a_service_with_redis_over_rpc(counter_config, container_factory, redis_prefix):
    container_factory(Counter, counter_config).start()
    with ServiceRpcProxy("counter", counter_config) as counter:
        assert counter.incr(f"{redis_prefix}hits") == 1
        assert counter.incr(f"{redis_prefix}hits") == 2


def test_a_worker_waiting_on_redis_stalls_no_other(counter_config, container_factory, redis_prefix):
    container_factory(Counter, counter_config).start()
    queue = f"{redis_prefix}queue"
    with ServiceRpcProxy("counter", counter_config) as counter:
        waiting = counter.pop.call_async(queue, 30)
        # These calls run while pop waits on its socket. Had pop held the hub, they would run
        # only after its 30 s were over and it had returned None, not the item pushed here.
        for expected in (1, 2, 3):
            assert counter.incr(f"{redis_prefix}hits") == expected
        assert counter.push(queue, "item") == 1
        assert waiting.result() == "item"


def test_entrypoint_hook(counter_config, container_factory, redis_prefix):
    container = container_factory(Counter, counter_config)
    container.start()
    with entrypoint_hook(container, "incr") as incr:
        assert incr(f"{redis_prefix}hooked") == 1
