"""``%rpc``, ``%http``/``%%http``, ``%dispatch``, ``%sandbox``: one-line errors, no tracebacks."""

from __future__ import annotations

import ast
import functools
import json
import shlex
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.display import display

from sandbox.notebook.errors import describe_error, show_error
from sandbox.notebook.status import services_table
from sandbox.notebook.widgets.base import in_kernel


class MagicUsageError(Exception):
    """Bad input to a magic; shown as one line."""


def one_line_errors(method):
    """Report any failure of a magic as a single ``sandbox:`` line under the cell."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except MagicUsageError as exc:
            show_error(str(exc))
        except KeyboardInterrupt:
            show_error("interrupted")
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
        """Drive the sandbox: ``%sandbox COMMAND``, where COMMAND is one of:

        status                 every service: a live dashboard (text without widgets)
        start [Class ...]      start (or reload) service classes from the namespace
        stop NAME              stop a service gracefully
        restart NAME           stop and start a service again
        autostart on|off       start services when a cell defines them (default on)
        connect URI            move services and client to a broker (amqp://..., memory://)
        patch                  opt into eventlet.monkey_patch(thread=False) for blocking code
        export [FILE [Class ...]]
                               write the services (or those named) to FILE (services.py),
                               with the helpers they need, and config.yaml beside it
        inspect [kind=RPC ...] the message inspector (filters: service, kind, status, text)
        """
        command, _, rest = line.strip().partition(" ")
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
        filters = dict(_split_values(rest)[1]) if rest else {}
        unknown = set(filters) - {"service", "kind", "status", "text"}
        if unknown:
            raise MagicUsageError("usage: %sandbox inspect [service=S kind=K status=S text=T]")
        display(self.client.inspect(**{k: str(v) for k, v in filters.items()}))

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

    def _sandbox_export(self, rest: str) -> None:
        self.client.export(*(shlex.split(rest) or ["services.py"]))

    def _sandbox_patch(self, rest: str) -> None:
        import eventlet

        # Threads stay real: patching them wedges the kernel (notes/green-runtime.md).
        eventlet.monkey_patch(thread=False)
        print("eventlet.monkey_patch(thread=False) applied: blocking calls in handlers are green")


def _required(rest: str, usage: str) -> list[str]:
    words = rest.split()
    if not words:
        raise MagicUsageError(usage)
    return words


def parse_arguments(text: str, namespace: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Arguments as in a Python call, or else whitespace-separated JSON (or bare) values."""
    text = text.strip()
    if not text:
        return [], {}
    try:
        call = ast.parse(f"_({text})", mode="eval").body
    except SyntaxError:
        return _split_values(text)
    args = [_evaluate(node, namespace) for node in call.args]
    kwargs = {kw.arg: _evaluate(kw.value, namespace) for kw in call.keywords if kw.arg}
    return args, kwargs


def _evaluate(node: ast.expr, namespace: dict[str, Any]) -> Any:
    code = compile(ast.Expression(node), "<magic>", "eval")
    try:
        return eval(code, namespace)
    except NameError as exc:
        raise MagicUsageError(f'{exc} (quote strings: "text")') from None


def _split_values(text: str) -> tuple[list[Any], dict[str, Any]]:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise MagicUsageError(f"cannot parse arguments: {exc}") from None
    args, kwargs = [], {}
    for word in words:
        key, eq, value = word.partition("=")
        if eq and key.isidentifier():
            kwargs[key] = _json_or_text(value)
        else:
            args.append(_json_or_text(word))
    return args, kwargs


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


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
    except ValueError:
        return {"data": body.encode()}
