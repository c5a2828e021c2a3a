import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from werkzeug.exceptions import Forbidden, abort
from werkzeug.wrappers import Response

from sandbox.contextdata import Language
from sandbox.web.handlers import HttpRequestHandler, http
from sandbox.web.responses import error_response
from sandbox.web.server import WebServer


class Conflict(Exception):
    pass


class ExampleService:
    name = "example"

    @http("GET", "/resource/<int:value>")
    def get_resource(self, request, value):
        return f"resource {value} is an {type(value).__name__}"

    @http("GET", "/files/<path:path>")
    def get_file(self, request, path):
        return path

    @http("GET, POST", "/echo")
    def echo(self, request):
        return f"{request.method} {request.body}"

    @http("GET", "/forms/<form>")
    def forms(self, request, form):
        return {
            "response": Response("a response", status=202, mimetype="text/x-custom"),
            "str": "text",
            "bytes": b"\x00bytes",
            "status": (201, "created"),
            "headers": (200, {"X-Thing": "yes"}, "with headers"),
            "dict": {"a": [1, 2]},
            "list": [1, "two"],
            "status-dict": (201, {"id": 7}),
            "none": None,
            "bad": object(),
        }[form]

    @http("POST", "/json")
    def parse_json(self, request):
        return {"got": request.get_json()}

    @http("GET", "/fail/<kind>", expected_exceptions=Conflict)
    def fail(self, request, kind):
        if kind == "expected":
            raise Conflict("already there")
        if kind == "forbidden":
            raise Forbidden("not yours")
        if kind == "abort":
            abort(Response("teapot", status=418))
        raise RuntimeError("internal detail")

    @http("GET", "/missing-arg/<value>")
    def missing_arg(self, request):
        return "never"

    @http("PUT", "/upload")
    def upload(self, request):
        return f"{len(request.get_data())} bytes"


@pytest.fixture
def example(container_factory, web_config):
    container = container_factory(ExampleService, web_config)
    container.start()
    return container


ACCEPT_JSON = {"Accept": "application/json"}


@pytest.fixture
def json_session(web_session):
    """A session whose requests prefer JSON: errors come back in their JSON form."""
    web_session.headers.update(ACCEPT_JSON)
    return web_session


def error_of(response):
    assert response.headers["Content-Type"] == "application/json"
    return response.json()


@pytest.mark.usefixtures("example")
def test_routes_converters_and_methods(web_session):
    assert web_session.get("/resource/42").text == "resource 42 is an int"
    assert web_session.get("/resource/abc").status_code == 404
    assert web_session.get("/files/a/b/c.txt").text == "a/b/c.txt"
    assert web_session.get("/echo").text == "GET "
    assert web_session.post("/echo", data="hello").text == "POST hello"
    assert web_session.head("/echo").status_code == 200


@pytest.mark.usefixtures("example")
@pytest.mark.parametrize(
    "form, status, content_type, body",
    [
        ("response", 202, "text/x-custom; charset=utf-8", b"a response"),
        ("str", 200, "text/plain; charset=utf-8", b"text"),
        ("bytes", 200, "text/plain; charset=utf-8", b"\x00bytes"),
        ("status", 201, "text/plain; charset=utf-8", b"created"),
        ("headers", 200, "text/plain; charset=utf-8", b"with headers"),
        ("dict", 200, "application/json", b'{"a": [1, 2]}'),
        ("list", 200, "application/json", b'[1, "two"]'),
        ("status-dict", 201, "application/json", b'{"id": 7}'),
    ],
)
def test_return_forms(web_session, form, status, content_type, body):
    response = web_session.get(f"/forms/{form}")
    assert (response.status_code, response.headers["Content-Type"]) == (status, content_type)
    assert response.content == body


@pytest.mark.usefixtures("example")
def test_headers_and_empty_results(web_session):
    assert web_session.get("/forms/headers").headers["X-Thing"] == "yes"
    none = web_session.get("/forms/none")
    assert (none.status_code, none.content) == (200, b"")


@pytest.mark.usefixtures("example")
def test_a_result_that_is_no_response_is_a_500(json_session):
    response = json_session.get("/forms/bad")
    assert response.status_code == 500
    assert error_of(response) == {
        "error": "TypeError",
        "message": "payload must be str, bytes, dict or list, not object",
    }


