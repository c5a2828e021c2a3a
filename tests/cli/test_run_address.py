"""`sandbox run` on an address another process serves: one line naming the option to pass."""

HTTP_SERVICE = """
from sandbox.web.handlers import http


class Page:
    name = "page"

    @http("GET", "/")
    def index(self, request):
        return "hi"
"""


def test_address_in_use_says_which_option_to_pass(cli, taken_port):
    address = f"127.0.0.1:{taken_port}"
    proc = cli("run", "page", "-d", f"WEB_SERVER_ADDRESS={address}", modules={"page": HTTP_SERVICE})
    code, stderr = proc.finish()
    assert code == 2
    error = stderr.splitlines()[-1]
    assert error.startswith(
        f"sandbox: error: cannot start services: [Errno 98] cannot listen on http://{address}"
    )
    assert error.endswith(
        "pass --define WEB_SERVER_ADDRESS=HOST:PORT "
        "(or set $WEB_SERVER_ADDRESS for an exported config.yaml)"
    )
