"""Fixtures of the `sandbox run` process tests: a fresh RabbitMQ vhost, a started command."""

import re
import uuid

import pytest
import requests
from polling import wait_until

from sandbox.testing.utils import find_free_port

WORKER_STARTED = re.compile(r"started worker (\d+) \(pid (\d+)\)")


@pytest.fixture
def vhost_uri(rabbit_manager):
    """The AMQP URI of a fresh RabbitMQ vhost (these tests need a broker processes share)."""
    vhost = f"sandbox-test-{uuid.uuid4().hex[:12]}"
    uri = rabbit_manager.create_vhost_for_amqp_user(vhost)
    yield uri
    rabbit_manager.delete_vhost(vhost)


class Served:
    """A started `sandbox run`: its process, its base URL, its workers' pids as logged."""

    def __init__(self, process, url):
        self.process = process
        self.url = url

    def get(self, path, **kwargs):
        return requests.get(self.url + path, timeout=30, **kwargs)

    def status(self, path):
        """The status ``path`` answers; None while nothing listens yet."""
        try:
            return self.get(path).status_code
        except requests.ConnectionError:
            return None

    def wait_ready(self, timeout=60):
        wait_until(lambda: self.status("/readyz") == 200, timeout=timeout, interval=0.1)

    def started_pids(self):
        """Worker index -> pid, the latest start of each, from the log lines read so far."""
        pids = {}
        for line in self.process.lines:
            match = WORKER_STARTED.search(line)
            if match:
                pids[int(match[1])] = int(match[2])
        return pids


@pytest.fixture
def serve(cli):
    """Start `sandbox run MODULE` on a free port with ``args``, and wait until it is ready."""

    def start(module_source, *args, uri="memory://", ready_lines=1, wait=True):
        port = find_free_port()
        process = cli(
            "run",
            "services",
            "-d",
            f"WEB_SERVER_ADDRESS=127.0.0.1:{port}",
            *args,
            modules={"services": module_source},
            env={"SANDBOX_AMQP_URI": uri},
        )
        served = Served(process, f"http://127.0.0.1:{port}")
        if wait:
            for _ in range(ready_lines):
                process.wait_for_line(" ready" if "--workers" in args else "started service", 60)
            served.wait_ready()
        return served

    return start
