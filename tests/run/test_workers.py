"""`sandbox run --workers N`: worker processes for real, on RabbitMQ, under a supervisor."""

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from polling import wait_until

from sandbox.standalone.rpc import ClusterRpcProxy

SERVICE = """
import os
import pathlib

import eventlet

from sandbox.rpc import rpc
from sandbox.web.handlers import http


class Worked:
    name = "worked"

    @rpc
    def pid(self):
        return os.getpid()

    @rpc
    def work(self, n):
        eventlet.sleep(0.005)
        return n, os.getpid()

    @rpc
    def slow(self, n):
        pathlib.Path(f"started-{n}").touch()
        eventlet.sleep(0.5)
        pathlib.Path(f"finished-{n}").touch()
        return n

    @http("GET", "/pid")
    def http_pid(self, request):
        return str(os.getpid())
"""


def pids_seen(call, want, timeout=60):
    """Call until ``want`` distinct pids answered; the set of them."""
    seen = set()

    def enough():
        seen.add(call())
        return len(seen) >= want

    wait_until(enough, timeout=timeout, interval=0)
    return seen


def test_two_workers_answer_rpc_and_http_from_two_pids(serve, vhost_uri):
    served = serve(SERVICE, "--workers", "2", uri=vhost_uri, ready_lines=2)
    workers = set(served.started_pids().values())
    assert len(workers) == 2 and os.getpid() not in workers
    with ClusterRpcProxy({"AMQP_URI": vhost_uri}, timeout=30) as cluster:
        assert pids_seen(cluster.worked.pid, 2) == workers
    assert pids_seen(lambda: int(served.get("/pid").text), 2) == workers


def test_a_killed_worker_loses_no_rpc_and_is_replaced(serve, vhost_uri):
    served = serve(SERVICE, "--workers", "2", uri=vhost_uri, ready_lines=2)
    victim = served.started_pids()[0]
    calls = 400
    answered = []
    killed = threading.Event()

    def call(cluster, n):
        result = cluster.worked.work(n)
        answered.append(result)
        if len(answered) == calls // 4 and not killed.is_set():
            killed.set()
            os.kill(victim, signal.SIGKILL)
        return result

    with (
        ClusterRpcProxy({"AMQP_URI": vhost_uri}, timeout=60) as cluster,
        ThreadPoolExecutor(8) as pool,
    ):
        results = list(pool.map(lambda n: call(cluster, n), range(calls)))
    assert killed.is_set()
    assert [n for n, _ in results] == list(range(calls))  # every call answered, in order asked
    assert victim in {pid for _, pid in results}
    served.process.wait_for_line(f"worker 0 (pid {victim}) died (signal SIGKILL)", 30)
    served.process.wait_for_line("started worker 0", 30)
    replacement = served.started_pids()[0]
    assert replacement != victim
    served.process.wait_for_line(f"worker 0 (pid {replacement}) ready", 60)
    with ClusterRpcProxy({"AMQP_URI": vhost_uri}, timeout=30) as cluster:
        assert replacement in pids_seen(cluster.worked.pid, 2)


def test_sigterm_drains_every_worker_and_leaves_the_rest_queued(serve, vhost_uri, cli, tmp_path):
    served = serve(SERVICE, "--workers", "2", "-d", "max_workers=1", uri=vhost_uri, ready_lines=2)
    calls = 12
    with ClusterRpcProxy({"AMQP_URI": vhost_uri}, timeout=60) as cluster:
        replies = [cluster.worked.slow.call_async(n) for n in range(calls)]
        wait_until(lambda: len(list(tmp_path.glob("started-*"))) == 2, timeout=30)
        served.process.proc.send_signal(signal.SIGTERM)
        code, stderr = served.process.finish(timeout=60)
        assert code == 0, stderr
        assert stderr.count("stopped (exit code 0)") == 2
        started = {path.name.split("-")[1] for path in tmp_path.glob("started-*")}
        finished = {path.name.split("-")[1] for path in tmp_path.glob("finished-*")}
        assert started == finished, stderr  # drained, not killed
        assert len(started) < calls
        # What no worker started waits in the queue for the next instance.
        port = ["-d", "WEB_SERVER_ADDRESS=127.0.0.1:0"]
        cli("run", "services", *port, env={"SANDBOX_AMQP_URI": vhost_uri}).wait_for_line("started")
        assert [reply.result(timeout=60) for reply in replies] == list(range(calls))


