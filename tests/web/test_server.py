import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox.exceptions import ConfigurationError
from sandbox.testing.utils import get_extension
from sandbox.web.handlers import HttpRequestHandler, http
from sandbox.web.protocol import HttpOnlyProtocol
from sandbox.web.server import (
    BindAddress,
    WebServer,
    WsgiApp,
    get_base_url,
    get_listener_address,
    parse_address,
)


class Alpha:
    name = "alpha"

    @http("GET", "/alpha")
    def alpha(self, request):
        return "alpha"

    @http("GET", "/shared")
    def shared(self, request):
        return "alpha shared"


class Beta:
    name = "beta"

    @http("GET", "/beta")
    def beta(self, request):
        return "beta"

    @http("POST", "/shared")
    def shared(self, request):
        return "beta shared"


class Clash:
    name = "clash"

    @http("GET,PUT", "/alpha")
    def alpha(self, request):
        return "clash"


def port_is_free(port):
    """Nothing listens there: a server (with SO_REUSEADDR, as they all set) could bind it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8000", BindAddress("127.0.0.1", 8000)),
        (8000, BindAddress("127.0.0.1", 8000)),
        ("0.0.0.0:80", BindAddress("0.0.0.0", 80)),
        ("localhost:0", BindAddress("localhost", 0)),
        ("[::1]:8080", BindAddress("::1", 8080)),
    ],
)
def test_parse_address(text, expected):
    assert parse_address(text) == expected


def test_parse_address_refuses_garbage():
    with pytest.raises(ConfigurationError, match="WEB_SERVER_ADDRESS"):
        parse_address("localhost:http")


def test_two_services_in_one_runner_share_one_port(runner_factory, web_config, web_session):
    runner = runner_factory(web_config, Alpha, Beta)
    runner.start()
    assert web_session.get("/alpha").text == "alpha"
    assert web_session.get("/beta").text == "beta"
    # One path, two methods, two services.
    assert web_session.get("/shared").text == "alpha shared"
    assert web_session.post("/shared").text == "beta shared"
    servers = {get_extension(c, WebServer).bind_addr for c in runner.containers}
    assert servers == {parse_address(web_config["WEB_SERVER_ADDRESS"])}


def test_a_route_conflict_fails_the_second_service(container_factory, web_config, web_session):
    container_factory(Alpha, web_config).start()
    with pytest.raises(ConfigurationError) as error:
        container_factory(Clash, web_config).start()
    assert "service 'clash' cannot serve GET,HEAD /alpha" in str(error.value)
    assert "service 'alpha' already serves it" in str(error.value)
    assert web_session.get("/alpha").text == "alpha"
    assert web_session.put("/alpha").status_code == 405


def test_stopping_one_service_unmounts_only_its_routes(container_factory, web_config, web_session):
    alpha = container_factory(Alpha, web_config)
    beta = container_factory(Beta, web_config)
    alpha.start()
    beta.start()
    alpha.stop()
    assert web_session.get("/alpha").status_code == 404
    assert web_session.get("/beta").text == "beta"


def test_restart_frees_and_retakes_the_port(runner_factory, web_config, web_config_port):
    url = f"http://127.0.0.1:{web_config_port}/alpha"
    runner = runner_factory(web_config, Alpha, Beta)
    runner.start()
    with requests.Session() as session:
        assert session.get(url).text == "alpha"  # and the connection stays open
        runner.stop()
        assert port_is_free(web_config_port)
        assert get_listener_address(web_config["WEB_SERVER_ADDRESS"]) is None
        with pytest.raises(requests.ConnectionError):
            session.get(url)

        again = runner_factory(web_config, Alpha)
        again.start()
        assert session.get(url).text == "alpha"


def test_kill_frees_the_port(container_factory, web_config, web_config_port, web_session):
    container = container_factory(Alpha, web_config)
    container.start()
    assert web_session.get("/alpha").status_code == 200
    container.kill()
    assert port_is_free(web_config_port)


def test_port_zero_picks_a_free_port_that_can_be_asked_for(container_factory):
    config = {"WEB_SERVER_ADDRESS": "127.0.0.1:0"}
    alpha = container_factory(Alpha, config)
    alpha.start()
    bound = get_listener_address("127.0.0.1:0")
    assert bound.port != 0
    assert get_extension(alpha, WebServer).bind_addr == bound
    base_url = get_base_url("127.0.0.1:0")
    assert base_url == f"http://127.0.0.1:{bound.port}"
    assert requests.get(f"{base_url}/alpha").text == "alpha"

    # Other services join it, whether they name port 0 or the port it chose.
    container_factory(Beta, config).start()
    container_factory(Tagged, {"WEB_SERVER_ADDRESS": f"127.0.0.1:{bound.port}"}).start()
    assert requests.get(f"{base_url}/beta").text == "beta"
    assert requests.get(f"{base_url}/tagged").text == "tagged"


def test_the_base_url_comes_from_the_global_config(container_factory, web_config):
    assert get_base_url() is None
    container_factory(Alpha).start()
    assert get_base_url() == f"http://{web_config['WEB_SERVER_ADDRESS']}"


def test_another_process_cannot_share_the_port(container_factory, web_config, web_config_port):
    # With SO_REUSEPORT on both sides, the kernel would split connections between them.
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", web_config_port))
        other.listen()
        with pytest.raises(OSError, match=f"cannot listen on http://127.0.0.1:{web_config_port}"):
            container_factory(Alpha, web_config).start()


class ReloadedAlpha:
    name = "alpha"

    @http("GET", "/alpha")
    def alpha(self, request):
        return "new alpha"


def test_a_newer_container_of_the_same_service_takes_over_its_routes(
    container_factory, web_config, web_session
):
    old = container_factory(Alpha, web_config)
    old.start()
    container_factory(ReloadedAlpha, web_config).start()
    assert web_session.get("/alpha").text == "new alpha"
    assert web_session.get("/shared").text == "alpha shared"  # only the old one has it
    old.stop()
    assert web_session.get("/alpha").text == "new alpha"


def test_200_concurrent_keep_alive_requests_are_all_answered(container_factory, web_config):
    container_factory(Alpha, web_config).start()
    url = f"http://{web_config['WEB_SERVER_ADDRESS']}/alpha"
    clients = 200
    all_connected = threading.Barrier(clients, timeout=30)

    def client(_):
        with requests.Session() as session:
            first = session.get(url).text
            all_connected.wait()  # 200 connections open at once, then each is reused
            return [first, session.get(url).text]

    with ThreadPoolExecutor(clients) as pool:
        answers = [text for texts in pool.map(client, range(clients)) for text in texts]
    assert answers == ["alpha"] * 2 * clients


def raw_exchange(port, data):
    """Send raw bytes, return the status line of the reply (b"" when the server hung up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    "data, status",
    [
        (b"garbage\r\n\r\n", b"400"),
        (b"GET /alpha HTTP/1.1 extra\r\n\r\n", b"400"),
        (b"GET /alpha HTTX/1.1\r\n\r\n", b"400"),
        (b"GET /alpha HTTP/2.0\r\n\r\n", b"505"),
        (b"GET /alpha HTTP/1.1\r\nNo colon here\r\n\r\n", b"400"),
        (b"GET /alpha HTTP/1.1\r\nHost : x\r\n\r\n", b"400"),
        (b"GET /alpha HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", b"400"),
        (b"GET /alpha HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"400"),
        (b"GET /alpha HTTP/1.1\r\n" + b"X-Big: " + b"x" * 9000 + b"\r\n\r\n", b"400"),
        (b"GET /alpha HTTP/1.1\r\n" + b"X-Many: y\r\n" * 101 + b"\r\n", b"431"),
        (b"GET /alpha HTTP/1.1\r\n" + (b"X-Huge: " + b"z" * 8000 + b"\r\n") * 9, b"400"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"414"),
    ],
)
def test_malformed_requests_get_a_4xx_and_the_server_stays_up(
    container_factory, web_config, web_config_port, web_session, data, status, capfd
):
    container_factory(Alpha, web_config).start()
    assert raw_exchange(web_config_port, data).split(b" ")[1] == status
    assert web_session.get("/alpha").text == "alpha"
    assert capfd.readouterr() == ("", "")


def test_keep_alive_serves_several_requests_on_one_connection(
    container_factory, web_config, web_config_port
):
    container_factory(Alpha, web_config).start()
    request = b"GET /alpha HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", web_config_port), timeout=10) as sock:
        sock.sendall(request * 3)
        replies = b""
        while replies.count(b"alpha") < 3:
            replies += sock.recv(65536)
    assert replies.count(b"HTTP/1.1 200 OK") == 3


