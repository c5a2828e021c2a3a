"""Installs ``sandbox-nameko-alias.pth``, which sets up ``import nameko`` at interpreter start.

setuptools has no setting for a ``.pth`` file at the top of site-packages, so two commands add
it: ``build_py`` to the build of a wheel, ``editable_wheel`` to the wheel of ``pip install -e``
(which otherwise holds only setuptools' own finder). The rest of the project's metadata is in
pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = "sandbox-nameko-alias.pth"
# Sorts after setuptools' "__editable__.*.pth", whose finder makes the module importable in an
# editable install; site runs .pth files in name order.
PTH_LINE = b"import _sandbox_nameko_alias; _sandbox_nameko_alias.install()\n"


class BuildPyWithPth(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            Path(self.build_lib, PTH_NAME).write_bytes(PTH_LINE)


class EditableWheelWithPth(editable_wheel):
    # _select_strategy is setuptools' one hook for what goes into an editable wheel (since 64).
    def _select_strategy(self, name, tag, build_lib):
        return _WithPth(super()._select_strategy(name, tag, build_lib))


class _WithPth:
    """An editable-install strategy that also writes the .pth file into the wheel."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        self.strategy.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.strategy.__exit__(*exc_info)

    def __call__(self, wheel, files, mapping) -> None:
        self.strategy(wheel, files, mapping)
        wheel.writestr(PTH_NAME, PTH_LINE)


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
