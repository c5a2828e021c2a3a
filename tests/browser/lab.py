"""JupyterLab and headless Chromium for the browser tests.

Chromium is Debian's (scripts/ensure-chromium.sh), started by playwright-core through its
``executable_path``: no browser download. Screenshots go to ``ARTIFACTS``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests

playwright = pytest.importorskip("playwright.sync_api", reason="pip package playwright missing")

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: scripts/ensure-chromium.sh installs it (needs apt)"
)

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


def jupyter_lab(work: Path, name: str, cells: list[str]) -> Iterator[str]:
    """A fresh JupyterLab on a free port, with isolated config, runtime and workspace dirs
    under ``work``, serving notebook ``name`` made of ``cells``; yields the notebook's URL."""
    for folder in ("nb", "cfg", "rt", "ipy", "ws", "settings/@jupyterlab/apputils-extension"):
        (work / folder).mkdir(parents=True)
    (work / "settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, work / "nb" / f"{name}.ipynb")
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
        yield f"{base}/lab/workspaces/e2e/tree/{name}.ipynb?reset&token={token}"
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


@contextlib.contextmanager
def notebook_page(url: str, failure: Path, height: int = 1400) -> Iterator[Any]:
    """A headless Chromium page on the notebook at ``url``, its cells started (not awaited:
    the command resolves only when every cell has run, a hang trap); a screenshot of the page
    goes to ``failure`` when the block fails."""
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": height})
        try:
            page.goto(url)
            page.wait_for_function(READY, timeout=60_000)
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            yield page
        except Exception:
            page.screenshot(path=str(failure))
            raise
        finally:
            browser.close()
