"""`sandbox manifests`: the files validate against Kubernetes' and Compose's schemas, say what
the module needs, and hold no secret."""

import importlib.resources
import json
import signal

import jsonschema
import kubernetes_validate
import pytest
import requests
import yaml
from polling import wait_until

from sandbox.cli.main import main
from sandbox.testing.utils import find_free_port

SHOP = """
import requests

from sandbox.rpc import rpc
from sandbox.web.handlers import http


class Shop:
    name = "shop"

    @rpc
    def quote(self, item):
        return 1

    @http("GET", "/price/<item>")
    def price(self, request, item):
        return str(self.quote(item))


class Helper:
    name = "not a service: no entrypoint"
"""

LEDGER = """
from sandbox.events import event_handler


class Ledger:
    name = "ledger"

    @event_handler("shop", "sold")
    def record(self, sale):
        pass
"""

# As `sb.export` writes it: the environment first, secrets as placeholders.
CONFIG = """\
# Config for shop.py.
# Secrets are read from the environment: set AMQP_PASSWORD, API_TOKEN.
AMQP_URI: ${AMQP_URI:amqp://guest:${AMQP_PASSWORD}@127.0.0.1:5672/}
WEB_SERVER_ADDRESS: ${WEB_SERVER_ADDRESS:0.0.0.0:8123}
API_TOKEN: ${API_TOKEN}
REGION: ${REGION:eu}
max_workers: 4
"""


def compose_schema() -> dict:
    # The Makefile installs docker-compose 1.x without its dependencies for this file.
    path = importlib.resources.files("compose") / "config" / "compose_spec.json"
    return json.loads(path.read_text())


def compose_errors(document: dict) -> list[str]:
    # The schema names draft 2019-09 with a trailing "#", which jsonschema does not recognise.
    validator = jsonschema.Draft201909Validator(compose_schema())
    return [error.message for error in validator.iter_errors(document)]