def test_a_worker_that_cannot_start_ends_the_command_with_its_error(cli):
    process = cli(
        "run",
        "services",
        "--workers",
        "2",
        "-d",
        "TRANSPORT_OPTIONS={max_retries: 0}",
        "-d",
        "WEB_SERVER_ADDRESS=127.0.0.1:0",
        modules={"services": SERVICE},
        env={"SANDBOX_AMQP_URI": "amqp://nobody@127.0.0.1:1/"},
    )
    code, stderr = process.finish(timeout=60)
    assert code == 2, stderr
    assert "worker 0 could not start (exit code 2): stopping" in stderr or (
        "worker 1 could not start (exit code 2): stopping" in stderr
    )
    assert "cannot start services" in stderr


DIES_ONCE = """
import os

from sandbox.extensions import DependencyProvider
from sandbox.rpc import rpc


class DiesOnce(DependencyProvider):
    def setup(self):
        try:  # the first worker here, of all of them, dies
            os.close(os.open("died-once", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        os._exit(1)


class Flaky:
    name = "flaky"
    dies_once = DiesOnce()

    @rpc
    def ping(self):
        return "pong"
"""


def test_a_worker_that_dies_while_starting_is_started_again_after_a_delay(serve, vhost_uri):
    process = serve(DIES_ONCE, "--workers", "2", uri=vhost_uri, wait=False).process
    process.wait_for_line("died while starting (exit code 1): starting another in 0.5s", 60)
    while sum(" ready" in line for line in process.lines) < 2:  # the other, and the new one
        process.wait_for_line(" ready", 60)
    with ClusterRpcProxy({"AMQP_URI": vhost_uri}, timeout=30) as cluster:
        assert cluster.flaky.ping() == "pong"
    process.proc.send_signal(signal.SIGTERM)
    code, stderr = process.finish(timeout=60)
    assert code == 0, stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "expected a number of processes >= 1, not '0'"),
        (["--workers", "two"], "expected a number of processes >= 1, not 'two'"),
        (["--workers", "2"], "--workers needs a broker the workers share: memory://"),
        (
            ["--workers", "2", "--backdoor-port", "0", "--broker", "amqp://localhost/"],
            "--backdoor-port serves one process: it cannot go with --workers",
        ),
    ],
)
def test_worker_option_errors_are_one_line(cli, args, message):
    process = cli("run", "services", *args, modules={"services": SERVICE})
    code, stderr = process.finish()
    assert code == 2
    lines = [line for line in stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and message in lines[0], stderr


def test_the_shared_port_in_use_says_which_option_to_pass(cli, taken_port):
    address = f"127.0.0.1:{taken_port}"
    process = cli(
        "run",
        "services",
        "--workers",
        "2",
        "--broker",
        "amqp://localhost/",
        "-d",
        f"WEB_SERVER_ADDRESS={address}",
        modules={"services": SERVICE},
    )
    code, stderr = process.finish()
    assert code == 2
    assert stderr.splitlines()[-1] == (
        f"sandbox: error: cannot start services: [Errno 98] cannot listen on http://{address}: "
        "Address already in use; another process serves there: pass --define "
        "WEB_SERVER_ADDRESS=HOST:PORT (or set $WEB_SERVER_ADDRESS for an exported config.yaml)"
    )
    assert "started worker" not in stderr


def gone(pid):
    """Whether ``pid`` has ended (a zombie nobody reaped yet has ended too)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_workers_stop_when_their_supervisor_is_killed(serve, vhost_uri):
    served = serve(SERVICE, "--workers", "2", uri=vhost_uri, ready_lines=2)
    workers = served.started_pids().values()
    served.process.proc.kill()
    for pid in workers:
        wait_until(lambda pid=pid: gone(pid), timeout=60, interval=0.05)
    _, stderr = served.process.finish()
    assert stderr.count("the supervisor is gone: stopping") == 2
    assert stderr.count("sandbox.cli.run: stopped") == 2  # gracefully
