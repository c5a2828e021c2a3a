"""`sandbox export NOTEBOOK.ipynb`: a module and config.yaml that `sandbox run` runs unchanged."""

import signal

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from sandbox.cli.main import main
from sandbox.config import load_config
from sandbox.testing.utils import find_free_port

SETUP = """\
%load_ext sandbox
import logging
from sandbox.testing.services import dummy, entrypoint_hook
from sandbox.timer import timer
"""

CONFIG = """\
from sandbox import config
config["AMQP_URI"] = "amqp://guest:hunter2@127.0.0.1:5672/"
config["GREETING"] = "hello"
"""

HELPERS = """\
log = logging.getLogger("ticker")
PREFIX = "tick"


def message(count):
    # The line the test waits for.
    return f"{PREFIX} #{count}"
"""

TICKER = """\
class Ticker:
    name = "ticker"
    count = 0

    @timer(interval=0.02)
    def tick(self):
        Ticker.count += 1
        log.warning(message(Ticker.count))

    @dummy
    def ping(self):
        return "pong"
"""

CALC = """\
class Calc:
    name = "calc"

    @dummy
    def add(self, a, b):
        return a + b
"""

INTERACTIVE = """\
%sandbox status
with entrypoint_hook(sb.services["calc"].container, "add") as add:
    print(add(1, 2))
"""


def write_notebook(path, *cells):
    notebook = new_notebook(cells=[new_markdown_cell("# Ticker")])
    notebook.cells += [new_code_cell(cell) for cell in cells]
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def notebook(tmp_path):
    return write_notebook(
        tmp_path / "ticker.ipynb", SETUP, CONFIG, HELPERS, TICKER, CALC, INTERACTIVE
    )


def test_export_writes_the_module_and_config_yaml(tmp_path, notebook, capsys):
    assert main(["export", str(notebook), "-o", str(tmp_path / "services.py")]) == 0
    out, err = capsys.readouterr()
    assert (
        out == f"wrote {tmp_path / 'services.py'} (Ticker, Calc) and {tmp_path / 'config.yaml'}\n"
    )
    assert err == ""
    module = (tmp_path / "services.py").read_text()
    assert module.startswith("# Services exported from ticker.ipynb by sandbox")
    assert "def message(count):\n    # The line the test waits for." in module
    assert "entrypoint_hook" not in module and "sandbox status" not in module
    config = (tmp_path / "config.yaml").read_text()
    assert "AMQP_URI: ${AMQP_URI:amqp://guest:${AMQP_PASSWORD}@127.0.0.1:5672/}\n" in config
    assert "GREETING: hello\n" in config and "hunter2" not in config


def test_service_option_and_warnings(tmp_path, notebook, capsys):
    write_notebook(notebook, SETUP, HELPERS, TICKER, CALC, "for n in range(2):\n    pass\n")
    code = main(["export", str(notebook), "-o", str(tmp_path / "calc.py"), "--service", "calc"])
    assert code == 0
    assert capsys.readouterr().err == ""
    assert "class Ticker" not in (tmp_path / "calc.py").read_text()
    needy = CALC.replace("a + b", "a + b + n")
    write_notebook(notebook, SETUP, "for n in range(2):\n    pass\n", needy)
    assert main(["export", str(notebook), "-o", str(tmp_path / "calc.py")]) == 0
    assert capsys.readouterr().err == (
        # Cell 1 is the notebook's title, in markdown.
        "sandbox: warning: 'n' is only set by running code (a for loop in cell 3); used by Calc\n"
    )


def test_two_exports_are_byte_identical(tmp_path, notebook):
    outputs = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        assert main(["export", str(notebook), "-o", str(tmp_path / name / "services.py")]) == 0
        outputs.append([(tmp_path / name / f).read_bytes() for f in ("services.py", "config.yaml")])
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["missing.ipynb"], "cannot read notebook missing.ipynb: No such file or directory"),
        ("text", ["bad.ipynb"], "bad.ipynb is not a notebook: Notebook does not appear to be JSON"),
        ("nothing", ["empty.ipynb"], "empty.ipynb: no service classes in the notebook"),
        ("ticker", ["ticker.ipynb", "-s", "nope"], "ticker.ipynb: no service class 'nope'"),
        ("ticker", ["ticker.ipynb", "-o", "nowhere/services.py"], "cannot write nowhere/"),
    ],
)
def test_errors_are_one_line(tmp_path, monkeypatch, capsys, setup, args, message):
    monkeypatch.chdir(tmp_path)
    if setup == "text":
        (tmp_path / "bad.ipynb").write_text("not json")
    elif setup == "nothing":
        write_notebook(tmp_path / "empty.ipynb", SETUP, HELPERS)
    elif setup == "ticker":
        write_notebook(tmp_path / "ticker.ipynb", SETUP, HELPERS, TICKER)
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sandbox: error: {message}") and err.count("\n") == 1


def test_sandbox_run_runs_the_export_unchanged(cli, notebook):
    exported = cli("export", notebook.name, "-o", "services.py")
    assert exported.finish()[0] == 0
    # The exported config serves on port 8000 unless $WEB_SERVER_ADDRESS says otherwise, and
    # other tests (other suites on the machine too) may hold 8000 meanwhile.
    address = f"127.0.0.1:{find_free_port()}"
    proc = cli(
        "run",
        "services",
        "--config",
        "config.yaml",
        env={"AMQP_PASSWORD": "hunter2", "WEB_SERVER_ADDRESS": address},
    )
    proc.wait_for_line("started service ticker (2 entrypoints)")
    proc.wait_for_line("started service calc (1 entrypoint)")
    proc.wait_for_line("tick #3")  # the timer, its helper chain and the constant all work
    proc.proc.send_signal(signal.SIGTERM)
    code, stderr = proc.finish()
    assert code == 0
    assert "broker amqp://guest:********@127.0.0.1:5672/" in stderr
    assert "hunter2" not in stderr


def test_the_exported_config_reads_its_secrets_from_the_environment(
    tmp_path, notebook, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert main(["export", notebook.name]) == 0
    path = tmp_path / "config.yaml"
    monkeypatch.setenv("AMQP_PASSWORD", "hunter2")
    assert load_config(path)["AMQP_URI"] == "amqp://guest:hunter2@127.0.0.1:5672/"
    # Unset, it reads as empty, as in Nameko.
    monkeypatch.delenv("AMQP_PASSWORD")
    assert load_config(path)["AMQP_URI"] == "amqp://guest:@127.0.0.1:5672/"
