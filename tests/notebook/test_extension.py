"""The notebook extension in a real kernel: hot start, reload, errors, magics, unload."""

import textwrap

TICKER = """
from sandbox.timer import timer
from sandbox.testing.services import dummy

class Ticker:
    name = "ticker"

    @dummy
    def version(self):
        return {version!r}

    @timer(interval=3600)
    def tick(self):
        pass
"""


def define(kernel, source, **kwargs):
    return kernel.run(textwrap.dedent(source.format(**kwargs)))


def test_load_ext_prints_one_status_line(kernel):
    result = kernel.run("%load_ext sandbox")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "broker memory:// (embedded)" in lines[0] and "HTTP on http://127.0.0.1:" in lines[0]
    assert kernel.run("print(type(sb).__name__)").stdout.strip() == "NotebookClient"


def test_defining_a_service_starts_it_and_redefining_reloads_it(sandbox_kernel):
    started = define(sandbox_kernel, TICKER, version="v1")
    assert "ticker running" in started.stdout
    assert "timer 3600s -> tick" in started.stdout
    reloaded = define(sandbox_kernel, TICKER, version="v2")
    assert "ticker reloaded" in reloaded.stdout
    check = sandbox_kernel.run(
        "from sandbox.testing.services import entrypoint_hook\n"
        "with entrypoint_hook(sb.services['ticker'].container, 'version') as v:\n"
        "    print(v())\n"
        "print(len(sb.services), sb.services['ticker'].state)"
    )
    assert check.stdout.split() == ["v2", "1", "running"]


def test_start_error_is_one_line_and_others_keep_running(sandbox_kernel):
    define(sandbox_kernel, TICKER, version="v1")
    bad = sandbox_kernel.run(
        textwrap.dedent(
            """
            from sandbox.extensions import DependencyProvider
            from sandbox.testing.services import dummy

            class Broken(DependencyProvider):
                def setup(self):
                    raise RuntimeError("database unreachable")

            class Bad:
                name = "bad"
                db = Broken()

                @dummy
                def method(self):
                    pass
            """
        )
    )
    assert bad.error is None
    assert bad.stderr.strip() == (
        "sandbox: could not start 'bad': RuntimeError: database unreachable"
    )
    # In a kernel the status is the dashboard widget; its text form is the status table.
    status = sandbox_kernel.run("%sandbox status").data[0]["text/plain"]
    assert "● ticker running" in status
    assert "✖ bad crashed: RuntimeError: database unreachable" in status


def test_stop_restart_and_autostart_off(sandbox_kernel):
    define(sandbox_kernel, TICKER, version="v1")
    assert "○ ticker stopped" in sandbox_kernel.run("%sandbox stop ticker").stdout
    assert "● ticker running" in sandbox_kernel.run("%sandbox restart ticker").stdout
    assert sandbox_kernel.run("%sandbox autostart off").stdout.strip() == "autostart off"
    quiet = define(sandbox_kernel, TICKER, version="v3")
    assert "ticker" not in quiet.stdout
    assert "● ticker reloaded" in sandbox_kernel.run("%sandbox start Ticker").stdout


def test_bad_magic_input_is_one_line(sandbox_kernel):
    for line, expected in [
        ("%sandbox frobnicate", "sandbox: unknown command 'frobnicate': try %sandbox?"),
        ("%rpc nodot", "sandbox: usage: %rpc service.method [args...]"),
        ("%http GET", "sandbox: usage: %http METHOD /path [body]"),
        ("%sandbox stop nosuch", "sandbox: KeyError: \"no service named 'nosuch' (known: none)\""),
        ("%dispatch svc", "sandbox: usage: %dispatch source_service event_type [payload]"),
        ("%sandbox autostart maybe", "sandbox: usage: %sandbox autostart on|off"),
    ]:
        result = sandbox_kernel.run(line)
        assert result.error is None
        assert result.stderr.strip() == expected


def test_interrupt_stops_the_waiting_cell_not_the_services(sandbox_kernel):
    define(sandbox_kernel, TICKER, version="v1")
    msg_id = sandbox_kernel.client.execute(
        "import eventlet\n"
        "from sandbox.runtime import get_runtime\n"
        "print('waiting', flush=True)\n"
        "get_runtime().call(eventlet.sleep, 60)"
    )
    while True:
        msg = sandbox_kernel.client.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            break
    sandbox_kernel.manager.interrupt_kernel()
    result = sandbox_kernel.collect(msg_id, timeout=30)
    assert result.error is not None and result.error["ename"] == "KeyboardInterrupt"
    after = sandbox_kernel.run(
        "from sandbox.runtime import get_runtime\n"
        "print(get_runtime().call(lambda: 'hub alive'), sb.services['ticker'].state)"
    )
    assert after.stdout.split() == ["hub", "alive", "running"]


def test_unload_stops_services_and_reload_reuses_the_hub(sandbox_kernel):
    define(sandbox_kernel, TICKER, version="v1")
    sandbox_kernel.run(
        "from sandbox.runtime import get_runtime\nhub = get_runtime().thread\n"
        "container = sb.services['ticker'].container"
    )
    sandbox_kernel.run("%unload_ext sandbox")
    gone = sandbox_kernel.run("print(container.started, 'sb' in globals())")
    assert gone.stdout.split() == ["False", "False"]
    sandbox_kernel.run("%load_ext sandbox")
    same = sandbox_kernel.run("print(get_runtime().thread is hub)")
    assert same.stdout.strip() == "True"


def test_worker_output_goes_to_the_running_cell(sandbox_kernel):
    define(
        sandbox_kernel,
        """
        from sandbox.timer import timer

        class Chatty:
            name = "chatty"

            @timer(interval=0.05)
            def tick(self):
                print("tick from the worker")
        """,
    )
    waiting = sandbox_kernel.run("import time; time.sleep(0.5)")
    assert "tick from the worker" in waiting.stdout
    sandbox_kernel.run("%sandbox stop chatty")