class TaggingServer(WebServer):
    def get_wsgi_app(self):
        app = super().get_wsgi_app()

        def tagging(environ, start_response):
            def tagged(status, headers, exc_info=None):
                return start_response(status, [*headers, ("X-Tag", "tagged")], exc_info)

            return app(environ, tagged)

        return tagging


class TaggingHandler(HttpRequestHandler):
    server = TaggingServer()


class Tagged:
    name = "tagged"

    @TaggingHandler.decorator("GET", "/tagged")
    def tagged(self, request):
        return "tagged"


def test_middleware_wraps_its_own_service_only(container_factory, web_config, web_session):
    container_factory(Tagged, web_config).start()
    container_factory(Alpha, web_config).start()
    assert web_session.get("/tagged").headers["X-Tag"] == "tagged"
    assert "X-Tag" not in web_session.get("/alpha").headers


class WrappingServer(WebServer):
    """Middleware added the way Nameko's docs show: by wrapping the app get_wsgi_server gets."""

    received: list = []

    def get_wsgi_server(self, sock, wsgi_app, protocol=HttpOnlyProtocol, debug=False):
        type(self).received.append(wsgi_app)

        def wrapped(environ, start_response):
            def with_header(status, headers, exc_info=None):
                return start_response(status, [*headers, ("X-Wrapped", "yes")], exc_info)

            return wsgi_app(environ, with_header)

        return super().get_wsgi_server(sock, wrapped, protocol, debug)


