"""``%rpc``, ``%http``/``%%http``, ``%dispatch``, ``%sandbox``: one-line errors, no tracebacks."""

from __future__ import annotations

import ast
import functools
import json
import re
import shlex
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.display import display

from sandbox.notebook.errors import describe_error, show_error
from sandbox.notebook.status import services_table
from sandbox.notebook.widgets.base import in_kernel

# Commands that were, kept so that old notebooks get an answer rather than "unknown command".
RETIRED_COMMANDS = {
    "patch": "no longer needed: blocking calls in handlers no longer stall the other services",
}


class MagicUsageError(Exception):
    """Bad input to a magic; shown as one line."""


def one_line_errors(method):
    """Report any failure of a magic as a single ``sandbox:`` line under the cell.

    An interrupt goes on: the cell must stop there. One from a call is a CallInterrupted,
    which the kernel shows in one line too (see errors.install).
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except MagicUsageError as exc:
            show_error(str(exc))
        except Exception as exc:
            show_error(describe_error(exc))

    return wrapper


@magics_class
class SandboxMagics(Magics):
    def __init__(self, shell, session, client, definitions):
        super().__init__(shell)
        self.session = session
        self.client = client
        self.definitions = definitions

    @line_magic
    @one_line_errors
    def rpc(self, line: str) -> Any:
        """Call an RPC method: ``%rpc service.method args...``.

        Arguments are Python expressions, as in a call (``%rpc greeter.hello "Ada", loud=True``),
        or whitespace-separated JSON values (``%rpc calc.add 1 2``); the reply is the result.
        """
        target, _, rest = line.strip().partition(" ")
        service, dot, method = target.partition(".")
        if not (service and dot and method):
            raise MagicUsageError("usage: %rpc service.method [args...]")
        args, kwargs = parse_arguments(rest, self.shell.user_ns)
        return getattr(self.client.rpc[service], method)(*args, **kwargs)

    @line_cell_magic
    @one_line_errors
    def http(self, line: str, cell: str | None = None) -> Any:
        """Send an HTTP request to the kernel's services: ``%http METHOD /path [body]``.

        As a cell magic, ``%%http METHOD /path`` takes optional ``Header: value`` lines, then a
        blank line, then the body. A JSON body is sent as JSON.
        """
        parts = line.strip().split(None, 2)
        if len(parts) < 2:
            raise MagicUsageError("usage: %http METHOD /path [body]")
        method, path = parts[0].upper(), parts[1]
        headers: dict[str, str] = {}
        body = parts[2] if len(parts) > 2 else ""
        if cell is not None:
            headers, body = split_headers(cell)
        return self.client.http.request(method, path, headers=headers, **body_arguments(body))

    @line_magic
    @one_line_errors
    def dispatch(self, line: str) -> None:
        """Dispatch an event: ``%dispatch source_service event_type [payload]``."""
        parts = line.strip().split(None, 2)
        if len(parts) < 2:
            raise MagicUsageError("usage: %dispatch source_service event_type [payload]")
        payload = parse_value(parts[2], self.shell.user_ns) if len(parts) > 2 else None
        self.client.dispatch(parts[0], parts[1], payload)
        print(f"dispatched {parts[0]}.{parts[1]}")

    @line_magic
    @one_line_errors
    def sandbox(self, line: str) -> Any:
        """Drive the sandbox: ``%sandbox COMMAND``; ``%sandbox`` alone shows the status.

        Commands:
          status                   every service: a live dashboard (text without widgets)
          start [Class ...]        start (or reload) service classes from the namespace
          stop NAME                stop a service gracefully
          restart NAME             stop and start a service again
          autostart on|off         start services when a cell defines them (default on)
          connect URI              move services and client to a broker (amqp://..., memory://)
          export [FILE [Class ...]]
                                   write the services (or those named) to FILE (services.py),
                                   with the helpers they need, and config.yaml beside it
          inspect [kind=RPC ...]   the message inspector (filters: service, kind, status, text)
          faults [KIND=svc.method:VALUE ...] [seed=N] | off
                                   inject faults until "faults off" (KIND: latency, drop,
                                   duplicate, error, kill_worker); alone: what is on
          topology                 a live graph of services, exchanges, queues and bindings

        Magics:
          %rpc service.method ARGS call an RPC method; ARGS as in a Python call
                                   (%rpc greeter.hello "Ada", loud=True), or JSON values
                                   separated by spaces, key=value for keywords (%rpc calc.add 1 2)
          %http METHOD /path [BODY]
                                   an HTTP request to the services; a JSON BODY is sent as JSON
          %%http METHOD /path      the same, the cell holding Header: value lines, a blank
                                   line, then the body
          %dispatch SERVICE EVENT_TYPE [PAYLOAD]
                                   dispatch an event as SERVICE; PAYLOAD is JSON or Python
          %sandbox COMMAND         the commands above

        The client, ``sb``:
          sb.rpc.SERVICE.METHOD(...)
                                   call an RPC method; .call_async(...) replies later
          sb.http.get(path)        HTTP to the services: .get .post .put .patch .delete .request
          sb.dispatch(SERVICE, EVENT_TYPE, payload)
                                   dispatch an event as SERVICE
          sb.wait_for(SERVICE, ENTRYPOINT, timeout=10)
                                   wait for a worker of an entrypoint to finish; also a with block
          sb.services              the services and their states; sb.services["name"]
          sb.start(Class)          start (or reload) a service class
          sb.stop(NAME)            stop a service gracefully
          sb.restart(NAME)         stop and start a service again
          sb.trace                 recorded messages: sb.trace[-1], .filter(kind="RPC"), .diagram()
          sb.replay(record)        send a recorded request again
          sb.inspect(kind="RPC")   the message inspector, filtered
          sb.topology()            services, exchanges, queues and bindings as a live graph
          sb.why(record)           what became of a recorded message, in one paragraph
          sb.load("svc.method", rate=50, duration=10)
                                   drive an RPC method, "GET /path" or "event:svc.type" at a
                                   fixed rate, with a live plot and a max_workers slider
          sb.dashboard()           services: state, entrypoints, workers, buttons, logs
          sb.call_form()           a form to call an RPC method, HTTP route or event handler
          sb.docs()                the services' OpenAPI and AsyncAPI documents
          sb.faults(drop={"svc.method": 0.2}, seed=1)
                                   a with block (or decorator) injecting faults: latency,
                                   drop, duplicate, error, kill_worker
          sb.trace.to_pytest("test_contract.py", module="services")
                                   a pytest file replaying the recorded calls
          sb.export("services.py") write the services to a module ``sandbox run`` runs
          sb.connect(URI)          move services and client to a broker
          sb.connect(URI, services=False, http=URL)
                                   connect the client alone to a cluster
          sb.close()               close the client's connections (``%unload_ext sandbox`` does)
        """
        command, _, rest = line.strip().partition(" ")
        if command in RETIRED_COMMANDS:
            raise MagicUsageError(f"%sandbox {command} is {RETIRED_COMMANDS[command]}")
        handler = getattr(self, f"_sandbox_{command or 'status'}", None)
        if handler is None:
            raise MagicUsageError(f"unknown command {command!r}: try %sandbox?")
        return handler(rest.strip())

    def _sandbox_status(self, rest: str) -> None:
        if in_kernel():
            display(self.client.dashboard())
        else:
            print(services_table(self.session.services.values()))

    def _sandbox_inspect(self, rest: str) -> None:
        display(self.client.inspect(**_inspect_filters(rest)))

    def _sandbox_topology(self, rest: str) -> None:
        display(self.client.topology())

    def _sandbox_start(self, rest: str) -> None:
        names = rest.split()
        if not names:
            self.definitions.start_new(self.shell.user_ns.values())
            return
        for name in names:
            service_cls = self.shell.user_ns.get(name)
            if service_cls is None and name in self.session.services:
                service_cls = self.session.services[name].cls
            if service_cls is None:
                raise MagicUsageError(f"no service class or service named {name!r}")
            self.client.start(service_cls)

    def _sandbox_stop(self, rest: str) -> None:
        for name in _required(rest, "usage: %sandbox stop NAME"):
            self.client.stop(name)

    def _sandbox_restart(self, rest: str) -> None:
        for name in _required(rest, "usage: %sandbox restart NAME"):
            self.client.restart(name)

    def _sandbox_autostart(self, rest: str) -> None:
        if rest not in ("on", "off"):
            raise MagicUsageError("usage: %sandbox autostart on|off")
        self.session.autostart = rest == "on"
        if not self.session.autostart:
            self.session.forget(self.shell.user_ns.values())
        print(f"autostart {rest}")

    def _sandbox_connect(self, rest: str) -> None:
        self.client.connect(*_required(rest, "usage: %sandbox connect URI"))

    def _sandbox_faults(self, rest: str) -> None:
        self.client._kernel_faults.command(rest)

    def _sandbox_export(self, rest: str) -> None:
        self.client.export(*(shlex.split(rest) or ["services.py"]))


def _required(rest: str, usage: str) -> list[str]:
    words = rest.split()
    if not words:
        raise MagicUsageError(usage)
    return words


_INSPECT_FILTERS = {"service", "kind", "status", "text"}


def _inspect_filters(rest: str) -> dict[str, str]:
    usage = "usage: %sandbox inspect [service=S kind=K status=S text=T]"
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise MagicUsageError(f"{usage} ({exc})") from None
    filters = dict(word.partition("=")[::2] for word in words)
    if any("=" not in word for word in words) or set(filters) - _INSPECT_FILTERS:
        raise MagicUsageError(usage)
    return filters


# The name a magic's arguments are called with, to be parsed as a Python call's.
_COLLECT = "__sandbox_arguments__"


def parse_arguments(text: str, namespace: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """JSON values separated by spaces (``key=`` before one makes it a keyword argument), or
    else arguments as in a Python call; anything else is refused, not guessed at.

    JSON first: ``[1] [0]`` or ``"a" "b"`` are Python too, but one subscript or one string.
    """
    text = text.strip()
    if not text:
        return [], {}
    try:
        return _json_values(text)
    except ValueError as json_error:
        try:
            call = _parse_call(text)
        except SyntaxError as python_error:
            raise MagicUsageError(
                f'cannot parse arguments "{text}": not JSON values ({json_error}), '
                f"nor Python call arguments ({python_error.msg})"
            ) from None
    return _evaluate(call, namespace, {_COLLECT: _collect})


def _parse_call(text: str) -> ast.Call:
    call = ast.parse(f"{_COLLECT}({text})", mode="eval").body
    # Unbalanced text can parse as something else: "1), (2" as a tuple of two expressions.
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        raise SyntaxError("unbalanced parentheses")
    return call


def _collect(*args: Any, **kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    return list(args), kwargs


def _evaluate(node: ast.expr, namespace: dict[str, Any], names: dict | None = None) -> Any:
    code = compile(ast.Expression(node), "<magic>", "eval")
    try:
        return eval(code, namespace, names)
    except NameError as exc:
        raise MagicUsageError(f'{exc} (quote strings: "text")') from None


_KEYWORD = re.compile(r"([A-Za-z_]\w*)=")
_SPACES = re.compile(r"\s*")
_DECODER = json.JSONDecoder()


def _json_values(text: str) -> tuple[list[Any], dict[str, Any]]:
    """``1 "two" [3] four=4``: JSON values separated by spaces; ValueError names the first
    that is not one."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    position = 0
    while position < len(text):
        keyword = _KEYWORD.match(text, position)
        start = keyword.end() if keyword else position
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            raise ValueError(f"no JSON value at column {start + 1}") from None
        if end < len(text) and not text[end].isspace():
            raise ValueError(f"no space after the JSON value at column {start + 1}")
        if keyword:
            kwargs[keyword.group(1)] = value
        else:
            args.append(value)
        position = _SPACES.match(text, end).end()
    return args, kwargs


def parse_value(text: str, namespace: dict[str, Any]) -> Any:
    """One payload: JSON first (``{"k": true}``), else a Python expression."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise MagicUsageError(f"payload is neither JSON nor Python: {exc.msg}") from None
    return _evaluate(node, namespace)


def split_headers(cell: str) -> tuple[dict[str, str], str]:
    """``Header: value`` lines up to the first blank line, when the cell starts with one."""
    lines = cell.splitlines()
    headers: dict[str, str] = {}
    for index, line in enumerate(lines):
        if not line.strip():
            if headers:
                return headers, "\n".join(lines[index + 1 :])
            break
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or " " in name or name.startswith(("{", "[", '"')):
            break
        headers[name] = value.strip()
    return {}, cell


def body_arguments(body: str) -> dict[str, Any]:
    body = body.strip()
    if not body:
        return {}
    try:
        return {"json": json.loads(body)}
    except ValueError as exc:
        if body.startswith(("{", "[")):
            raise MagicUsageError(f"the body looks like JSON but is not: {exc}") from None
        return {"data": body.encode()}
