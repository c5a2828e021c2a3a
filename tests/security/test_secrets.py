"""Secrets: the broker password out of the command line, and out of every message and log line.

The attacker is another local user reading ``ps`` or ``/proc/PID/cmdline``, or anyone reading
the logs and error output of ``sandbox run``, ``sandbox shell`` and ``sandbox show-config``.
"""

import contextlib
import hashlib
import io
import json
import logging
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sandbox.cli.main import main
from sandbox.standalone.rpc import ClusterRpcProxy
from sandbox.testing.utils import find_free_port
from sandbox.utils import REDACTED, sanitize_url
from sandbox.utils.masking import mask_log_records, uri_problem

# Its environment's variable names, by RPC and by HTTP.
SERVICE = """
import os

from sandbox.rpc import rpc
from sandbox.web.handlers import http


class Target:
    name = "target"

    @rpc
    def names(self):
        return sorted(os.environ)

    @http("GET", "/environ")
    def environ(self, request):
        return " ".join(sorted(os.environ))
"""

# Markers that cannot appear by chance: any piece of a password that leaks holds one of them.
START, END = "Q7kx", "W9jz"
# Characters that URIs reserve, that YAML or shells treat specially, and beyond ASCII.
TRICKY = list(";@/#%?:[]'\"\\ \t=&+$!*,{}~`é€ß中\u00a0\u2028") + ["%3B", "%40", "%2F", "%25"]
FAIL_FAST = "TRANSPORT_OPTIONS=" + json.dumps({"max_retries": 1, "interval_start": 0})
HAS_PROC = Path("/proc/self/cmdline").exists()
# A password holding ";SCHEME://" reads as the next URI of a failover list, to kombu as to us.
FAILOVER = "://"