class WrappingHandler(HttpRequestHandler):
    server = WrappingServer()


class Wrapped:
    name = "wrapped"

    @WrappingHandler.decorator("GET", "/wrapped")
    def wrapped(self, request):
        return "wrapped"


@pytest.mark.parametrize("first", ["wrapped", "alpha"])
def test_get_wsgi_server_gets_the_containers_app_to_wrap(
    container_factory, web_config, web_session, first
):
    WrappingServer.received.clear()
    services = [Wrapped, Alpha] if first == "wrapped" else [Alpha, Wrapped]
    for service in services:
        container_factory(service, web_config).start()
    [app] = WrappingServer.received
    assert isinstance(app, WsgiApp)
    assert web_session.get("/wrapped").headers["X-Wrapped"] == "yes"
    assert "X-Wrapped" not in web_session.get("/alpha").headers


class Directory:
    name = "directory"

    @http("GET", "/dir/")
    def listing(self, request):
        return "listing"


def test_a_missing_trailing_slash_redirects(container_factory, web_config, web_session):
    container_factory(Directory, web_config).start()
    redirect = web_session.get("/dir", allow_redirects=False)
    assert redirect.status_code == 308
    assert redirect.headers["Location"].endswith("/dir/")
    assert web_session.get("/dir").text == "listing"


def test_a_redirect_names_the_host_the_request_named(container_factory, web_config, web_session):
    container_factory(Directory, web_config).start()
    for host in ("svc.example:8080", "other.example"):
        redirect = web_session.get("/dir?x=1", headers={"Host": host}, allow_redirects=False)
        assert redirect.headers["Location"] == f"http://{host}/dir/?x=1"


def test_ipv6_loopback(container_factory):
    container_factory(Alpha, {"WEB_SERVER_ADDRESS": "[::1]:0"}).start()
    base_url = get_base_url("[::1]:0")
    assert base_url.startswith("http://[::1]:")
    assert requests.get(f"{base_url}/alpha").text == "alpha"


def test_a_silent_client_loses_its_connection(container_factory, web_config, web_config_port):
    class Quiet:
        name = "quiet"

        @http("GET", "/hello")
        def hello(self, request):
            return "hello"

    container = container_factory(Quiet, {**web_config, "WEB_SOCKET_TIMEOUT": 0.2})
    container.start()
    with socket.create_connection(("127.0.0.1", web_config_port)) as stalled:
        stalled.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        stalled.settimeout(10)
        assert stalled.recv(1024) == b"", "the server closes a connection that stays silent"
