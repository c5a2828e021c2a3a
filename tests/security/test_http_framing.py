"""Request smuggling against ``sandbox run``: framing that two parsers could read differently
is refused (400/501, ``Connection: close``), no request hidden in a body ever runs, and an
h11 differential fuzz shows every request head h11 refuses is refused here too."""

from __future__ import annotations

import io
import json
import re
import socket
import string
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TARGET = """
import json

from sandbox.web.handlers import http

CALLS = []  # the paths of every request a handler ran for


class Target:
    name = "target"

    @http("GET,POST", "/smuggled")
    def smuggled(self, request):
        CALLS.append(request.path)
        return "smuggled"

    @http("GET", "/calls")
    def calls(self, request):
        return json.dumps(CALLS)

    @http("GET,POST,PUT,DELETE,PATCH", "/echo/<path:rest>")
    def echo(self, request, rest):
        CALLS.append("/echo")
        environ = request.environ
        fields = ("CONTENT_TYPE", "CONTENT_LENGTH")
        return json.dumps({
            "method": environ["REQUEST_METHOD"],
            "path": environ["RAW_PATH_INFO"],
            "query": environ.get("QUERY_STRING"),
            "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_") or k in fields},
            "body": request.get_data().hex(),
        })
"""

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def target(serve):
    return serve(module=TARGET).address


@dataclass
class Exchange:
    responses: list[tuple[int, dict, bytes]]  # (status, headers, body), in order
    rest: bytes  # whatever came after the last complete response


def exchange(address, raw: bytes, half_close: bool = False) -> Exchange:
    """Send ``raw`` on a new connection, read until the server closes it (10 s at most: a
    connection left open after a framing error fails the test), parse what came back."""
    received = b""
    with socket.create_connection(address, timeout=10) as sock:
        try:
            sock.sendall(raw)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except TimeoutError:
            raise
        except OSError:
            pass  # refused and closed before all was sent: what came back is the answer
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # closed with unread data of ours: the answer came before
    return parse_responses(received)


class _Stream(io.BytesIO):
    def close(self) -> None:
        pass  # HTTPResponse closes it after a response with Connection: close; more may follow


class _Received:
    """What HTTPResponse needs of a socket: the bytes that came back."""

    def __init__(self, data: bytes):
        self.file = _Stream(data)

    def makefile(self, *args, **kwargs):
        return self.file


def parse_responses(data: bytes) -> Exchange:
    received, responses = _Received(data), []
    while True:
        start = received.file.tell()
        if start == len(data):
            return Exchange(responses, b"")
        response = HTTPResponse(received)
        try:
            response.begin()
            body = response.read()
        except HTTPException:  # not a whole response
            return Exchange(responses, data[start:])
        responses.append((response.status, dict(response.getheaders()), body))


