"""``import nameko`` gives sandbox's own module objects, unless the real Nameko is installed or
the alias is turned off; set up at interpreter start by the .pth file installed with sandbox."""

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from unittest import mock

import pytest

import sandbox
import sandbox.rpc
from sandbox import alias

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def python(code, *, env=None, cwd=None, executable=sys.executable):
    """Run ``code`` in a fresh interpreter of the test environment; its stdout, or fail."""
    done = subprocess.run(
        [executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_nameko_modules_are_sandbox_s_module_objects():
    import nameko
    import nameko.rpc
    from nameko.testing.services import entrypoint_hook

    import sandbox.testing.services

    assert nameko is sandbox
    assert nameko.rpc is sandbox.rpc
    assert entrypoint_hook is sandbox.testing.services.entrypoint_hook
    assert isinstance(sandbox.rpc.Rpc(), nameko.rpc.Rpc)
    # sandbox's modules are left as they are: their own names and specs.
    assert nameko.rpc.__name__ == nameko.rpc.__spec__.name == "sandbox.rpc"
    assert alias.activate() is True


def test_patching_a_nameko_path_patches_sandbox():
    with mock.patch("nameko.rpc.RpcProxy") as patched:
        assert sandbox.rpc.RpcProxy is patched
    assert sandbox.rpc.RpcProxy is not patched


@pytest.mark.parametrize("name", ["nameko.no_such_module", "nameko.testing.no_such_module"])
def test_a_module_sandbox_lacks_names_the_module_looked_for(name):
    with pytest.raises(ModuleNotFoundError) as raised:
        __import__(name)
    assert raised.value.name == name
    sandbox_name = name.replace("nameko.", "sandbox.", 1)
    assert str(raised.value) == (
        f"No module named {name!r}: nameko is sandbox here (Nameko is not installed) "
        f"and sandbox has no module {sandbox_name!r}"
    )


def test_a_module_sandbox_gains_is_found_with_no_list(tmp_path, monkeypatch):
    (tmp_path / "newly_added.py").write_text("ANSWER = 42\n")
    monkeypatch.setattr(sandbox, "__path__", [*sandbox.__path__, str(tmp_path)])
    try:
        from nameko.newly_added import ANSWER

        assert ANSWER == 42
        assert sys.modules["nameko.newly_added"] is sys.modules["sandbox.newly_added"]
    finally:
        for name in ("nameko.newly_added", "sandbox.newly_added"):
            sys.modules.pop(name, None)


def test_the_pth_file_sets_it_up_at_start_without_importing_sandbox():
    found = python(
        """
        import sys
        first = type(sys.meta_path[0]).__name__
        loaded = sorted({"sandbox", "eventlet"} & set(sys.modules))
        import nameko.extensions, sandbox.extensions
        print(first, loaded, nameko.extensions is sandbox.extensions)
        """,
        cwd="/",  # nowhere near the source tree: only what is installed
    )
    assert found.split() == ["NamekoAliasFinder", "[]", "True"]


def test_the_real_nameko_wins(tmp_path):
    (tmp_path / "nameko").mkdir()
    (tmp_path / "nameko" / "__init__.py").write_text("REAL = True\n")
    (tmp_path / "nameko" / "rpc.py").write_text("REAL = True\n")
    found = python(
        """
        import nameko, nameko.rpc
        from sandbox import alias
        print(nameko.REAL, nameko.rpc.REAL, alias.activate())
        try:
            import nameko.extensions
        except ModuleNotFoundError as exc:
            print(exc)
        """,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert found.splitlines() == ["True True False", "No module named 'nameko.extensions'"]


@pytest.mark.parametrize(
    ("env", "setup"),
    [
        ({"SANDBOX_NAMEKO_ALIAS": "0"}, ""),
        ({}, "import sandbox; sandbox.config['NAMEKO_ALIAS'] = False"),
    ],
    ids=["environment-variable", "config-key"],
)
def test_turned_off(env, setup):
    found = python(
        f"""
        {setup}
        from sandbox import alias
        print(alias.activate())
        try:
            import nameko
        except ModuleNotFoundError as exc:
            print(exc)
        """,
        env=env,
    )
    assert found.splitlines() == ["False", "No module named 'nameko'"]


# A process the .pth file did not set up: sandbox's commands set the alias up themselves.
WITHOUT_PTH = "import sys; sys.meta_path[:1] = []"


@pytest.mark.parametrize("prelude", ["", WITHOUT_PTH], ids=["pth", "without-pth"])
@pytest.mark.parametrize("plain", [[], ["--plain"]], ids=["ipython", "plain"])
def test_sandbox_shell(prelude, plain, tmp_path):
    command = "import nameko.rpc, sandbox.rpc; print(nameko.rpc is sandbox.rpc)"
    shown = python(
        f"""
        {prelude}
        from sandbox.cli.main import main
        main(["shell", *{plain!r}, "--command", {command!r}])
        """,
        cwd=tmp_path,
    )
    assert shown.splitlines()[-1] == "True"
    if not plain:
        assert "`nameko` is sandbox (Nameko is not installed)" in shown.splitlines()[0]


@pytest.mark.heavy
@pytest.mark.parametrize("editable", [False, True], ids=["wheel", "editable"])
def test_installs_put_the_pth_file_in_site_packages(tmp_path, editable):
    """A fresh venv (without sandbox's dependencies: the finder needs none) from a wheel
    build and from ``pip install -e``, each through setuptools as pip runs it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    venv_python = venv / "bin" / "python"
    source = ["-e", str(SOURCE_ROOT)] if editable else [str(wheel(tmp_path))]
    pip = [sys.executable, "-m", "pip", "--python", str(venv_python), "install", "-q"]
    subprocess.run([*pip, "--no-deps", *source], check=True, timeout=300)
    found = python(
        """
        import importlib.util, sys
        spec = importlib.util.find_spec("nameko")
        print(type(sys.meta_path[0]).__name__, spec.loader.target_name, "sandbox" in sys.modules)
        """,
        executable=venv_python,
        cwd="/",
    )
    assert found.split() == ["NamekoAliasFinder", "sandbox", "False"]


def wheel(tmp_path):
    built = tmp_path / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(built)]
    subprocess.run([*command, str(SOURCE_ROOT)], check=True, timeout=300)
    (path,) = built.glob("*.whl")
    names = zipfile.ZipFile(path).namelist()
    assert "sandbox-nameko-alias.pth" in names and "_sandbox_nameko_alias.py" in names
    return path
