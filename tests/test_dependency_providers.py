from types import SimpleNamespace

from sandbox.config import Config as ConfigMapping
from sandbox.dependency_providers import Config
from sandbox.extensions import DependencyProvider


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
