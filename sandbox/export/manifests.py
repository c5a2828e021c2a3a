"""Deployment files for an exported module: a Dockerfile, compose.yaml and Kubernetes manifests.

The module and its ``config.yaml`` are read, never imported: the services are the classes with
a str ``name`` and a decorated method, HTTP is served when one decorator is an ``http`` call,
and the distributions to install are those that provide the module's third-party imports here.
Values come from the environment as the exported config expects: ``AMQP_URI`` (which holds the
broker's password, so a Secret in Kubernetes), ``WEB_SERVER_ADDRESS``, and every other
``${NAME}`` of the config, read from the same Secret and never written in.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox.export.analysis import dotted_name
from sandbox.probes import DEFAULT_PATHS, HEALTHZ_PATH_CONFIG_KEY, READYZ_PATH_CONFIG_KEY

PYTHON_IMAGE = "python:3.12-slim"
RABBITMQ_IMAGE = "rabbitmq:3-management"
DEFAULT_REPLICAS = 2
DEFAULT_PORT = 8000
# What the framework itself brings: the image installs it, so the module need not list it.
_PROVIDED = frozenset({"sandbox", "nameko", "eventlet", "kombu", "werkzeug", "yaml"})
_PLACEHOLDER = re.compile(r"\$\{(?P<name>[^{}:\s]+)(?P<default>:)?")
_PORT = re.compile(r":(\d+)\}*$")


class ManifestError(Exception):
    """The module cannot be described for a deployment (not Python, no service)."""


@dataclass
class Deployable:
    """What the manifests say about one module: its name, files, services and environment."""

    module: str
    config_text: str
    services: list[str]
    http: bool
    requirements: list[str]
    port: int = DEFAULT_PORT
    replicas: int = DEFAULT_REPLICAS
    probes: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def app(self) -> str:
        """The module's name as Kubernetes and Compose names allow it (RFC 1123)."""
        return re.sub(r"[^a-z0-9]+", "-", self.module.lower()).strip("-") or "services"

    @property
    def secrets(self) -> dict[str, bool]:
        """The config's ``${NAME}`` read from the Secret, each with whether it has a default.

        Those only inside AMQP_URI's default are left out: the Secret sets AMQP_URI whole.
        """
        found: dict[str, bool] = {}
        for line in self.config_text.splitlines():
            key = line.partition(":")[0].strip()
            if line.lstrip().startswith("#") or key == "AMQP_URI":
                continue
            for match in _PLACEHOLDER.finditer(line):
                found.setdefault(match["name"], bool(match["default"]))
        found.pop("WEB_SERVER_ADDRESS", None)
        return found


def describe(module_path: Path, config_path: Path, replicas: int = DEFAULT_REPLICAS) -> Deployable:
    """Read the module and its config; raise ManifestError when they describe no service."""
    try:
        tree = ast.parse(module_path.read_text(encoding="utf-8"), str(module_path))
    except SyntaxError as exc:
        raise ManifestError(
            f"{module_path} is not valid Python: {exc.msg} (line {exc.lineno})"
        ) from None
    services, http = _services(tree)
    if not services:
        raise ManifestError(f"no service classes in {module_path}")
    config_text = config_path.read_text(encoding="utf-8")
    settings = yaml.safe_load(config_text) or {}
    requirements, warnings = _requirements(tree, module_path.parent)
    deployable = Deployable(
        module_path.stem, config_text, services, http, requirements, replicas=replicas
    )
    deployable.port = _port(settings.get("WEB_SERVER_ADDRESS"))
    deployable.probes, probe_warnings = _probes(settings)
    deployable.warnings = warnings + probe_warnings
    return deployable