@pytest.mark.usefixtures("example")
def test_error_statuses_and_json_form(web_session):
    web_session.headers.update(ACCEPT_JSON)
    expected = web_session.get("/fail/expected")
    assert expected.status_code == 400
    assert error_of(expected) == {"error": "Conflict", "message": "already there"}

    forbidden = web_session.get("/fail/forbidden")
    assert forbidden.status_code == 403
    assert error_of(forbidden) == {"error": "Forbidden", "message": "not yours"}

    assert web_session.get("/fail/abort").text == "teapot"

    internal = web_session.get("/fail/internal")
    assert internal.status_code == 500
    assert error_of(internal) == {"error": "RuntimeError", "message": "internal detail"}
    assert "Traceback" not in internal.text

    not_found = web_session.get("/nowhere")
    assert not_found.status_code == 404
    assert error_of(not_found) == {
        "error": "NotFound",
        "message": "The requested URL was not found on the server. If you entered the URL "
        "manually please check your spelling and try again.",
    }

    not_allowed = web_session.delete("/echo")
    assert not_allowed.status_code == 405
    assert error_of(not_allowed)["error"] == "MethodNotAllowed"
    assert set(not_allowed.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}

    # The service survived all of that.
    assert web_session.get("/resource/1").status_code == 200


def text_error_of(response):
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    return response.status_code, response.text


@pytest.mark.usefixtures("example")
@pytest.mark.parametrize("accept", [None, "*/*", "text/plain", "application/json, text/plain"])
def test_errors_are_nameko_text_unless_json_is_preferred(web_session, accept):
    headers = {"Accept": accept} if accept else {}
    web_session.headers.pop("Accept", None)

    def get(path):
        return web_session.get(path, headers=headers)

    assert text_error_of(get("/fail/internal")) == (500, "Error: RuntimeError: internal detail\n")
    assert text_error_of(get("/fail/expected")) == (400, "Error: Conflict: already there\n")
    assert text_error_of(get("/fail/forbidden")) == (
        403,
        "Error: Forbidden: 403 Forbidden: not yours\n",
    )
    assert text_error_of(get("/missing-arg/1"))[1].startswith("Error: IncorrectSignature: ")
    # Routing errors are werkzeug's own pages, as Nameko's are.
    not_found = get("/nowhere")
    assert (not_found.status_code, not_found.headers["Content-Type"]) == (
        404,
        "text/html; charset=utf-8",
    )
    assert "<title>404 Not Found</title>" in not_found.text


def test_debug_shows_the_traceback(container_factory, web_config, web_session):
    web_config["WEB_DEBUG"] = True
    container_factory(ExampleService, web_config).start()
    body = web_session.get("/fail/internal", headers=ACCEPT_JSON).json()
    assert body["error"] == "RuntimeError"
    assert 'raise RuntimeError("internal detail")' in body["traceback"]
    text = web_session.get("/fail/internal").text
    assert text.startswith("Error: RuntimeError: internal detail\n\nTraceback")
    assert 'raise RuntimeError("internal detail")' in text


@pytest.mark.usefixtures("example")
def test_incorrect_signature_is_a_400(json_session):
    response = json_session.get("/missing-arg/1")
    assert response.status_code == 400
    assert error_of(response)["error"] == "IncorrectSignature"


