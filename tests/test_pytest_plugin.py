"""The pytest plugin: Nameko's fixtures and options, and which broker rabbit_config runs on.

Sessions of their own run under ``pytester`` in a subprocess, without this repository's ini
(which asks for both brokers): there the plugin's defaults hold.
"""

import queue

import kombu
import pytest

from sandbox.constants import AMQP_URI_CONFIG_KEY
from sandbox.dependency_providers import DependencyProvider
from sandbox.messaging import Publisher
from sandbox.rpc import rpc
from sandbox.testing.pytest import parse_config_option
from sandbox.testing.services import entrypoint_hook, once
from sandbox.testing.utils import find_free_port
from sandbox.testing.waiting import wait_for_call

pytest_plugins = ["pytester"]

# A test that passes once per process only: run twice, its module-level Mock remembers.
MODULE_LEVEL_MOCK = """
from unittest.mock import Mock

handler = Mock()


def test_called_once(rabbit_config):
    handler(rabbit_config["AMQP_URI"])
    handler.assert_called_once()
    print("BROKER", rabbit_config["AMQP_URI"].partition(":")[0])
"""


def run(pytester, source, *args):
    pytester.makepyfile(source)
    return pytester.runpytest_subprocess("-s", "-rfs", "-p", "no:cacheprovider", *args)


def unused_amqp_uri():
    return f"amqp://guest:guest@127.0.0.1:{find_free_port()}/"


def test_by_default_a_test_runs_once_on_rabbitmq(pytester, rabbit_manager):
    result = run(pytester, MODULE_LEVEL_MOCK, "--sandbox-amqp-uri", rabbit_manager.amqp_uri)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["sandbox brokers: rabbitmq at amqp://guest:********@*", "*BROKER amqp"]
    )


def test_without_rabbitmq_a_test_runs_once_on_the_embedded_broker(pytester):
    uri = unused_amqp_uri()
    result = run(pytester, MODULE_LEVEL_MOCK, "--rabbit-amqp-uri", uri)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"sandbox brokers: memory (no RabbitMQ at 127.0.0.1:{uri.split(':')[-1][:-1]}: *)"]
    )
    result.stdout.fnmatch_lines(["*BROKER memory"])


def test_an_api_that_does_not_answer_means_the_embedded_broker(pytester, rabbit_manager):
    api = f"http://guest:guest@127.0.0.1:{find_free_port()}"
    result = run(
        pytester, MODULE_LEVEL_MOCK, "--amqp-uri", rabbit_manager.amqp_uri, "--rabbit-ctl-uri", api
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["sandbox brokers: memory (*management HTTP API*"])


def test_sandbox_brokers_runs_a_test_on_each_broker(pytester, rabbit_manager):
    """Both runs share the module: the module-level Mock fails the second one."""
    option = ["--amqp-uri", rabbit_manager.amqp_uri, "--sandbox-brokers=memory,rabbitmq"]
    result = run(pytester, MODULE_LEVEL_MOCK, *option)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["sandbox brokers: memory, rabbitmq (sandbox_brokers)"])
    result.stdout.fnmatch_lines(["FAILED *::test_called_once?rabbitmq?*"])


def test_the_ini_setting_pins_the_brokers(pytester):
    pytester.makeini("[pytest]\nsandbox_brokers = memory\n")
    result = run(pytester, MODULE_LEVEL_MOCK)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["sandbox brokers: memory (sandbox_brokers)", "*BROKER memory"])


def test_a_pinned_rabbitmq_that_does_not_answer_skips_with_the_reason(pytester):
    uri = unused_amqp_uri()
    result = run(pytester, MODULE_LEVEL_MOCK, "--amqp-uri", uri, "--sandbox-brokers", "rabbitmq")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED *no RabbitMQ at 127.0.0.1:*"])


def test_an_unknown_broker_is_a_one_line_usage_error(pytester):
    result = run(pytester, MODULE_LEVEL_MOCK, "--sandbox-brokers=memory,redis")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: sandbox_brokers: unknown broker 'redis' (choose among memory, rabbitmq)"]
    )