def _probes(settings: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The paths ``sandbox run`` serves the probes on, as the config moves them; a probe the
    config turns off is left out, with a warning."""
    probes, warnings = {}, []
    for probe, key in (
        ("liveness", HEALTHZ_PATH_CONFIG_KEY),
        ("readiness", READYZ_PATH_CONFIG_KEY),
    ):
        path = settings.get(key, DEFAULT_PATHS[key])
        if path:
            probes[probe] = str(path)
        else:
            warnings.append(f"{key} is off in the config: the Deployment has no {probe} probe")
    return probes, warnings


def _services(tree: ast.Module) -> tuple[list[str], bool]:
    names, http = [], False
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        name = next((v for t, v in _assignments(node) if t == "name"), None)
        decorators = [d for f in node.body if _is_function(f) for d in f.decorator_list]
        if isinstance(name, str) and decorators:
            names.append(name)
            http = http or any(_is_http(d) for d in decorators)
    return names, http


def _assignments(node: ast.ClassDef) -> list[tuple[str, Any]]:
    pairs = []
    for statement in node.body:
        if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant):
            targets = [t.id for t in statement.targets if isinstance(t, ast.Name)]
            pairs.extend((target, statement.value.value) for target in targets)
    return pairs


def _is_function(node: ast.stmt) -> bool:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)


def _is_http(decorator: ast.expr) -> bool:
    func = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (dotted_name(func) or "").rpartition(".")[2] == "http"


def _requirements(tree: ast.Module, directory: Path) -> tuple[list[str], list[str]]:
    """Pinned distributions for the module's third-party imports, and warnings for the rest."""
    tops = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            tops.add(node.module.partition(".")[0])
    distributions = importlib.metadata.packages_distributions()
    pinned, warnings = set(), []
    for top in sorted(tops - _PROVIDED - set(sys.stdlib_module_names) - {"__future__"}):
        if (directory / f"{top}.py").exists() or (directory / top).is_dir():
            warnings.append(f"{top} is a local module: add it to the Dockerfile's COPY line")
        elif top in distributions:
            pinned.update(_pin(name) for name in distributions[top])
        else:
            warnings.append(f"{top} is not installed here: add its distribution to the Dockerfile")
    return sorted(pinned), warnings


def _pin(distribution: str) -> str:
    return f"{distribution}=={importlib.metadata.version(distribution)}"


def _port(address: Any) -> int:
    """The port of a WEB_SERVER_ADDRESS, the default of ``${WEB_SERVER_ADDRESS:host:port}``."""
    match = _PORT.search(str(address or ""))
    port = int(match[1]) if match else 0
    return port or DEFAULT_PORT


# --- the files -------------------------------------------------------------------------------


def render(deployable: Deployable, sandbox_requirement: str) -> dict[str, str]:
    """The files, by path relative to the output directory."""
    files = {
        "Dockerfile": dockerfile(deployable, sandbox_requirement),
        "compose.yaml": compose(deployable),
        "k8s/configmap.yaml": _yaml(configmap(deployable)),
        "k8s/deployment.yaml": _secret_note(deployable) + _yaml(deployment(deployable)),
    }
    if deployable.http:
        files["k8s/service.yaml"] = _yaml(service(deployable))
    return files


def dockerfile(deployable: Deployable, sandbox_requirement: str) -> str:
    packages = " ".join(f'"{r}"' for r in [sandbox_requirement, *deployable.requirements])
    liveness = deployable.probes.get("liveness")
    health = (
        'HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('
        f"'http://127.0.0.1:{deployable.port}{liveness}', timeout=5)\"\n"
        if liveness
        else ""
    )
    return (
        f"# The {deployable.module} services ({', '.join(deployable.services)}), "
        "as written by `sandbox manifests`.\n"
        f"FROM {PYTHON_IMAGE}\n"
        "ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1\n"
        f"RUN pip install {packages} && useradd --create-home sandbox\n"
        "WORKDIR /app\n"
        f"COPY {deployable.module}.py config.yaml ./\n"
        "USER sandbox\n"
        f"EXPOSE {deployable.port}\n"
        f"{health}"
        f'CMD ["sandbox", "run", "{deployable.module}", "--config", "config.yaml"]\n'
    )


def compose(deployable: Deployable) -> str:
    app = deployable.app
    environment = [
        "AMQP_URI=${AMQP_URI:-amqp://guest:guest@rabbitmq:5672/}",
        f"WEB_SERVER_ADDRESS=0.0.0.0:{deployable.port}",
        *sorted(deployable.secrets),  # passed on from the environment compose runs in
    ]
    service: dict[str, Any] = {
        "build": ".",
        "environment": environment,
        "depends_on": {"rabbitmq": {"condition": "service_healthy"}},
        "restart": "unless-stopped",
        "stop_grace_period": "40s",
        "deploy": {"replicas": deployable.replicas},
    }
    if deployable.http:
        # A range: each replica publishes one port of it.
        last = deployable.port + deployable.replicas - 1
        service["ports"] = [f"{deployable.port}-{last}:{deployable.port}"]
    rabbitmq = {
        "image": RABBITMQ_IMAGE,
        "ports": ["5672:5672", "15672:15672"],
        "healthcheck": {
            "test": ["CMD", "rabbitmq-diagnostics", "-q", "ping"],
            "interval": "10s",
            "timeout": "5s",
            "retries": 10,
        },
    }
    header = (
        f"# RabbitMQ and {deployable.replicas} replicas of {deployable.module} "
        "(`docker compose up --build`).\n"
    )
    return header + _yaml({"services": {"rabbitmq": rabbitmq, app: service}})


def _metadata(deployable: Deployable, name: str) -> dict[str, Any]:
    return {"name": name, "labels": {"app.kubernetes.io/name": deployable.app}}


def configmap(deployable: Deployable) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(deployable, f"{deployable.app}-config"),
        "data": {"config.yaml": deployable.config_text},
    }