def passwords(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Passwords of tricky characters, the markers inside; some start with digits, which a
    URI parser that splits the password reads as a port."""
    core = st.lists(st.one_of(st.sampled_from(TRICKY), alphabet), max_size=12).map("".join)
    prefix = st.text(alphabet="0123456789;/#?", max_size=3)
    return st.builds(lambda p, a, b: f"{p}{START}{a}{END}{b}", prefix, core, core)


# Every character but surrogates (not text) and NUL (no command line can hold it).
ANY_CHARACTER = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


def amqp_uri(password: str, encode: bool, port: int = 5672) -> str:
    written = urllib.parse.quote(password, safe="") if encode else password
    return f"amqp://sandbox:{written}@127.0.0.1:{port}/"


def assert_hidden(password: str, *texts: str) -> None:
    for text in texts:
        for secret in (START, END, password, urllib.parse.quote(password, safe="")):
            assert secret not in text, text


def run_main(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


# --- a password on the command line ---------------------------------------------------------


@pytest.fixture
def hostile_broker(rabbit_config, request):
    """``(uri, password)``: the test's broker reached with a password full of characters a
    URI reserves (percent-encoded), a RabbitMQ user of its own on RabbitMQ."""
    password = f"{START};@/#%'\" é{uuid.uuid4().hex[:6]}{END}"
    quoted = urllib.parse.quote(password, safe="")
    uri = rabbit_config["AMQP_URI"]
    if uri.startswith("memory"):  # no credentials to check, but parsed all the same
        yield f"memory://sandbox:{quoted}@/{rabbit_config['vhost']}", password
        return
    manager = request.getfixturevalue("rabbit_manager")
    user = f"sandbox-secrets-{uuid.uuid4().hex[:8]}"
    manager.create_user(user, password)
    manager.set_vhost_permissions(rabbit_config["vhost"], user, ".*", ".*", ".*")
    parts = urllib.parse.urlsplit(uri)
    yield parts._replace(netloc=f"{user}:{quoted}@{parts.hostname}:{parts.port}").geturl(), password
    manager.delete_user(user)


def start_target(cli, *args, env=None):
    port = find_free_port()
    process = cli(
        "run",
        "target",
        *args,
        "-d",
        f"WEB_SERVER_ADDRESS=127.0.0.1:{port}",
        modules={"target": SERVICE},
        env=env,
    )
    process.wait_for_line("started service")
    return process, f"http://127.0.0.1:{port}"


def assert_serves(uri: str, base_url: str) -> None:
    names = requests.get(f"{base_url}/environ", timeout=10).text.split()
    if uri.startswith("amqp"):  # the password worked: the test reaches the same broker
        with ClusterRpcProxy({"AMQP_URI": uri}, timeout=10) as cluster:
            assert cluster.target.names() == names


@pytest.mark.skipif(not HAS_PROC, reason="reads /proc/PID/cmdline")
def test_a_password_given_with_broker_is_masked_in_the_process_command_line(cli, hostile_broker):
    uri, password = hostile_broker
    process, base_url = start_target(cli, "--broker", uri)
    cmdline = Path(f"/proc/{process.proc.pid}/cmdline").read_bytes().decode().split("\0")
    assert sanitize_url(uri) in cmdline
    assert_hidden(password, *cmdline)
    assert_serves(uri, base_url)
    process.proc.terminate()
    code, stderr = process.finish()
    assert code == 0
    assert "use --broker-file or $SANDBOX_AMQP_URI instead" in stderr
    assert_hidden(password, stderr)


@pytest.mark.skipif(not HAS_PROC, reason="reads /proc/PID/cmdline")
def test_a_password_in_a_define_is_masked_too_and_not_passed_on_to_children(cli):
    uri = f"memory://sandbox:{START}{END}@/"
    process, base_url = start_target(cli, "-d", f"AMQP_URI={uri}")
    cmdline = Path(f"/proc/{process.proc.pid}/cmdline").read_bytes().decode()
    assert f"AMQP_URI={sanitize_url(uri)}" in cmdline.split("\0")
    assert_hidden(f"{START}{END}", cmdline)
    # The variable that carried it is gone from os.environ, of which children's are made.
    names = requests.get(f"{base_url}/environ", timeout=10).text.split()
    assert "PATH" in names
    assert "SANDBOX_HIDDEN_ARGS" not in names
    process.proc.terminate()
    assert process.finish()[0] == 0


def test_a_broker_file_keeps_the_password_off_the_command_line(cli, hostile_broker, tmp_path):
    uri, password = hostile_broker
    secret_file = tmp_path / "broker"
    secret_file.write_text(f"{uri}\nignored second line\n")
    secret_file.chmod(0o600)
    process, base_url = start_target(cli, "--broker-file", str(secret_file))
    assert_serves(uri, base_url)
    process.proc.terminate()
    code, stderr = process.finish()
    assert code == 0
    assert "warning" not in stderr
    assert f"broker {sanitize_url(uri)}" in stderr
    assert_hidden(password, stderr)


def test_the_environment_variable_gives_the_broker(cli, hostile_broker):
    uri, password = hostile_broker
    process, base_url = start_target(cli, env={"SANDBOX_AMQP_URI": uri})
    assert_serves(uri, base_url)
    process.proc.terminate()
    code, stderr = process.finish()
    assert code == 0
    assert "warning" not in stderr
    assert_hidden(password, stderr)


def test_shell_and_show_config_read_the_broker_file(cli, tmp_path):
    uri = amqp_uri(f"{START}@{END}", encode=False)
    (tmp_path / "broker").write_text(uri)
    (tmp_path / "broker").chmod(0o600)
    digest = hashlib.sha256(uri.encode()).hexdigest()
    check = (
        "import hashlib, sys; from sandbox.config import config; "
        f"sys.exit(0 if hashlib.sha256(config['AMQP_URI'].encode()).hexdigest() == {digest!r} "
        "else 3)"
    )
    shell = cli("shell", "--plain", "--broker-file", "broker", "--command", check)
    assert shell.finish()[0] == 0
    show = cli("show-config", "--broker-file", "broker")
    code, stderr = show.finish()
    stdout = show.proc.stdout.read()
    assert code == 0
    assert f"AMQP_URI: amqp://sandbox:{REDACTED}@127.0.0.1:5672/" in stdout
    assert_hidden(f"{START}@{END}", stdout, stderr)


def test_a_broker_file_readable_by_others_is_used_with_a_warning(tmp_path):
    secret_file = tmp_path / "broker"
    secret_file.write_text("memory://")
    secret_file.chmod(0o644)
    code, output = run_main("show-config", "--broker-file", str(secret_file))
    assert code == 0
    assert f"--broker-file {secret_file} is readable by every local user: chmod o-r it" in output


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read --broker-file {}: No such file"), ("\n", "the first line is empty")],
)
def test_a_broker_file_that_cannot_give_a_uri_is_a_one_line_error(tmp_path, content, message):
    secret_file = tmp_path / "broker"
    if content is not None:
        secret_file.write_text(content)
    code, output = run_main("show-config", "--broker-file", str(secret_file))
    assert code == 2
    assert output.count("\n") == 1
    assert message.format(secret_file) in output


def test_broker_and_broker_file_exclude_each_other(tmp_path):
    code, output = run_main("show-config", "--broker", "memory://", "--broker-file", "x")
    assert code == 2
    assert "not allowed with argument" in output


def test_broker_precedence(tmp_path, monkeypatch):
    (tmp_path / "config.yaml").write_text("AMQP_URI: memory:///from-file\n")
    config = str(tmp_path / "config.yaml")
    monkeypatch.setenv("SANDBOX_AMQP_URI", "memory:///from-env")
    assert "memory:///from-env" in run_main("show-config", "-c", config)[1]
    flag = run_main("show-config", "-c", config, "--broker", "memory:///from-flag")
    assert "memory:///from-flag" in flag[1]
    defined = run_main("show-config", "--broker", "memory:///x", "-d", "AMQP_URI=memory:///defined")
    assert "memory:///defined" in defined[1]


@pytest.mark.parametrize("password", [f"{START}: {{{END}", f"{START}: {END}", f"{START} {END}"])
def test_a_password_from_the_environment_is_not_shown_when_the_config_is_wrong(
    tmp_path, monkeypatch, password
):
    # YAML reads the substituted value: an error, a mapping or a URI holding a space.
    (tmp_path / "config.yaml").write_text("AMQP_URI: amqp://sandbox:${SB_PASSWORD}@host/\n")
    monkeypatch.setenv("SB_PASSWORD", password)
    code, output = run_main("show-config", "-c", str(tmp_path / "config.yaml"))
    assert code == 2
    assert output.count("\n") == 1
    assert_hidden(password, output)


# --- no message shows a password, whatever it holds -----------------------------------------


@settings(max_examples=300, deadline=None)
@given(password=passwords(ANY_CHARACTER), encode=st.booleans())
def test_show_config_never_shows_the_password(password, encode):
    assume(FAILOVER not in password)
    code, output = run_main("show-config", "--broker", amqp_uri(password, encode))
    assert_hidden(password, output)
    if encode:  # always a valid URI: shown masked
        assert code == 0
        assert f"amqp://sandbox:{REDACTED}@127.0.0.1:5672/" in output
    else:  # masked, or refused in one line that does not quote it
        assert code == 0 or (code == 2 and output.count("\n") <= 2)


@settings(max_examples=300, deadline=None)
@given(password=passwords(ANY_CHARACTER), encode=st.booleans(), invalid_yaml=st.booleans())
def test_define_errors_never_show_the_password(password, encode, invalid_yaml):
    assume(FAILOVER not in password)
    # "@" cannot start a YAML value; else YAML may cut the value at " #" or make it a mapping
    # at ": ": the error names the key, never the value.
    prefix = "@" if invalid_yaml else ""
    code, output = run_main("show-config", "-d", f"AMQP_URI={prefix}{amqp_uri(password, encode)}")
    assert_hidden(password, output)
    if invalid_yaml:
        assert code == 2
        assert output.startswith("sandbox: error: --define AMQP_URI: the value is not valid YAML")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(password=passwords(ANY_CHARACTER), encode=st.booleans())
def test_log_lines_and_tracebacks_never_show_the_password(password, encode):
    assume(FAILOVER not in password)
    uri = amqp_uri(password, encode)
    assume(uri_problem(uri) is None)  # the command line refuses the others
    mask_log_records()
    logger = logging.getLogger(f"test.secrets.{uuid.uuid4().hex}")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("cannot connect to %s, retrying", uri)
        logger.warning(f"in the message itself: {uri}; and {uri}")
        try:
            raise ConnectionError(f"refused: {uri!r}")
        except ConnectionError:
            logger.exception("failed")
        logger.info("here", stack_info=True, extra={"uri": "ignored"})
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().count(REDACTED) >= 4
    assert_hidden(password, stream.getvalue())


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    password=passwords(st.characters(min_codepoint=33, max_codepoint=0x2FF)), encode=st.booleans()
)
# Found by the search once: a raw '?' made the rest a query, whose keys kombu quoted back.
@example(password=f"?{START}{END}=", encode=False)
def test_sandbox_run_never_shows_the_password_when_the_broker_refuses(cli, password, encode):
    assume(FAILOVER not in password)
    uri = amqp_uri(password, encode, port=find_free_port())
    process = cli("run", "target", "--broker", uri, "-d", FAIL_FAST, modules={"target": SERVICE})
    code, stderr = process.finish(timeout=60)
    stdout = process.proc.stdout.read()
    assert code == 2
    assert "cannot start services" in stderr or "sandbox: error: AMQP_URI" in stderr
    assert_hidden(password, stderr, stdout)