def test_rabbit_ssl_config_builds_the_tls_config(pytester, rabbit_manager):
    source = """
def test_ssl(rabbit_ssl_config, rabbit_config):
    from urllib.parse import urlsplit

    assert urlsplit(rabbit_ssl_config["AMQP_URI"]).port == 5999
    assert urlsplit(rabbit_ssl_config["AMQP_URI"]).path == "/" + rabbit_config["vhost"]
    assert rabbit_ssl_config["vhost"] == rabbit_config["vhost"]
    assert rabbit_ssl_config["username"] == "guest"
    assert rabbit_ssl_config["AMQP_SSL"] == {
        "ca_certs": "certs/cacert.pem",
        "certfile": "/etc/client.pem",
        "keyfile": "certs/clientkey.pem",
        "cert_reqs": 0,
        "ciphers": ["ECDHE", "AES"],
        "check_hostname": True,
    }
"""
    options = ["certfile=/etc/client.pem", "cert_reqs=0", "ciphers=[ECDHE, AES]", "check_hostname"]
    args = ["--sandbox-amqp-uri", rabbit_manager.amqp_uri, "--sandbox-amqp-ssl-port", "5999"]
    for option in options:
        args += ["--sandbox-amqp-ssl-option", option]
    run(pytester, source, *args).assert_outcomes(passed=1)


def test_rabbit_ssl_config_skips_on_the_embedded_broker(pytester):
    source = "def test_ssl(rabbit_ssl_config):\n    pass\n"
    result = run(pytester, source, "--sandbox-brokers=memory")
    result.assert_outcomes(skipped=1)


def test_nameko_s_option_names_and_blocking_detection_are_accepted(pytester, rabbit_manager):
    source = """
def test_options(request):
    assert request.config.getoption("RABBIT_AMQP_URI") == "amqp://guest:guest@127.0.0.1:5672/"
    assert request.config.getoption("RABBIT_API_URI") == "http://guest:guest@127.0.0.1:15672"
    assert request.config.getoption("blocking_detection") is True
"""
    result = run(
        pytester,
        source,
        "--rabbit-amqp-uri=amqp://guest:guest@127.0.0.1:5672/",
        "--blocking-detection",
    )
    result.assert_outcomes(passed=1)


def test_parse_config_option_reads_values_as_yaml():
    assert parse_config_option("port=5671") == ("port", 5671)
    assert parse_config_option("name=a=b") == ("name", "a=b")
    assert parse_config_option("verify") == ("verify", True)


# --- fixtures, on both brokers where one is involved -------------------------------------------


def test_rabbit_config_names_its_vhost_and_user(rabbit_config, request):
    uri = rabbit_config[AMQP_URI_CONFIG_KEY]
    assert uri.endswith("/" + rabbit_config["vhost"])
    if uri.startswith("memory"):
        assert rabbit_config["username"] is None
    else:
        manager = request.getfixturevalue("rabbit_manager")
        assert rabbit_config["username"] == "guest"
        assert manager.get_queues(rabbit_config["vhost"]) == []


def test_amqp_uri_is_rabbit_config_s(amqp_uri, rabbit_config):
    assert amqp_uri == rabbit_config[AMQP_URI_CONFIG_KEY]


PARCELS = kombu.Exchange("parcels", type="direct")
PARCELS_QUEUE = kombu.Queue("parcels", exchange=PARCELS, routing_key="parcels")


class Sender:
    name = "sender"
    publish = Publisher(exchange=PARCELS, declare=[PARCELS_QUEUE])

    @once("a parcel")
    def send(self, body):
        self.publish(body, routing_key="parcels")
        self.sent()

    def sent(self):
        pass


def test_get_message_from_queue(rabbit_config, container_factory, get_message_from_queue):
    with wait_for_call(Sender, "sent"):
        container_factory(Sender, rabbit_config).start()

    kept = get_message_from_queue("parcels", ack=False)
    assert kept.payload == "a parcel"
    taken = get_message_from_queue("parcels", accept=["json"])
    assert taken.payload == "a parcel"
    assert taken.properties["content_type"] == "application/json"
    with pytest.raises(queue.Empty):
        get_message_from_queue("parcels", timeout=0.1)


