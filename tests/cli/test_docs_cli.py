"""`sandbox docs` in a subprocess, and `sandbox run` serving the documents with `DOCS: true`."""

import json
import signal
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate

from sandbox.testing.utils import find_free_port

SERVICES = (Path(__file__).parents[1] / "docs" / "docs_example_services.py").read_text()

# A user's route on a docs path wins over the built-in one.
OWN_OPENAPI = """
from sandbox.web.handlers import http


class Api:
    name = "api"

    @http("GET", "/openapi.json")
    def openapi(self, request):
        return {"mine": True}
"""


@pytest.fixture
def docs(cli):
    def run(*args):
        proc = cli("docs", *args, modules={"services": SERVICES, "own": OWN_OPENAPI})
        out = proc.proc.stdout.read()
        code, stderr = proc.finish()
        return code, out, stderr

    return run


def test_openapi_is_printed(docs):
    code, out, stderr = docs("services", "--openapi")
    assert (code, stderr) == (0, "")
    document = json.loads(out)
    validate(document)
    assert "/items/{item_id}" in document["paths"]


def test_asyncapi_of_one_class_with_the_broker_of_the_command_line(docs):
    code, out, _ = docs("services:Listener", "--asyncapi", "--broker", "amqp://u:pw@rabbit:5672/v")
    assert code == 0
    document = json.loads(out)
    assert [tag["name"] for tag in document["info"]["tags"]] == ["listener"]
    assert document["servers"]["broker"]["host"] == "rabbit:5672"
    assert "pw" not in out


@pytest.mark.parametrize(
    "kind, start", [("--asyncapi", '{\n  "asyncapi"'), ("--html", "<!doctype")]
)
def test_output_goes_to_a_file(docs, tmp_path, kind, start):
    code, out, stderr = docs("services", kind, "-o", "out.txt")
    assert (code, out, stderr) == (0, "", "")
    assert (tmp_path / "out.txt").read_text().startswith(start)


@pytest.mark.parametrize(
    "args, message",
    [
        (["nowhere", "--openapi"], "sandbox: error: cannot import module 'nowhere'"),
        (["services:Nope", "--openapi"], "sandbox: error: module 'services' has no class 'Nope'"),
        (
            ["services", "--openapi", "-o", "missing/dir/out.json"],
            "sandbox: error: cannot write missing/dir/out.json: No such file or directory",
        ),
        (
            ["services", "--openapi", "--asyncapi"],
            "sandbox docs: error: argument --asyncapi: not allowed with argument --openapi",
        ),
        (["services"], "sandbox docs: error: one of the arguments --openapi --asyncapi --html"),
    ],
)
def test_errors_are_one_line_and_exit_2(docs, args, message):
    code, out, stderr = docs(*args)
    assert code == 2 and out == ""
    error_lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and error_lines[0].startswith(message)
    assert "Traceback" not in stderr


def serve(cli, *modules):
    port = find_free_port()
    proc = cli(
        "run",
        *modules,
        "--define",
        "DOCS=true",
        "--define",
        f"WEB_SERVER_ADDRESS=127.0.0.1:{port}",
        modules={"services": SERVICES, "own": OWN_OPENAPI},
    )
    return proc, f"http://127.0.0.1:{port}"


def stop(proc):
    proc.proc.send_signal(signal.SIGTERM)
    code, stderr = proc.finish()
    assert code == 0, stderr


def test_run_serves_the_documents_with_docs_true(cli):
    proc, base = serve(cli, "services")
    proc.wait_for_line("started service sandbox-docs (3 entrypoints)")
    openapi = requests.get(f"{base}/openapi.json", timeout=5).json()
    validate(openapi)
    assert openapi["servers"] == [{"url": base}]
    assert "/items/{item_id}" in openapi["paths"]
    assert "/openapi.json" not in openapi["paths"]  # the docs do not document themselves
    asyncapi = requests.get(f"{base}/asyncapi.json", timeout=5).json()
    assert "greeter.hello" in asyncapi["operations"]
    page = requests.get(f"{base}/docs", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html")
    assert "Fetch one item." in page.text
    stop(proc)


def test_a_users_route_keeps_its_path(cli):
    proc, base = serve(cli, "own")
    proc.wait_for_line("started service sandbox-docs (2 entrypoints)")
    assert requests.get(f"{base}/openapi.json", timeout=5).json() == {"mine": True}
    assert requests.get(f"{base}/asyncapi.json", timeout=5).json()["asyncapi"] == "3.0.0"
    stop(proc)