@pytest.mark.usefixtures("example")
def test_invalid_json_body_is_a_400(json_session):
    web_session = json_session
    good = web_session.post("/json", json={"k": 1})
    assert good.json() == {"got": {"k": 1}}
    bad = web_session.post("/json", data="{nope", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert error_of(bad)["error"] == "BadRequest"
    assert "JSON" in error_of(bad)["message"]


def test_body_size_limit(container_factory, web_config, json_session):
    web_session = json_session
    web_config["MAX_CONTENT_LENGTH"] = 1000
    container_factory(ExampleService, web_config).start()
    assert web_session.put("/upload", data=b"x" * 1000).text == "1000 bytes"

    too_large = web_session.put("/upload", data=b"x" * 1001)
    assert too_large.status_code == 413
    assert error_of(too_large)["error"] == "RequestEntityTooLarge"

    # Without a Content-Length the limit bites while the handler reads.
    chunked = web_session.put("/upload", data=iter([b"x" * 600, b"x" * 600]))
    assert chunked.status_code == 413
    assert web_session.put("/upload", data=iter([b"x" * 300, b"x" * 300])).text == "600 bytes"


def test_default_body_size_limit_is_ten_mebibytes(example):
    server = next(iter(example.subextensions))
    assert server.max_content_length == 10 * 1024 * 1024


class TeapotHandler(HttpRequestHandler):
    """A custom handler: Nameko's documented way to map exceptions to statuses."""

    def response_from_exception(self, exc):
        if isinstance(exc, Conflict):
            return error_response(418, "Teapot", str(exc))
        return super().response_from_exception(exc)


teapot_http = TeapotHandler.decorator


class TeapotService:
    name = "teapot"

    @teapot_http("GET", "/brew/<kind>")
    def brew(self, request, kind):
        if kind == "coffee":
            raise Conflict("I am a teapot")
        raise ValueError("no")


def test_custom_exception_mapping(container_factory, web_config, web_session):
    container_factory(TeapotService, web_config).start()
    teapot = web_session.get("/brew/coffee")
    assert teapot.status_code == 418
    assert teapot.json() == {"error": "Teapot", "message": "I am a teapot"}
    assert web_session.get("/brew/tea").status_code == 500


class LanguageServer(WebServer):
    def context_data_from_headers(self, request):
        return {"language": request.headers.get("Accept-Language")}


class LanguageHandler(HttpRequestHandler):
    server = LanguageServer()


class LanguageService:
    name = "language"
    language = Language()

    @LanguageHandler.decorator("GET", "/language")
    def get_language(self, request):
        return self.language or "none"


def test_context_data_from_headers(container_factory, web_config, web_session):
    container_factory(LanguageService, web_config).start()
    assert web_session.get("/language", headers={"Accept-Language": "fr"}).text == "fr"


def test_context_data_is_empty_by_default(container_factory, web_config, web_session):
    class Plain:
        name = "plain"
        language = Language()

        @http("GET", "/language")
        def get_language(self, request):
            return self.language or "none"

    container_factory(Plain, web_config).start()
    assert web_session.get("/language", headers={"Accept-Language": "fr"}).text == "none"


@pytest.mark.usefixtures("example")
def test_every_request_is_recorded_not_printed(web_session, access_log, capfd):
    web_session.get("/resource/5")
    web_session.get("/nowhere")
    found, missing = access_log
    assert found["method"] == "GET"
    assert found["path"] == "/resource/5"
    assert found["status"] == 200
    assert (found["service"], found["entrypoint"]) == ("example", "get_resource")
    assert found["call_id"].startswith("example.get_resource.")
    assert found["duration"] >= 0
    assert found["response"].get_data() == b"resource 5 is an int"
    assert (missing["status"], missing["service"], missing["call_id"]) == (404, None, None)
    assert capfd.readouterr() == ("", "")


class BlockingService:
    name = "blocking"
    entered = threading.Event()

    @http("GET", "/block")
    def block(self, request):
        import eventlet.event

        type(self).entered.set()
        eventlet.event.Event().wait()


def test_requests_in_flight_get_a_503_when_the_service_is_killed(
    container_factory, web_config, web_session
):
    container = container_factory(BlockingService, web_config)
    container.start()
    BlockingService.entered.clear()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(web_session.get, "/block")
        assert BlockingService.entered.wait(10)
        container.kill()
        response = pending.result(10)
    assert response.status_code == 503
    assert response.text == "Error: ContainerBeingKilled: \n"


def test_a_clients_bad_json_is_a_warning_not_an_error(
    container_factory, web_config, web_session, caplog
):
    class Strict:
        name = "strict"

        @http("POST", "/items")
        def add(self, request):
            return request.get_json()

    container_factory(Strict, web_config).start()
    with caplog.at_level("WARNING", logger="sandbox.containers"):
        response = web_session.post(
            "/items", data="{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    levels = {r.levelname for r in caplog.records if r.name == "sandbox.containers"}
    assert levels == {"WARNING"}