def calls(address) -> list[str]:
    (status, _, body), *_ = exchange(
        address, b"GET /calls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).responses
    assert status == 200
    return json.loads(body)


def assert_refused(address, raw: bytes, status: int = 400) -> None:
    """One plain-text refusal, the connection closed after it, and no handler ran."""
    answer = exchange(address, raw)
    assert [response[0] for response in answer.responses] == [status]
    headers, body = answer.responses[0][1], answer.responses[0][2]
    assert headers["Connection"] == "close"
    assert headers["Content-Type"].startswith("text/plain")
    assert 0 < len(body) < 200 and b"\n" in body
    assert answer.rest == b""
    assert calls(address) == []


def post(*fields: str, body: bytes = b"") -> bytes:
    head = "".join(f"{field}\r\n" for field in ("POST /echo/x HTTP/1.1", "Host: x", *fields))
    return head.encode("latin-1") + b"\r\n" + body


# --- each smuggling attack, against the process --------------------------------------------


def test_two_differing_content_lengths_are_refused(target):
    body = b"abcd" + SMUGGLED
    assert_refused(target, post("Content-Length: 4", f"Content-Length: {len(body)}", body=body))
    assert_refused(target, post(f"Content-Length: 4, {len(body)}", body=body))


def test_identical_content_lengths_fold_into_one(target):
    answer = exchange(
        target, post("Content-Length: 4", "Content-Length: 4, 4", body=b"abcd"), half_close=True
    )
    ((status, _, body),) = answer.responses
    assert status == 200
    echo = json.loads(body)
    assert (echo["headers"]["CONTENT_LENGTH"], echo["body"]) == ("4", b"abcd".hex())


@pytest.mark.parametrize("length", ["+4", "0x4", "4_0", "-4", " 4 4", "4.0", "", "1" * 21])
def test_a_content_length_other_than_digits_is_refused(target, length):
    assert_refused(target, post(f"Content-Length: {length}", body=b"abcd" + SMUGGLED))


@pytest.mark.parametrize(
    "codings, status",
    [
        (["chunked, identity"], 400),  # chunked not last: the body's end is unknown
        (["chunked", "identity"], 400),
        (["identity"], 400),
        (["chunked, chunked"], 400),
        (["chunked;x=1"], 400),
        (["chunked,"], 400),
        (["chunk ed"], 400),
        (["gzip, chunked"], 501),  # well-formed, but a coding not implemented
        (["x-custom;q=1, chunked"], 501),
    ],
)
def test_transfer_codings_other_than_chunked_alone_are_refused(target, codings, status):
    fields = [f"Transfer-Encoding: {coding}" for coding in codings]
    assert_refused(target, post(*fields, body=b"0\r\n\r\n" + SMUGGLED), status)


def test_content_length_with_transfer_encoding_is_refused(target):
    body = b"0\r\n\r\n" + SMUGGLED
    assert_refused(
        target, post(f"Content-Length: {len(body)}", "Transfer-Encoding: chunked", body=body)
    )
    assert_refused(target, post("Transfer-Encoding: chunked", "Content-Length: 5", body=body))


def test_transfer_encoding_in_http_1_0_is_refused(target):
    raw = b"POST /echo/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    assert_refused(target, raw)


@pytest.mark.parametrize(
    "field",
    [
        "X-A: a\rb",  # a bare CR
        "X-A: a\x00b",
        "X-A: a\x01b",
        "X-A: a\x7fb",
        "X-A: a\x1bb",
        "X-A : a",  # whitespace before the colon
        "X-A: a\r\n b",  # obsolete line folding
        "X-A: a\nX-B: b",  # a bare LF
        " X-A: a",
        "X A: a",
        "X-\xe9: a",
        "Content-Type: text/plain\r\nContent-Type: application/json",
        "Host: y",  # a second Host
    ],
)
def test_bad_header_lines_are_refused(target, field):
    assert_refused(target, post(field, "Content-Length: 0"))


@pytest.mark.parametrize(
    "line",
    [
        "POST  /echo/x HTTP/1.1",
        "POST /echo/x  HTTP/1.1",
        "POST\t/echo/x HTTP/1.1",
        "POST /echo/x HTTP/1.1 ",
        "POST /echo/\x00 HTTP/1.1",
        "POST /echo/\xe9 HTTP/1.1",
        "P(ST /echo/x HTTP/1.1",
        "POST /echo/x HTTP/1.1\r",
        "POST /echo/x http/1.1",
    ],
)
def test_bad_request_lines_are_refused(target, line):
    assert_refused(target, f"{line}\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode("latin-1"))


def test_http_1_1_without_host_is_refused_and_1_0_is_not(target):
    assert_refused(target, b"GET /smuggled HTTP/1.1\r\n\r\n")
    ((status, _, _),) = exchange(target, b"GET /smuggled HTTP/1.0\r\n\r\n").responses
    assert status == 200


@pytest.mark.parametrize(
    "body",
    [
        b"+4\r\nabcd\r\n0\r\n\r\n",
        b"0x4\r\nabcd\r\n0\r\n\r\n",
        b"4 \r\nabcd\r\n0\r\n\r\n",
        b"4;\x00\r\nabcd\r\n0\r\n\r\n",
        b"4\nabcd\r\n0\r\n\r\n",
        b"4\r\nabcdXX0\r\n\r\n",  # data not followed by CRLF
        b"4\r\nabcd\r\n0\r\nX A: 1\r\n\r\n",  # a bad trailer
        b"4\r\nabcd\r\n0\r\nX-A: \x00\r\n\r\n",
        b"4\r\nabcd\r\n0\r\n\n",
        b"1" * 21 + b"\r\n",
    ],
)
def test_bad_chunked_bodies_are_refused(target, body):
    assert_refused(target, post("Transfer-Encoding: chunked", body=body + SMUGGLED))


def test_a_body_shorter_than_its_content_length_is_refused(target):
    answer = exchange(target, post("Content-Length: 10", body=b"abcd"), half_close=True)
    assert [response[0] for response in answer.responses] == [400]
    assert calls(target) == []


@pytest.mark.parametrize("framing", ["Content-Length: 20", "Transfer-Encoding: chunked"])
def test_a_body_over_the_limit_is_a_413_and_the_rest_is_never_read(serve, framing):
    address = serve(module=TARGET, MAX_CONTENT_LENGTH=8).address
    body = b"x" * 20 if framing.startswith("Content") else b"14\r\n" + b"x" * 20 + b"\r\n0\r\n\r\n"
    answer = exchange(address, post(framing, body=body + SMUGGLED))
    assert [response[0] for response in answer.responses] == [413]
    assert answer.responses[0][1]["Connection"] == "close"
    assert calls(address) == []


def test_well_framed_requests_pass_and_keep_the_connection(target):
    chunked = post(
        "Transfer-Encoding: Chunked",
        body=b'2;name=value;q="a b"\r\nab\r\n2\r\ncd\r\n0\r\nX-Trailer: t\r\n\r\n',
    )
    sized = post("Content-Length:  4 ", body=b"abcd")
    answer = exchange(target, chunked + sized + SMUGGLED, half_close=True)
    assert [response[0] for response in answer.responses] == [200, 200, 200]
    echoes = [json.loads(body) for _, _, body in answer.responses[:2]]
    assert [echo["body"] for echo in echoes] == [b"abcd".hex()] * 2
    assert echoes[0]["headers"]["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert calls(target) == ["/echo", "/echo", "/smuggled"]


# --- the differential fuzz, h11 as the oracle ----------------------------------------------
# A grammar of requests: each part is valid, or now and then one of the ways to get it wrong.


def sometimes(valid: st.SearchStrategy, invalid: st.SearchStrategy, one_in: int = 16):
    """``valid``, or ``invalid`` one time in ``one_in``: most requests stay valid enough for
    the application to see them, the rest go wrong in one or two places."""
    return st.integers(0, one_in - 1).flatmap(lambda n: invalid if n == 0 else valid)


def inserted(valid: st.SearchStrategy[str], chars: st.SearchStrategy[str]):
    """``valid`` with one of ``chars`` inserted somewhere."""
    return st.tuples(valid, st.integers(0, 40), chars).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    )


CONTROLS = st.sampled_from(["\x00", "\r", "\n", "\x01", "\x0b", "\x1f", "\x7f"])
BAD_CHARS = CONTROLS | st.sampled_from([" ", "\t", "\xe9", "\x85"])
SEGMENTS = st.text(
    string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@", min_size=1, max_size=6
)
VALID_METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])
VALID_TARGETS = st.tuples(
    st.lists(SEGMENTS, min_size=1, max_size=3),
    st.none() | st.text(string.ascii_letters + "=&/?%", max_size=8),
).map(lambda t: "/echo/" + "/".join(t[0]) + ("" if t[1] is None else "?" + t[1]))
LINE_ENDS = sometimes(st.just("\r\n"), st.sampled_from(["\n", "\r", "\r\r\n", ""]), one_in=30)
REQUEST_LINES = st.tuples(
    sometimes(VALID_METHODS, inserted(VALID_METHODS, BAD_CHARS | st.just("("))),
    sometimes(st.just(" "), st.sampled_from(["  ", "\t", ""])),
    sometimes(VALID_TARGETS, inserted(VALID_TARGETS, BAD_CHARS)),
    sometimes(
        st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
        st.sampled_from(
            ["HTTP/2.0", "HTTP/1.1 ", "http/1.1", "HTTP/1", "HTTP/1.10", "HTTP/1.1\x00"]
        ),
    ),
    LINE_ENDS,
).map(lambda t: f"{t[0]}{t[1]}{t[2]} {t[3]}{t[4]}")

