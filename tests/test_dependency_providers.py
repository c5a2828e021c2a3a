from types import SimpleNamespace

from sandbox.config import ConfigDict as ConfigMapping
from sandbox.containers import ServiceContainer
from sandbox.dependency_providers import Config
from sandbox.extensions import DependencyProvider
from sandbox.testing.services import dummy, entrypoint_hook


def fake_worker_ctx(config):
    return SimpleNamespace(container=SimpleNamespace(config=config))


def test_config_is_a_dependency_provider():
    assert issubclass(Config, DependencyProvider)


def test_injects_a_plain_copy_of_the_container_config():
    container_config = ConfigMapping({"AMQP_URI": "memory://", "FOO": "bar"})
    injected = Config().get_dependency(fake_worker_ctx(container_config))
    assert type(injected) is dict
    assert injected == {"AMQP_URI": "memory://", "FOO": "bar"}
    injected["FOO"] = "changed"
    assert container_config["FOO"] == "bar"


def test_a_worker_of_a_real_container_gets_the_config():
    class Service:
        name = "service"
        config = Config()

        @dummy
        def read(self, key):
            self.config["MUTATED"] = True
            return self.config[key]

    container = ServiceContainer(Service, config={"FOO": "bar"})
    container.start()
    try:
        with entrypoint_hook(container, "read") as read:
            assert read("FOO") == "bar"
        assert "MUTATED" not in container.config
    finally:
        container.kill()