def test_mock_container_is_an_autospec_container_with_the_default_serializer(mock_container):
    assert mock_container.config == {"serializer": "json"}
    assert (mock_container.serializer, mock_container.accept) == ("json", ["json"])
    mock_container.spawn_worker("entrypoint", (), {})
    mock_container.spawn_worker.assert_called_once_with("entrypoint", (), {})
    with pytest.raises(AttributeError):
        mock_container.no_such_method  # noqa: B018


class CallId(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_ctx.call_id


class Echo:
    name = "echo"
    call_id = CallId()

    @rpc
    def which(self):
        return self.call_id


def test_predictable_call_ids_count_from_zero(predictable_call_ids, container_factory):
    container = container_factory(Echo)
    container.start()
    with entrypoint_hook(container, "which") as which:
        assert [which(), which()] == ["echo.which.0", "echo.which.1"]
    assert predictable_call_ids.call_count == 2


# What the real Nameko's pytest plugin registers (same option names and destinations).
FAKE_NAMEKO_PLUGIN = """
def pytest_addoption(parser):
    parser.addoption("--amqp-uri", "--rabbit-amqp-uri", dest="RABBIT_AMQP_URI",
                     default="pyamqp://guest:guest@localhost")
    parser.addoption("--rabbit-api-uri", "--rabbit-ctl-uri", dest="RABBIT_API_URI",
                     default="http://guest:guest@localhost:15672")
    parser.addoption("--amqp-ssl-port", dest="AMQP_SSL_PORT", default=5671)
    parser.addoption("--amqp-ssl-option", dest="AMQP_SSL_OPTIONS", action="append", default=[])
    parser.addoption("--blocking-detection", action="store_true", dest="blocking_detection")
"""


@pytest.mark.parametrize("option", ["--amqp-uri", "--sandbox-amqp-uri"])
def test_beside_the_real_nameko_its_plugin_owns_the_shared_options(pytester, monkeypatch, option):
    # An installed distribution named nameko whose pytest11 plugin registers Nameko's options:
    # with both plugins loaded, a second registration would end pytest before it starts.
    site = pytester.mkdir("site")
    (site / "fake_nameko_plugin.py").write_text(FAKE_NAMEKO_PLUGIN)
    dist_info = site / "nameko-2.14.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: nameko\nVersion: 2.14.1\n")
    (dist_info / "entry_points.txt").write_text("[pytest11]\nnameko = fake_nameko_plugin\n")
    monkeypatch.setenv("PYTHONPATH", str(site))  # the session's subprocess finds it there
    test = """
def test_options(pytestconfig):
    assert pytestconfig.option.RABBIT_AMQP_URI == "amqp://nobody:nothing@127.0.0.1/"
"""
    result = run(pytester, test, option, "amqp://nobody:nothing@127.0.0.1/")
    result.assert_outcomes(passed=1)


def test_the_sandbox_option_wins_over_nameko_s_name(pytester):
    test = """
def test_options(pytestconfig):
    assert pytestconfig.option.RABBIT_AMQP_URI == "amqp://ours:x@127.0.0.1/"
    assert pytestconfig.option.RABBIT_API_URI == "http://ours:x@127.0.0.1:15672"
"""
    args = [
        "--amqp-uri",
        "amqp://theirs:x@127.0.0.1/",
        "--sandbox-amqp-uri",
        "amqp://ours:x@127.0.0.1/",
    ]
    run(pytester, test, *args).assert_outcomes(passed=1)


def test_a_management_api_that_refuses_the_credentials_means_the_embedded_broker(
    pytester, rabbit_manager
):
    api = "http://nobody:nothing@127.0.0.1:15672"
    result = run(
        pytester, MODULE_LEVEL_MOCK, "--amqp-uri", rabbit_manager.amqp_uri, "--rabbit-ctl-uri", api
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["sandbox brokers: memory (*401 Unauthorized*)"])