def deployment(deployable: Deployable) -> dict[str, Any]:
    app = deployable.app
    labels = {"app.kubernetes.io/name": app}
    secret = f"{app}-secrets"
    env: list[dict[str, Any]] = [
        {"name": "AMQP_URI", "valueFrom": {"secretKeyRef": {"name": secret, "key": "AMQP_URI"}}},
        {"name": "WEB_SERVER_ADDRESS", "value": f"0.0.0.0:{deployable.port}"},
    ]
    for name, has_default in sorted(deployable.secrets.items()):
        reference = {"name": secret, "key": name, "optional": has_default}
        env.append({"name": name, "valueFrom": {"secretKeyRef": reference}})
    container = {
        "name": app,
        "image": f"{app}:latest",
        "ports": [{"name": "http", "containerPort": deployable.port}],
        "env": env,
        "volumeMounts": [
            {"name": "config", "mountPath": "/app/config.yaml", "subPath": "config.yaml"}
        ],
        **{
            f"{probe}Probe": _probe(path, period=10 if probe == "liveness" else 5)
            for probe, path in deployable.probes.items()
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(deployable, app),
        "spec": {
            "replicas": deployable.replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # SIGTERM drains the workers in flight: give them time before SIGKILL.
                    "terminationGracePeriodSeconds": 40,
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": f"{app}-config"}}],
                },
            },
        },
    }


def _probe(path: str, period: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def service(deployable: Deployable) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(deployable, deployable.app),
        "spec": {
            "selector": {"app.kubernetes.io/name": deployable.app},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def _secret_note(deployable: Deployable) -> str:
    literals = " ".join(
        f"--from-literal={name}=..." for name in ["AMQP_URI", *sorted(deployable.secrets)]
    )
    return (
        f"# Reads the Secret {deployable.app}-secrets, which is not written here; create it with\n"
        f"#   kubectl create secret generic {deployable.app}-secrets {literals}\n"
        "# (AMQP_URI=amqp://user:password@rabbitmq-host:5672/vhost).\n"
        f"# The image: docker build -t {deployable.app}:latest . (then push it where the cluster "
        "pulls from).\n"
    )


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the ConfigMap's config.yaml) as literal blocks, as a person writes;
    a value used twice written twice, not as a YAML alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def _yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False)


def write_deployment(
    module: Path, config: Path, directory: Path, replicas: int = DEFAULT_REPLICAS
) -> tuple[list[Path], list[str]]:
    """Write the manifests to ``directory``, and copy the module and its config there (the
    image's build context); return the paths written and the warnings.

    Raises ManifestError for a module without services, OSError when a file cannot be written.
    """
    from sandbox.cli.main import version

    deployable = describe(module, config, replicas)
    written = []
    for relative, text in render(deployable, f"service-sandbox=={version()}").items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for source, name in ((module, module.name), (config, "config.yaml")):
        target = directory / name
        if not target.exists() or not target.samefile(source):
            shutil.copyfile(source, target)
    return written, deployable.warnings
