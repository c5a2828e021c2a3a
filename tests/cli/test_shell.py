"""`sandbox shell`: IPython (or Python's console) with `sb` connected to the configured broker."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parents[2]

# IPython reads piped lines as if typed: a blank line ends a block.
SERVICE = """\
from sandbox.testing.services import dummy
class Echo:
    name = "echo"
    @dummy
    def echo(self, value):
        return value

print("state:", sb.services["echo"].state)
"""


def shell(*args, stdin="", tmp_path, prelude=""):
    """Run `sandbox shell` with ``stdin`` piped in; return the finished process."""
    pythonpath = os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")]))
    command = (
        f"{prelude}from sandbox.cli.main import main; import sys; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", command, "shell", *args],
        input=stdin,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_command_runs_with_sb_connected_to_the_configured_broker(tmp_path):
    (tmp_path / "config.yaml").write_text("AMQP_URI: memory://\nGREETING: hello\n")
    done = shell(
        "--config",
        "config.yaml",
        "--command",
        "from sandbox import config; print(type(sb).__name__, config['GREETING'])",
        tmp_path=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("sandbox shell 0.1.0, Python ")
    assert ": broker memory://, HTTP to http://127.0.0.1:8000/. `sb` is the client" in lines[0]
    assert "cell" not in lines[0]
    assert lines[1] == "NotebookClient hello"


def test_sb_http_calls_the_configured_address_even_when_it_is_taken(tmp_path, taken_port):
    # In a shell the address is the cluster's web server, which is running: it must not move.
    address = f"127.0.0.1:{taken_port}"
    done = shell(
        "-d", f"WEB_SERVER_ADDRESS={address}", "--command", "print(sb.http)", tmp_path=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"<sb.http on http://{address}>"
    assert "taken" not in done.stderr


@pytest.mark.parametrize("console", [[], ["--plain"]])
def test_sb_http_calls_the_cluster_address_given_with_http(tmp_path, console, taken_port):
    # A cluster's config binds every interface; --http names where it is reached from here.
    port = taken_port
    config = f"WEB_SERVER_ADDRESS: ${{WEB_SERVER_ADDRESS:0.0.0.0:{port}}}\n"
    (tmp_path / "config.yaml").write_text(config)
    bound = shell(*console, "-c", "config.yaml", "--command", "print(sb.http)", tmp_path=tmp_path)
    url = f"http://localhost:{port}/api"
    given = shell(
        *console, "--http", url, "--command", "print(sb.http.url_of('/x'))", tmp_path=tmp_path
    )
    assert bound.returncode == 0, bound.stderr
    assert bound.stdout.splitlines()[-1] == f"<sb.http on http://127.0.0.1:{port}>"
    assert given.returncode == 0, given.stderr
    assert given.stdout.splitlines()[-1] == f"{url}/x"


def test_piped_stdin_is_read_like_typed_input(tmp_path):
    done = shell(stdin=SERVICE + "\n%sandbox status\n", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "state: running" in done.stdout
    assert "echo running" in done.stdout


def test_a_failing_command_exits_1(tmp_path):
    done = shell("--command", "1 / 0", tmp_path=tmp_path)
    assert done.returncode == 1
    assert "ZeroDivisionError" in done.stdout + done.stderr


def test_plain_console(tmp_path):
    done = shell("--plain", stdin='print("got", type(sb).__name__)\n', tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("sandbox shell 0.1.0, Python ")
    assert "broker memory://, HTTP to http://127.0.0.1:8000/. `sb` is the client" in done.stderr
    assert "got NotebookClient" in done.stdout
    failed = shell("--plain", "--command", "1 / 0", tmp_path=tmp_path)
    assert failed.returncode == 1 and "ZeroDivisionError" in failed.stderr


def test_without_ipython_the_plain_console_is_used(tmp_path):
    done = shell(
        stdin='print("got", type(sb).__name__)\n',
        tmp_path=tmp_path,
        prelude="import sys; sys.modules['IPython'] = None; ",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("sandbox shell 0.1.0, Python ")
    assert "got NotebookClient" in done.stdout


# Nameko's `n`, next to `sb`, reaching a service that the same shell defines.
NAMEKO_HELPER = """\
import time
from sandbox.events import event_handler
from sandbox.rpc import rpc
class Greeter:
    name = "greeter"
    events = []
    @rpc
    def hello(self, who):
        return f"hello {{who}}"
    @event_handler("src", "greeted")
    def on_greeted(self, payload):
        Greeter.events.append(payload)

{start}print(type(n).__name__, n.__name__, n.config["AMQP_URI"] == sb_uri)
print("rpc:", n.rpc.greeter.hello("ada"))
n.dispatch_event("src", "greeted", {{"who": "bob"}})
deadline = time.monotonic() + 30
while not Greeter.events and time.monotonic() < deadline:
    time.sleep(0.05)

print("event:", Greeter.events)
n.disconnect()
"""


@pytest.mark.parametrize("console", ["ipython", "plain"])
def test_nameko_n_calls_services_and_dispatches_events(rabbit_config, tmp_path, console):
    uri = rabbit_config["AMQP_URI"]
    done = shell(
        "--broker",
        uri,
        *(["--plain"] if console == "plain" else []),
        # IPython starts a service class as it is defined; the plain console is told to.
        stdin=f"sb_uri = {uri!r}\n"
        + NAMEKO_HELPER.format(start="sb.start(Greeter)\n" if console == "plain" else ""),
        tmp_path=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "NamekoShellHelper nameko True" in done.stdout
    assert "rpc: hello ada" in done.stdout
    assert "event: [{'who': 'bob'}]" in done.stdout


@pytest.mark.parametrize("console", ["ipython", "plain"])
@pytest.mark.parametrize(
    ("stdin", "code", "ran_on"),
    [
        ('raise Exception()\nprint("ran", "on")\n', 1, False),
        ('x = 1 / 0\nprint("ran", "on")\n', 1, False),
        ('import sys; sys.exit(3)\nprint("ran", "on")\n', 3, False),
        ('1 +* 2\nprint("ran", "on")\n', 0, True),
    ],
)
def test_piped_input_stops_at_the_first_error_as_nameko_shell(
    tmp_path, console, stdin, code, ran_on
):
    done = shell(*(["--plain"] if console == "plain" else []), stdin=stdin, tmp_path=tmp_path)
    assert done.returncode == code, done.stdout + done.stderr
    assert ("ran on" in done.stdout) is ran_on


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "nowhere.yaml"], "cannot read config file nowhere.yaml"),
        (["-d", "novalue"], "--define expects KEY=VALUE"),
    ],
)
def test_config_errors_are_one_line(tmp_path, args, message):
    done = shell(*args, tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"sandbox: error: {message}")
    assert done.stderr.count("\n") == 1
