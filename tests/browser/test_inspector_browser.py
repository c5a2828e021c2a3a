"""The widgets in a real browser: JupyterLab in headless Chromium.

A notebook starts a service and shows the call form and the inspector; a click on Fire must
bring the reply as a JSON tree, a row in the inspector, and, once that row is selected, the
request and response trees. The screenshot lands in test-artifacts/inspector.png.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import requests

playwright = pytest.importorskip("playwright.sync_api", reason="pip package playwright missing")

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: scripts/ensure-chromium.sh installs it (needs apt)"
)

CELLS = [
    "%load_ext sandbox",
    "from sandbox.rpc import rpc\n\n"
    "class Greeter:\n    name = 'greeter'\n\n    @rpc\n    def hello(self, name):\n"
    "        return {'greeting': f'Hello, {name}!', 'length': len(name)}",
    "[sb.rpc.greeter.hello(name)['greeting'] for name in ('Grace', 'Linus')]",
    "form = sb.call_form()\nform.choose('greeter.hello')\nform.args_widget.value = '[\"Ada\"]'\n"
    "form",
    "sb.inspect()",
]

READY = """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; }"""

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A fresh JupyterLab on a free port, with isolated config, runtime and workspace dirs."""
    work = tmp_path_factory.mktemp("lab")
    for name in ("nb", "cfg", "rt", "ipy", "ws", "settings/@jupyterlab/apputils-extension"):
        (work / name).mkdir(parents=True)
    (work / "settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, work / "nb" / "inspector.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(work / "cfg"),
        JUPYTER_RUNTIME_DIR=str(work / "rt"),
        IPYTHONDIR=str(work / "ipy"),
        JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(work / "ws"),
    )
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
        f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work / 'nb'}", "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    log = (work / "lab.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(server, f"{base}/api/status?token={token}", work / "lab.log")
        yield f"{base}/lab/workspaces/e2e/tree/inspector.ipynb?reset&token={token}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_for_server(server: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail(f"jupyter lab did not answer within 30 s:\n{log.read_text()[-3000:]}")


def test_fire_from_the_call_form_and_inspect_the_reply(lab):
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        try:
            page.goto(lab)
            page.wait_for_function(READY, timeout=60_000)
            # Not awaited: the command resolves only when every cell has run (a hang trap).
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            fire = page.locator("button.jupyter-button:has-text('Fire')")
            fire.wait_for(timeout=60_000)
            rows = page.locator(".sandbox-rows select")
            rows.wait_for(timeout=30_000)
            fire.click()

            form = page.locator(".widget-vbox", has=fire).last
            reply = form.locator(".jp-RenderedJSON")
            reply.wait_for(timeout=20_000)
            assert "Hello, Ada!" in reply.inner_text()

            # Grace's, Linus's, then Ada's call from the form: the newest is listed first.
            rows.locator("option").nth(2).wait_for(state="attached", timeout=20_000)
            row = rows.locator("option").first
            assert "RPC" in row.inner_text() and "greeter.hello" in row.inner_text()
            rows.select_option(row.get_attribute("value"))
            detail = page.locator(".widget-output .jp-RenderedJSON", has_text="request")
            detail.first.wait_for(timeout=20_000)
            trees = page.locator(".widget-output .jp-RenderedJSON").all_inner_texts()
            assert any("Ada" in t and "request" in t for t in trees)
            assert any("Hello, Ada!" in t and "response" in t for t in trees)

            inspector = page.locator(".jp-OutputArea-output", has=rows)
            inspector.screenshot(path=str(ARTIFACTS / "inspector.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "inspector-failure.png"))
            raise
        finally:
            browser.close()
