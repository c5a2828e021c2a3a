"""`%sandbox export` and `sb.export` in a live kernel: the cells run so far, the kernel's config."""

import signal
import socket
import textwrap

HELPERS = """
import logging
from sandbox.config import config
from sandbox.testing.services import dummy
from sandbox.timer import timer

log = logging.getLogger("ticker")
# Shown by the timer.
WORD = "tick"
config["DB_URI"] = "postgresql://app:s3cret@db/app"
"""

TICKER = """
class Ticker:
    name = "ticker"
    count = 0

    @timer(interval=0.02)
    def tick(self):
        Ticker.count += 1
        log.warning("%s #%d", WORD, Ticker.count)
"""

CALC = """
class Calc:
    name = "calc"

    @dummy
    def add(self, a, b):
        return a + b
"""


def define(kernel, *cells):
    for cell in cells:
        kernel.run(textwrap.dedent(cell))


def test_sandbox_export_writes_the_running_services(sandbox_kernel, tmp_path):
    define(sandbox_kernel, HELPERS, TICKER, CALC, "%sandbox status\nsb.services")
    result = sandbox_kernel.run("%sandbox export")
    assert result.stdout == "wrote services.py (Ticker, Calc) and config.yaml\n"
    assert result.stderr == ""
    module = (tmp_path / "services.py").read_text()
    assert module.startswith("# Services exported from the kernel's input history by sandbox")
    assert '# Shown by the timer.\nWORD = "tick"' in module
    for interactive in ("sandbox status", "sb.", "get_ipython", "load_ext", "config["):
        assert interactive not in module
    config = (tmp_path / "config.yaml").read_text()
    assert (
        "AMQP_URI: ${AMQP_URI:amqp://guest:guest@localhost:5672/}\n"
        "WEB_SERVER_ADDRESS: ${WEB_SERVER_ADDRESS:0.0.0.0:8000}\n"
    ) in config
    assert "DB_URI: postgresql://app:${DB_PASSWORD}@db/app\n" in config
    assert "s3cret" not in config


def test_sb_export_selects_services_and_reports_warnings(sandbox_kernel, tmp_path):
    define(sandbox_kernel, HELPERS, "for step in range(2):\n    pass", CALC)
    define(sandbox_kernel, CALC.replace("a + b", "a + b + step"))
    result = sandbox_kernel.run('sb.export("calc_only.py", "calc")')
    assert result.stdout == "wrote calc_only.py (Calc) and config.yaml\n"
    assert result.stderr == (
        # In[4]: the fixture ran two cells first.
        "sandbox: warning: 'step' is only set by running code (a for loop in cell 4); "
        "used by Calc\n"
    )
    assert "a + b + step" in (tmp_path / "calc_only.py").read_text()


def test_export_errors_are_one_line(sandbox_kernel):
    define(sandbox_kernel, HELPERS)
    nothing = sandbox_kernel.run("%sandbox export services.py")
    assert nothing.error is None
    assert nothing.stderr.startswith("sandbox: cannot export: no service classes in the notebook")
    define(sandbox_kernel, CALC)
    unknown = sandbox_kernel.run('sb.export("services.py", "Nope")')
    assert unknown.stderr.strip() == (
        "sandbox: cannot export: no service class 'Nope' in the notebook (services: Calc (calc))"
    )
    unwritable = sandbox_kernel.run('sb.export("nowhere/services.py")')
    assert unwritable.error is None
    assert unwritable.stderr.startswith("sandbox: cannot export: [Errno 2] No such file")


def test_the_kernel_export_runs_with_sandbox_run(sandbox_kernel, cli, tmp_path):
    define(sandbox_kernel, HELPERS, TICKER)
    sandbox_kernel.run("%sandbox export services.py")
    # The environment picks the broker and address, as a deployment's does.
    env = {"DB_PASSWORD": "s3cret", "AMQP_URI": "memory://", "WEB_SERVER_ADDRESS": "127.0.0.1:0"}
    proc = cli("run", "services", "--config", "config.yaml", env=env)
    proc.wait_for_line("started service ticker (1 entrypoint)")
    proc.wait_for_line("tick #2")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.finish()[0] == 0


def test_the_port_a_busy_kernel_fell_back_to_is_not_exported(kernel, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        kernel.run(f"from sandbox import config; config['WEB_SERVER_ADDRESS'] = '127.0.0.1:{port}'")
        loaded = kernel.run("%load_ext sandbox")
    assert f"port {port} is taken" in loaded.stderr
    define(kernel, "from sandbox.testing.services import dummy", CALC)
    kernel.run("sb.export('calc.py')\nprint(config['WEB_SERVER_ADDRESS'])")
    config = (tmp_path / "config.yaml").read_text()
    assert f"WEB_SERVER_ADDRESS: ${{WEB_SERVER_ADDRESS:0.0.0.0:{port}}}\n" in config


def test_sb_export_with_manifests_writes_the_deployment_files(sandbox_kernel, tmp_path):
    define(sandbox_kernel, HELPERS, TICKER)
    result = sandbox_kernel.run("sb.export('ticker.py', manifests=True)")
    assert result.stderr == ""
    assert result.stdout.splitlines()[1].startswith("wrote Dockerfile, compose.yaml, k8s/")
    assert (
        (tmp_path / "Dockerfile")
        .read_text()
        .endswith('CMD ["sandbox", "run", "ticker", "--config", "config.yaml"]\n')
    )
    configmap = (tmp_path / "k8s" / "configmap.yaml").read_text()
    assert "DB_URI: postgresql://app:${DB_PASSWORD}@db/app" in configmap
    assert "s3cret" not in configmap
    assert not (tmp_path / "k8s" / "service.yaml").exists()  # no @http route
