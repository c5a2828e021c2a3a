"""Plain terminal IPython (no kernel, no widgets): the extension works and shows text."""

import subprocess
import sys
from pathlib import Path

SESSION = """\
%load_ext sandbox
from sandbox.rpc import rpc
class Greeter:
    name = "greeter"
    @rpc
    def hello(self, who):
        return f"Hello, {who}!"

print(sb.rpc.greeter.hello("terminal"))
%rpc greeter.hello "magic"
%sandbox status
"""


def test_terminal_ipython_session(tmp_path):
    ipython = Path(sys.executable).with_name("ipython")
    done = subprocess.run(
        [str(ipython), "--no-banner", "--simple-prompt", "--HistoryManager.enabled=False"],
        input=SESSION,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "IPYTHONDIR": str(tmp_path / "ipython")},
    )
    assert "broker memory:// (embedded)" in done.stdout
    assert "● greeter running: rpc hello" in done.stdout
    assert "Hello, terminal!" in done.stdout
    assert "Out[5]: 'Hello, magic!'" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
