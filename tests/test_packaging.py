"""Packaging hygiene: every package sandbox imports is declared, and the conda environment files
list what pyproject.toml does (environment.yml the runtime, environment-dev.yml the tests)."""

import ast
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# Import names that differ from their distribution's name.
DISTRIBUTION_OF = {
    "yaml": "pyyaml",
    "IPython": "ipython",
    "websocket": "websocket-client",
    "opentelemetry": "opentelemetry-api",
}
# Distributions whose conda-forge package has another name.
CONDA_NAME = {"amqp": "py-amqp", "redis": "redis-py", "jupyter-client": "jupyter_client"}


def requirement_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)
    return name.lower().replace("_", "-")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared() -> set[str]:
    project = pyproject()
    names = {requirement_name(r) for r in project["dependencies"]}
    for requirements in project["optional-dependencies"].values():
        names |= {requirement_name(r) for r in requirements if not r.startswith("service-sandbox")}
    return names


def imported_top_level_names() -> set[str]:
    names = set()
    for path in (ROOT / "sandbox").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names - set(sys.stdlib_module_names) - {"sandbox", "_sandbox_nameko_alias"}


def test_every_imported_package_is_declared():
    missing = {
        name
        for name in imported_top_level_names()
        if DISTRIBUTION_OF.get(name, name).lower().replace("_", "-") not in declared()
    }
    assert not missing, f"imported by sandbox/ but not in pyproject.toml: {sorted(missing)}"


def conda_names(filename: str) -> set[str]:
    environment = yaml.safe_load((ROOT / filename).read_text())
    return {
        requirement_name(entry).replace("_", "-")
        for entry in environment["dependencies"]
        if isinstance(entry, str)
    }


def conda(requirements: list[str]) -> set[str]:
    names = {requirement_name(r) for r in requirements if not r.startswith("service-sandbox")}
    return {CONDA_NAME.get(name, name).replace("_", "-") for name in names}


def test_environment_yml_lists_the_runtime_and_notebook_dependencies():
    project = pyproject()
    wanted = conda(project["dependencies"] + project["optional-dependencies"]["notebook"])
    assert wanted - conda_names("environment.yml") == set()


def test_environment_dev_yml_lists_the_test_dependencies():
    extras = pyproject()["optional-dependencies"]
    runtime = conda_names("environment.yml")
    wanted = conda([r for name, reqs in extras.items() if name != "notebook" for r in reqs])
    assert wanted - runtime - conda_names("environment-dev.yml") == set()