def kubernetes_errors(document: dict) -> list[str]:
    try:
        kubernetes_validate.validate(document, "1.30.0", strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [exc.message]
    return []


@pytest.fixture
def shop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shop.py").write_text(SHOP)
    (tmp_path / "config.yaml").write_text(CONFIG)
    return tmp_path


def written(directory):
    return {
        str(path.relative_to(directory)): path.read_text()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_manifests_validate_and_describe_the_module(shop, capsys):
    assert main(["manifests", "shop", "-o", "deploy", "--replicas", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("wrote deploy/Dockerfile, deploy/compose.yaml, deploy/k8s/")
    assert err == ""
    files = written(shop / "deploy")
    assert sorted(files) == [
        "Dockerfile",
        "compose.yaml",
        "config.yaml",
        "k8s/configmap.yaml",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "shop.py",
    ]
    assert files["shop.py"] == SHOP and files["config.yaml"] == CONFIG
    for name in ("configmap", "deployment", "service"):
        assert kubernetes_errors(yaml.safe_load(files[f"k8s/{name}.yaml"])) == []
    compose = yaml.safe_load(files["compose.yaml"])
    assert compose_errors(compose) == []

    dockerfile = files["Dockerfile"].splitlines()
    assert "FROM python:3.12-slim" in dockerfile
    requests_version = __import__("requests").__version__
    assert (
        f'RUN pip install "service-sandbox==0.1.0" "requests=={requests_version}"'
        in (files["Dockerfile"])
    )
    assert "COPY shop.py config.yaml ./" in dockerfile and "EXPOSE 8123" in dockerfile
    assert dockerfile[-1] == 'CMD ["sandbox", "run", "shop", "--config", "config.yaml"]'

    app = compose["services"]["shop"]
    assert compose["services"]["rabbitmq"]["image"].startswith("rabbitmq:3")
    assert app["deploy"]["replicas"] == 3 and app["ports"] == ["8123-8125:8123"]
    assert app["depends_on"] == {"rabbitmq": {"condition": "service_healthy"}}
    assert app["environment"] == [
        "AMQP_URI=${AMQP_URI:-amqp://guest:guest@rabbitmq:5672/}",
        "WEB_SERVER_ADDRESS=0.0.0.0:8123",
        "API_TOKEN",
        "REGION",
    ]

    configmap = yaml.safe_load(files["k8s/configmap.yaml"])
    assert configmap["data"] == {"config.yaml": CONFIG}
    deployment = yaml.safe_load(files["k8s/deployment.yaml"])
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8123}]
    assert set(container["resources"]) == {"requests", "limits"}
    assert pod["volumes"] == [{"name": "config", "configMap": {"name": "shop-config"}}]
    env = {entry["name"]: entry for entry in container["env"]}
    assert sorted(env) == ["AMQP_URI", "API_TOKEN", "REGION", "WEB_SERVER_ADDRESS"]
    assert env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "shop-secrets",
        "key": "API_TOKEN",
        "optional": False,  # no default in config.yaml
    }
    assert env["REGION"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert "kind: Secret" not in "".join(files.values())
    service = yaml.safe_load(files["k8s/service.yaml"])
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


def test_the_validators_refuse_broken_files(shop):
    # The checks above could fail: the same validators reject a wrong field.
    assert main(["manifests", "shop", "-o", "deploy"]) == 0
    deployment = yaml.safe_load((shop / "deploy/k8s/deployment.yaml").read_text())
    deployment["spec"]["replicas"] = "two"
    assert kubernetes_errors(deployment) != []
    compose = yaml.safe_load((shop / "deploy/compose.yaml").read_text())
    compose["services"]["shop"]["deploy"]["replicas"] = "two"
    assert compose_errors(compose) != []


def test_a_module_without_http_gets_no_service_and_no_published_port(shop, capsys):
    (shop / "ledger.py").write_text(LEDGER)
    (shop / "config.yaml").write_text("AMQP_URI: ${AMQP_URI:amqp://guest:guest@localhost:5672/}\n")
    assert main(["manifests", "ledger", "-o", str(shop / "out")]) == 0
    files = written(shop / "out")
    assert "k8s/service.yaml" not in files
    compose = yaml.safe_load(files["compose.yaml"])
    assert "ports" not in compose["services"]["ledger"] and compose_errors(compose) == []
    assert "EXPOSE 8000" in files["Dockerfile"]  # the probes are served all the same


def test_imports_the_image_may_miss_are_warned(shop, capsys):
    (shop / "helpers.py").write_text("X = 1\n")
    source = "import helpers\nimport not_installed_anywhere\n" + LEDGER
    (shop / "ledger.py").write_text(source)
    assert main(["manifests", "ledger.py", "-o", "out"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "sandbox: warning: helpers is a local module: add it to the Dockerfile's COPY line",
        "sandbox: warning: not_installed_anywhere is not installed here: "
        "add its distribution to the Dockerfile",
    ]


@pytest.mark.parametrize(
    "source, args, message",
    [
        (SHOP, ["missing"], "missing.py not found (sandbox export writes both)"),
        (SHOP, ["shop", "-c", "nope.yaml"], "nope.yaml not found"),
        ("VALUE = 1\n", ["shop"], "no service classes in shop.py"),
        ("def broken(:\n", ["shop"], "shop.py is not valid Python: invalid syntax (line 1)"),
    ],
)
def test_errors_are_one_line(shop, capsys, source, args, message):
    (shop / "shop.py").write_text(source)
    assert main(["manifests", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sandbox: error: {message}") and err.count("\n") == 1


def test_the_image_command_serves_the_probes_the_deployment_declares(shop, cli):
    assert main(["manifests", "shop", "-o", "."]) == 0
    command = json.loads((shop / "Dockerfile").read_text().splitlines()[-1].removeprefix("CMD "))
    assert command[:2] == ["sandbox", "run"]
    deployment = yaml.safe_load((shop / "k8s" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    paths = [container[probe]["httpGet"]["path"] for probe in ("livenessProbe", "readinessProbe")]
    # The environment a deployment gives, less the broker: the embedded one will do here.
    address = f"127.0.0.1:{find_free_port()}"
    env = {"AMQP_URI": "memory://", "WEB_SERVER_ADDRESS": address, "API_TOKEN": "t0ken"}
    process = cli(*command[1:], env=env)
    process.wait_for_line("started service shop")
    for path in paths:
        wait_until(lambda path=path: requests.get(f"http://{address}{path}").status_code == 200)
    assert requests.get(f"http://{address}/price/apple").text == "1"
    process.proc.send_signal(signal.SIGTERM)
    assert process.finish()[0] == 0


def test_a_probe_the_config_turns_off_is_left_out(shop, capsys):
    (shop / "config.yaml").write_text(CONFIG + "READYZ_PATH: null\n")
    assert main(["manifests", "shop", "-o", "out"]) == 0
    assert capsys.readouterr().err == (
        "sandbox: warning: READYZ_PATH is off in the config: "
        "the Deployment has no readiness probe\n"
    )
    deployment = yaml.safe_load((shop / "out" / "k8s" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "readinessProbe" not in container and "livenessProbe" in container
    assert kubernetes_errors(deployment) == []
