"""A process that called ``eventlet.monkey_patch()`` first, as Nameko projects, scripts and
conftests do: the runtime shares its hub, and test or script code waits greenly in it."""

import os
import subprocess
import sys
import textwrap

from tests.conftest import SOURCE_ROOT

SERVICES = """
import time
import urllib.request

import eventlet

from sandbox.events import EventDispatcher, event_handler
from sandbox.rpc import rpc
from sandbox.web.handlers import http


class Sleeper:
    name = "sleeper"
    dispatch = EventDispatcher()

    @rpc
    def sleep(self, seconds):
        time.sleep(seconds)  # green: the process is monkey patched
        return seconds

    @rpc
    def announce(self, text):
        self.dispatch("announced", text)

    @http("GET", "/ping")
    def ping(self, request):
        return "pong"


class Listener:
    name = "listener"

    @event_handler("sleeper", "announced")
    def heard(self, text):
        return text.upper()

    @rpc
    def fetch(self, url):
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()
"""


def run_python(path, *args, cwd):
    env = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT)}
    return subprocess.run(
        [sys.executable, "-W", "ignore", str(path), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_monkey_patched_script_runs_services(tmp_path, rabbit_config):
    (tmp_path / "services.py").write_text(SERVICES)
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import eventlet
            eventlet.monkey_patch()

            import sys

            from sandbox.runners import ServiceRunner
            from sandbox.standalone.rpc import ClusterRpcProxy
            from sandbox.testing.services import entrypoint_waiter
            from sandbox.testing.utils import find_free_port

            from services import Listener, Sleeper

            port = find_free_port()
            config = {"AMQP_URI": sys.argv[1], "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}"}
            runner = ServiceRunner(config)
            runner.add_service(Sleeper)
            runner.add_service(Listener)
            runner.start()
            listener = next(c for c in runner.containers if c.service_name == "listener")
            with ClusterRpcProxy(config) as cluster:
                print("slept", cluster.sleeper.sleep(0.01))
                try:
                    with eventlet.Timeout(0.2):
                        cluster.sleeper.sleep(1)  # the runner.stop() below waits for it
                except eventlet.Timeout:
                    print("timed out")
                calls = [eventlet.spawn(cluster.sleeper.sleep, 0.3) for _ in range(5)]
                print("together", sum(call.wait() for call in calls))
                with entrypoint_waiter(listener, "heard") as heard:
                    cluster.sleeper.announce("hello")
                print("heard", heard.get())
                print("fetched", cluster.listener.fetch(f"http://127.0.0.1:{port}/ping"))
            runner.stop()
            print("stopped")
            """
        )
    )
    done = run_python(script, rabbit_config["AMQP_URI"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == [
        "slept 0.01",
        "timed out",
        "together 1.5",
        "heard HELLO",
        "fetched pong",
        "stopped",
        "",
    ]


def test_a_monkey_patched_test_session_runs_nameko_style_tests(tmp_path):
    (tmp_path / "services.py").write_text(SERVICES)
    (tmp_path / "conftest.py").write_text("import eventlet\n\neventlet.monkey_patch()\n")
    (tmp_path / "test_services.py").write_text(
        textwrap.dedent(
            """
            import eventlet
            import pytest

            from sandbox.standalone.rpc import ServiceRpcProxy
            from sandbox.testing.services import entrypoint_hook, entrypoint_waiter

            from services import Listener, Sleeper


            def test_hook_and_timeout(container_factory, rabbit_config, web_config):
                container = container_factory(Sleeper, {**rabbit_config, **web_config})
                container.start()
                with entrypoint_hook(container, "sleep") as sleep:
                    assert sleep(0.01) == 0.01
                    with pytest.raises(eventlet.Timeout), eventlet.Timeout(0.1):
                        sleep(30)


            def test_events_and_green_callers(runner_factory, rabbit_config, web_config):
                runner = runner_factory({**rabbit_config, **web_config}, Sleeper, Listener)
                runner.start()
                listener = next(c for c in runner.containers if c.service_name == "listener")
                with ServiceRpcProxy("sleeper", rabbit_config) as sleeper:
                    calls = [eventlet.spawn(sleeper.sleep, 0.2) for _ in range(5)]
                    with entrypoint_waiter(listener, "heard") as heard:
                        sleeper.announce("hi")
                    assert heard.get() == "HI"
                    assert [call.wait() for call in calls] == [0.2] * 5


            def test_managed_thread_from_test_code(container_factory, rabbit_config, web_config):
                container = container_factory(Sleeper, {**rabbit_config, **web_config})
                container.start()
                thread = container.spawn_managed_thread(lambda: "done")
                assert thread.wait() == "done"
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout
