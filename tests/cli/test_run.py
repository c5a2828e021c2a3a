"""`sandbox run`: discovery in process, the command itself in a subprocess."""

import signal
import sqlite3
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from latency import best_latency

from sandbox.cli.run import find_services
from sandbox.exceptions import CommandError
from sandbox.extensions import ENTRYPOINT_EXTENSIONS_ATTR, count_entrypoints, is_service_class
from sandbox.testing.utils import find_free_port

DUMMY_SERVICE = """
from sandbox import config
from sandbox.extensions import Entrypoint

dummy = Entrypoint.decorator


class Greeter:
    name = config.get("GREETER_NAME", "greeter")

    @dummy
    def hello(self, who):
        return f"hello {who}"

    @dummy
    def bye(self, who):
        return f"bye {who}"
"""

# Stopping this service hangs, so only a kill ends it.
STUBBORN_SERVICE = """
import eventlet
from sandbox.extensions import Entrypoint


class Stubborn(Entrypoint):
    def stop(self):
        eventlet.sleep(60)


class Service:
    name = "stubborn"

    @Stubborn.decorator
    def method(self):
        pass
"""

# The entrypoint's background thread fails right after start, which kills the container.
CRASHING_SERVICE = """
from sandbox.extensions import Entrypoint


class Crashing(Entrypoint):
    def start(self):
        self.container.spawn_managed_thread(self.fail)

    def fail(self):
        raise RuntimeError("boom")


class Service:
    name = "crashing"

    @Crashing.decorator
    def method(self):
        pass
"""

TIMER_SERVICE = """
from sandbox.timer import timer


class Ticker:
    name = "ticker"

    @timer(interval=0.05)
    def tick(self):
        pass
"""


# --- discovery ---------------------------------------------------------------------------------


def entrypoint(fn):
    setattr(fn, ENTRYPOINT_EXTENSIONS_ATTR, {object()})
    return fn


class Imported:
    name = "imported"

    @entrypoint
    def method(self):
        pass


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Write a module into a temp dir on sys.path; forget it after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names = []

    def make(name, source):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield make
    for name in names:
        sys.modules.pop(name, None)


def test_is_service_class():
    class NoEntrypoints:
        name = "none"

        def method(self):
            pass

    class NoName:
        method = Imported.method

    class EmptyEntrypoints:
        name = "empty"

        def method(self):
            pass

    setattr(EmptyEntrypoints.method, ENTRYPOINT_EXTENSIONS_ATTR, set())

    assert is_service_class(Imported)
    assert count_entrypoints(Imported) == 1
    for obj in (NoEntrypoints, NoName, EmptyEntrypoints, Imported(), "x"):
        assert not is_service_class(obj)


def test_discovers_the_service_classes_defined_in_a_module(make_module):
    module = make_module(
        "disco_services",
        f"""
        from {__name__} import Imported, entrypoint


        class First:
            name = "first"

            @entrypoint
            def a(self):
                pass


        class Helper:
            pass


        class Second:
            name = "second"

            @entrypoint
            def b(self):
                pass
        """,
    )
    assert [cls.name for cls in find_services([module])] == ["first", "second"]


def test_named_class_needs_no_entrypoint_and_duplicates_collapse(make_module):
    module = make_module(
        "disco_named",
        f"""
        from {__name__} import entrypoint


        class Service:
            name = "service"

            @entrypoint
            def a(self):
                pass


        class Quiet:
            name = "quiet"
        """,
    )
    found = find_services([module, f"{module}:Service", f"{module}:Quiet"])
    assert [cls.name for cls in found] == ["service", "quiet"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("disco_missing_xyz", "cannot import module 'disco_missing_xyz': No module named"),
        ("disco_errors.py", "(did you mean 'disco_errors'?)"),
        (":Service", "':Service' is not a service path: expected MODULE[:CLASS]"),
        ("disco_errors:Nope", "module 'disco_errors' has no class 'Nope'"),
        ("disco_errors:NoName", "disco_errors:NoName is not a service class: it needs a str"),
        ("disco_errors:CONSTANT", "disco_errors:CONSTANT is not a service class"),
        ("disco_errors", "no service classes in module 'disco_errors'"),
        ("disco_syntax", "cannot import module 'disco_syntax': invalid syntax"),
    ],
)
def test_discovery_errors(make_module, spec, message):
    make_module("disco_errors", "CONSTANT = 1\n\nclass NoName:\n    name = 3\n")
    make_module("disco_syntax", "def broken(:\n")
    with pytest.raises(CommandError) as info:
        find_services([spec])
    assert message in str(info.value)


# --- the command, in a subprocess (the `cli` fixture is in tests/conftest.py) -----------------


def test_sigterm_stops_gracefully(cli):
    proc = cli("run", "services", modules={"services": DUMMY_SERVICE})
    proc.wait_for_line("started service greeter (2 entrypoints)")
    proc.proc.send_signal(signal.SIGTERM)
    code, stderr = proc.finish()
    assert code == 0
    assert "SIGTERM: stopping gracefully" in stderr
    assert "Traceback" not in stderr


def test_timer_service_stops_within_a_second_of_sigterm(cli):
    proc = cli("run", "ticker", modules={"ticker": TIMER_SERVICE})
    proc.wait_for_line("started service ticker (1 entrypoint)")
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    code = proc.proc.wait(timeout=10)
    assert time.monotonic() - started < 1.0
    assert code == 0


def test_second_ctrl_c_kills(cli):
    proc = cli("run", "stubborn", modules={"stubborn": STUBBORN_SERVICE})
    proc.wait_for_line("started service stubborn")
    proc.proc.send_signal(signal.SIGINT)
    proc.wait_for_line("SIGINT: stopping gracefully (Ctrl-C again to kill)")
    proc.proc.send_signal(signal.SIGINT)
    code, stderr = proc.finish()
    assert code == 128 + signal.SIGINT
    assert "SIGINT: killing the services" in stderr


def test_a_crashing_service_ends_the_process_with_an_error(cli):
    proc = cli("run", "crashing", modules={"crashing": CRASHING_SERVICE})
    code, stderr = proc.finish()
    assert code == 1
    assert "a service crashed" in stderr
    assert "RuntimeError: boom" in stderr


def test_config_file_broker_and_defines(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SB_TEST_PASSWORD", "hunter2")
    (tmp_path / "config.yaml").write_text(
        "AMQP_URI: amqp://guest:${SB_TEST_PASSWORD}@localhost:5672/\n"
        "GREETER_NAME: from-file\n"
        "LOGGING:\n"
        "  version: 1\n"
        "  formatters: {plain: {format: 'CUSTOM %(message)s'}}\n"
        "  handlers: {err: {class: logging.StreamHandler, formatter: plain}}\n"
        "  root: {level: INFO, handlers: [err]}\n"
    )
    proc = cli(
        "run",
        "services:Greeter",
        "--config",
        "config.yaml",
        "--define",
        "GREETER_NAME=from-define",
        modules={"services": DUMMY_SERVICE},
    )
    # The config is set up before the module is imported: class bodies can read it.
    proc.wait_for_line("CUSTOM started service from-define (2 entrypoints)")
    proc.proc.send_signal(signal.SIGTERM)
    code, stderr = proc.finish()
    assert code == 0
    assert "CUSTOM broker amqp://guest:********@localhost:5672/" in stderr
    assert "hunter2" not in stderr


def test_broker_option_is_logged_masked(cli):
    proc = cli(
        "run", "services", "--broker", "amqp://u:hunter2@h/", modules={"services": DUMMY_SERVICE}
    )
    line = proc.wait_for_line("broker ")
    assert line.rstrip().endswith("INFO sandbox.cli.run: broker amqp://u:********@h/")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.finish()[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no_such_module_xyz"], "cannot import module 'no_such_module_xyz'"),
        (["run", "services:Missing"], "module 'services' has no class 'Missing'"),
        (["run", "services:NoName"], "services:NoName is not a service class"),
        (["run", "empty"], "no service classes in module 'empty'"),
        (["run", "services", "--config", "nowhere.yaml"], "cannot read config file nowhere.yaml"),
        (["run", "services", "--config", "broken.yaml"], "broken.yaml, line 2: invalid YAML"),
        (
            ["run", "services", "--config", "malformed.yaml"],
            "malformed.yaml, line 1: key AMQP_URI: expected ':' or '}' after '${SB_UNSET_XYZ'",
        ),
        (["run", "services", "--define", "novalue"], "--define expects KEY=VALUE"),
        (["run", "services", "-d", "LOGGING=3"], "invalid LOGGING config"),
    ],
)
def test_error_paths_print_one_line_and_exit_2(cli, tmp_path, args, message):
    (tmp_path / "broken.yaml").write_text("a: 1\n  b: 2\n")
    (tmp_path / "malformed.yaml").write_text("AMQP_URI: ${SB_UNSET_XYZ\n")
    modules = {
        "services": DUMMY_SERVICE + "\n\nclass NoName:\n    name = None\n",
        "empty": "VALUE = 1\n",
    }
    code, stderr = cli(*args, modules=modules).finish()
    assert code == 2
    assert stderr.startswith(f"sandbox: error: {message}")
    assert stderr.count("\n") == 1
    assert "Traceback" not in stderr


BLOCKING_SERVICES = """
import sqlite3, sys, time
import requests
from sandbox.web.handlers import http


class Blocker:
    name = "blocker"

    @http("GET", "/sleep")
    def sleep(self, request):
        print("sleeping", file=sys.stderr, flush=True)
        time.sleep(3)
        return "slept"

    @http("GET", "/spin")
    def spin(self, request):
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            pass
        return "spun"


    @http("GET", "/relay")
    def relay(self, request):
        return requests.get(f"{request.host_url}quick", timeout=10).text

    @http("GET", "/write")
    def write(self, request):
        print("writing", file=sys.stderr, flush=True)
        with sqlite3.connect(request.args["path"], timeout=30) as connection:
            connection.execute("insert into t values (1)")
        return "written"


class Quick:
    name = "quick"

    @http("GET", "/quick")
    def quick(self, request):
        return "quick"
"""


def test_blocking_workers_stall_no_other_service_and_a_busy_one_is_logged(cli, tmp_path):
    port = find_free_port()
    base = f"http://127.0.0.1:{port}"
    proc = cli(
        "run",
        "blocking",
        "--define",
        f"WEB_SERVER_ADDRESS=127.0.0.1:{port}",
        modules={"blocking": BLOCKING_SERVICES},
    )
    proc.wait_for_line("started service quick")
    with ThreadPoolExecutor(1) as pool:
        sleeping = pool.submit(requests.get, f"{base}/sleep", timeout=30)
        proc.wait_for_line("sleeping")
        assert best_latency(f"{base}/quick") < 0.1
        assert not sleeping.done()
        assert sleeping.result().text == "slept"

        database = tmp_path / "locked.db"
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("create table t (x)")
        holder.execute("begin exclusive")
        writing = pool.submit(requests.get, f"{base}/write", {"path": str(database)}, timeout=30)
        proc.wait_for_line("writing")
        assert best_latency(f"{base}/quick") < 0.1
        assert not writing.done()
        holder.execute("commit")
        assert writing.result().text == "written"
    assert requests.get(f"{base}/relay", timeout=30).text == "quick"

    assert requests.get(f"{base}/spin", timeout=30).text == "spun"
    warning = proc.wait_for_line("held the services' thread")
    assert "blocker.spin has held the services' thread for 0.5 s" in warning
    loop_line = BLOCKING_SERVICES.splitlines().index("        while time.monotonic() < end:") + 1
    assert f"blocking.py:{loop_line} (in spin)" in warning
    proc.wait_for_line("blocker.spin let go after")