VALID_NAMES = st.sampled_from(
    ["X-Thing", "Accept", "Content-Type", "X_Under", "x-thing"]
) | st.text(string.ascii_letters + "!#$%&'*+-.^_`|~", min_size=1, max_size=8)
VALID_VALUES = st.one_of(
    st.text(string.ascii_letters + string.digits + ',;=/"', max_size=12),
    st.text(string.ascii_letters + " \t", max_size=12),  # inner and outer whitespace
    st.text(st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1, max_size=4),
)
FIELD_LINES = st.tuples(
    sometimes(
        VALID_NAMES,
        st.sampled_from(["X Thing", " X-Thing", "\tX-Thing", "", "X\x00", "X-\xe9", "X:Y"]),
    ),
    sometimes(st.sampled_from([":", ": ", ":\t", ":  "]), st.sampled_from([" :", "\t:"])),
    sometimes(
        VALID_VALUES,
        inserted(VALID_VALUES, CONTROLS) | st.integers(8000, 9000).map(lambda size: "v" * size),
    ),
    LINE_ENDS,
).map("".join)
# Framing headers with the values that smuggle requests (and some that are fine).
FRAMING_LINES = st.one_of(
    st.sampled_from(
        ["4", "+4", "0x4", "-1", "4, 4", "4, 40", "4,", "004", " 4 ", "1" * 25, "", "4 4"]
    ).map(lambda value: f"Content-Length: {value}\r\n"),
    sometimes(
        st.sampled_from(["chunked", "Chunked", " chunked "]),
        st.sampled_from(
            [
                "chunked, identity",
                "gzip, chunked",
                "identity",
                "chunked;x=1",
                "chunked,",
                "chunked, chunked",
                "",
            ]
        ),
        one_in=2,
    ).map(lambda value: f"Transfer-Encoding: {value}\r\n"),
)
OBS_FOLDS = st.tuples(st.sampled_from([" ", "\t"]), VALID_VALUES).map(lambda t: "".join(t) + "\r\n")
HOSTS = sometimes(
    st.just(["Host: example.com\r\n"]),
    st.sampled_from([[], ["Host: a\r\n", "Host: b\r\n"], ["Host:\r\n"]]),
)

# Chunk size lines: some that h11 refuses too, and those that h11 takes but we refuse
# (``CHUNK_LINES_ONLY_WE_REFUSE``): anything after ``;`` that is no chunk extension, and
# whitespace before the CRLF, which RFC 9112's chunk-size line has no room for.
CHUNK_SIZE_LINES = ["{:x}\r\n", "{:X};ext\r\n", '{:x};a=b;c="d e"\r\n']
BAD_CHUNK_SIZE_LINES = ["+{:x}\r\n", "0x{:x}\r\n", "{:x}\n", "{:x}\r", "-{:x}\r\n"]
CHUNK_LINES_ONLY_WE_REFUSE = ["{:x} \r\n", "{:x};\x00\r\n", "{:x};=\r\n"]
CHUNK_FORMS = sometimes(
    st.sampled_from(CHUNK_SIZE_LINES),
    st.sampled_from(BAD_CHUNK_SIZE_LINES + CHUNK_LINES_ONLY_WE_REFUSE),
)
TRAILERS = sometimes(
    st.sampled_from(["", "X-T: 1\r\n"]),
    st.sampled_from(["X T: 1\r\n", "X-T: \x00\r\n", "X-T 1\r\n", " X-T: 1\r\n"]),
)


@st.composite
def chunked_bodies(draw, data: bytes) -> tuple[bytes, bool]:
    """``data`` in the chunked coding, maybe broken; True when only we should refuse it."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=2)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True) if b > a]
    body, only_we_refuse = b"", False
    for piece in [*pieces, b""]:
        form = draw(CHUNK_FORMS)
        only_we_refuse |= form in CHUNK_LINES_ONLY_WE_REFUSE
        body += form.format(len(piece)).encode("latin-1") + piece
        body += (
            draw(sometimes(st.just(b"\r\n"), st.sampled_from([b"\n", b"", b"XX"])))
            if piece
            else b""
        )
    end = draw(sometimes(st.just("\r\n"), st.sampled_from(["\n", ""])))
    return body + draw(TRAILERS).encode("latin-1") + end.encode("latin-1"), only_we_refuse


@st.composite
def requests(draw) -> tuple[bytes, bool]:
    """Raw request bytes from the grammar; True when the body holds something only we refuse
    on purpose (see CHUNK_LINES_ONLY_WE_REFUSE)."""
    fields = draw(HOSTS) + draw(
        st.lists(sometimes(FIELD_LINES, FRAMING_LINES | OBS_FOLDS, one_in=5), max_size=3)
    )
    data = draw(st.binary(max_size=24))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    body, only_we_refuse = data, False
    if framing == "length":
        fields.append(f"Content-Length: {len(data)}\r\n")
    elif framing == "chunked":
        fields.append("Transfer-Encoding: chunked\r\n")
        body, only_we_refuse = draw(chunked_bodies(data))
    fields = draw(st.permutations(fields))
    head_end = draw(sometimes(st.just("\r\n"), st.sampled_from(["\n", ""])))
    head = draw(REQUEST_LINES) + "".join(fields) + head_end
    return head.encode("latin-1") + body, only_we_refuse


@dataclass
class H11Reading:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    leftover: bytes  # what h11 reads as the next request


def h11_reading(raw: bytes) -> H11Reading | None:
    """The first request in ``raw`` (then end of stream) as h11 reads it; None if refused."""
    # Size limits are compared by their own tests: h11's 16 KiB head limit is not framing.
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    connection.receive_data(raw)
    connection.receive_data(b"")
    try:
        request, body = connection.next_event(), b""
        if not isinstance(request, h11.Request):
            return None
        while isinstance(event := connection.next_event(), h11.Data):
            body += event.data
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.EndOfMessage):
        return None  # the stream ended before the body did
    headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers]
    return H11Reading(
        request.method.decode(),
        request.target.decode("latin-1"),
        request.http_version.decode(),
        headers,
        body,
        connection.trailing_data[0],
    )


def wsgi_view(reading: H11Reading) -> dict[str, str]:
    """The environ headers the application should see for what h11 read."""
    view: dict[str, str] = {}
    for name, value in reading.headers:
        if "_" in name:
            continue  # eventlet.wsgi drops these: X_A and X-A would share one environ key
        key = name.upper().replace("-", "_")
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
        view[key] = f"{view[key]},{value}" if key in view else value
    view.setdefault("CONTENT_TYPE", "text/plain")  # eventlet.wsgi's default
    if "HTTP_TRANSFER_ENCODING" in view:
        view["CONTENT_LENGTH"] = str(len(reading.body))  # sandbox buffers chunked bodies
    return view


def only_we_refuse(raw: bytes, reading: H11Reading) -> bool:
    """Where sandbox is stricter than h11 on purpose (RFC 9112 allows or requires it)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [name for name, _ in reading.headers]
    values = "".join(value for _, value in reading.headers)
    return bool(
        # h11 takes a bare LF as a line end, and obsolete line folding.
        re.search(rb"(?<!\r)\n|\n[ \t]", head)
        # h11 lets C0 controls but NUL, CR, LF (and DEL) through in values.
        or re.search(r"[\x00-\x08\x0a-\x1f\x7f]", values)
        # h11 reads a request with both by Transfer-Encoding; RFC 9112 6.1 lets a server refuse.
        or {"content-length", "transfer-encoding"} <= set(names)
        # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        or (reading.version == "1.0" and "transfer-encoding" in names)
        # A singleton field: a proxy taking the last and us the first would disagree.
        or names.count("content-type") > 1
        # Only HTTP/1.x is served (505); eventlet's 8 KiB limit on a header line.
        or not reading.version.startswith("1.")
        or any(len(line) >= 8190 for line in head.split(b"\r\n"))
    )


def expected_echo(reading: H11Reading) -> dict:
    target = reading.target
    if target.startswith("//"):
        target = "/" + target.lstrip("/")  # sandbox's guard against scheme-relative redirects
    path, question, query = target.partition("?")
    return {
        "method": reading.method,
        "path": path,
        "query": query if question else None,
        "headers": wsgi_view(reading),
        "body": reading.body.hex(),
    }


def check_against_h11(address, raw: bytes, chunk_lines_only_we_refuse: bool) -> None:
    reading = h11_reading(raw)
    answer = exchange(address, raw, half_close=True)
    statuses = [response[0] for response in answer.responses]
    if reading is None:
        # h11 refuses: so do we, and nothing after the refusal is read.
        assert statuses in ([], [400], [501], [505], [431]), (raw, statuses)
        return
    first = statuses[0] if statuses else None
    if first != 200:
        assert first in (400, 501, 505, 431), (raw, statuses)
        assert chunk_lines_only_we_refuse or only_we_refuse(raw, reading), (raw, statuses, reading)
        return
    echo = json.loads(answer.responses[0][2])
    if echo["query"] == "" and "?" not in reading.target:
        echo["query"] = None
    assert echo == expected_echo(reading), raw
    if not reading.leftover:
        assert statuses == [200] and answer.rest == b"", (raw, statuses)


def test_every_request_h11_refuses_is_refused_and_the_rest_read_alike(serve):
    address = serve(module=TARGET).address

    @settings(
        max_examples=400,
        derandomize=True,  # the same requests every run: the suite's time and result are fixed
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests())
    def check(request: tuple[bytes, bool]) -> None:
        check_against_h11(address, *request)

    check()
