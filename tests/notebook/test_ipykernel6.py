"""The extension on ipykernel 6, whose output routing differs from 7's."""

import subprocess
import textwrap
from pathlib import Path

import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kernel6_python():
    try:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "ipykernel6-venv.sh")],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("creating the ipykernel 6 venv took over 5 minutes")
    if done.returncode != 0:
        pytest.skip(f"cannot create the ipykernel 6 venv: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def test_services_and_output_routing_on_ipykernel_6(kernel6_python, tmp_path):
    manager = KernelManager()
    manager._kernel_spec = KernelSpec(
        argv=[kernel6_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name="sandbox ipykernel 6",
        language="python",
    )
    manager.start_kernel(cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)

        def run(code):
            shown = []
            reply = client.execute_interactive(
                textwrap.dedent(code),
                timeout=60,
                output_hook=lambda msg: shown.append(msg["content"]),
            )
            text = "".join(
                c.get("text", "") or c.get("data", {}).get("text/plain", "") for c in shown
            )
            return reply["content"]["status"], text

        assert run("import ipykernel; print(ipykernel.version_info[0])") == ("ok", "6\n")
        run("from sandbox.config import config; config['WEB_SERVER_ADDRESS'] = '127.0.0.1:0'")
        assert run("%load_ext sandbox")[0] == "ok"
        started = run(
            """
            from sandbox.rpc import rpc

            class Greeter:
                name = "greeter"

                @rpc
                def hello(self, who):
                    print("worker prints", who)
                    return f"Hello, {who}!"
            """
        )
        assert started == ("ok", "● greeter running: rpc hello\n")
        # The worker's print reaches the cell that called it, before the cell's own output.
        assert run('print(sb.rpc.greeter.hello("Ada"))') == (
            "ok",
            "worker prints Ada\nHello, Ada!\n",
        )
        assert run('%rpc greeter.hello "magic"') == ("ok", "worker prints magic\n'Hello, magic!'")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
