"""Extensions: the parts a service container is built from (Nameko's model).

A class attribute on a service is a *prototype*: binding it to a container clones it from the
arguments it was constructed with, so each container owns its own instances. Entrypoints start
workers; dependency providers inject objects into them; shared extensions exist once per container.
"""

from __future__ import annotations

import functools
import inspect
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import eventlet.event

from sandbox.exceptions import IncorrectSignature
from sandbox.validation import CallValidator, RequestBody, validator_for

if TYPE_CHECKING:
    from sandbox.containers import ServiceContainer, WorkerContext

ENTRYPOINT_EXTENSIONS_ATTR = "sandbox_entrypoints"


class Extension:
    """Something with a lifecycle inside a container: ``setup``, ``start``, ``stop``, ``kill``."""

    __params: tuple[tuple, dict]
    container: ServiceContainer | None = None

    def __new__(cls, *args: Any, **kwargs: Any):
        instance = super().__new__(cls)
        # Kept so that bind() can make a fresh copy of a class-level prototype per container.
        instance.__params = (args, kwargs)
        return instance

    def setup(self) -> None:
        """Called on bound extensions before the container starts."""

    def start(self) -> None:
        """Called on bound extensions when the container has set everything up."""

    def stop(self) -> None:
        """Stop gracefully: finish what is in flight, accept nothing new."""

    def kill(self) -> None:
        """Stop at once, dropping what is in flight."""

    def clone(self) -> Extension:
        args, kwargs = self.__params
        return type(self)(*args, **kwargs)

    def bind(self, container: ServiceContainer) -> Extension:
        """A copy of this prototype bound to ``container``, its sub-extensions bound too."""
        instance = self.clone()
        instance.container = weakref.proxy(container)
        for name, prototype in _class_extensions(type(instance)):
            setattr(instance, name, prototype.bind(container))
        return instance

    def is_bound(self) -> bool:
        return self.container is not None

    def __repr__(self) -> str:
        if not self.is_bound():
            return f"<{type(self).__name__} [unbound] at 0x{id(self):x}>"
        return f"<{type(self).__name__} at 0x{id(self):x}>"


def _class_extensions(cls: type) -> Iterator[tuple[str, Extension]]:
    yield from inspect.getmembers(cls, is_extension)


class SharedExtension(Extension):
    """An extension that exists once per container, whatever number of extensions declare it."""

    @property
    def sharing_key(self) -> Any:
        return type(self)

    def bind(self, container: ServiceContainer) -> SharedExtension:
        shared = container.shared_extensions.get(self.sharing_key)
        if shared is None:
            shared = super().bind(container)
            container.shared_extensions[self.sharing_key] = shared
        return shared


class DependencyProvider(Extension):
    """Injects ``get_dependency(worker_ctx)`` into each worker under its attribute name."""

    attr_name: str | None = None

    def bind(self, container: ServiceContainer, attr_name: str) -> DependencyProvider:
        instance = super().bind(container)
        instance.attr_name = attr_name
        return instance

    def get_dependency(self, worker_ctx: WorkerContext) -> Any:
        """The object the worker sees as ``self.<attr_name>``."""

    def worker_setup(self, worker_ctx: WorkerContext) -> None:
        """Called before the service method runs."""

    def worker_result(
        self, worker_ctx: WorkerContext, result: Any = None, exc_info: tuple | None = None
    ) -> None:
        """Called with the method's result or the exception info it raised."""

    def worker_teardown(self, worker_ctx: WorkerContext) -> None:
        """Called after the worker finished, whatever happened."""

    def __repr__(self) -> str:
        if not self.is_bound():
            return super().__repr__()
        return f"<{type(self).__name__} [{self.container.service_name}.{self.attr_name}]>"


class ProviderCollector:
    """Mixin for a shared extension that entrypoints register with (a consumer, a server).

    Its ``stop`` waits until every provider has unregistered, that is, stopped.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        self._providers: set[Any] = set()
        self._providers_gone = eventlet.event.Event()
        super().__init__(*args, **kwargs)

    def register_provider(self, provider: Any) -> None:
        self._providers.add(provider)

    def unregister_provider(self, provider: Any) -> None:
        self._providers.discard(provider)
        if not self._providers and not self._providers_gone.ready():
            self._providers_gone.send(None)

    def wait_for_providers(self) -> None:
        if self._providers:
            self._providers_gone.wait()

    def stop(self) -> None:
        self.wait_for_providers()


class Entrypoint(Extension):
    """A trigger that runs a service method: an RPC, an HTTP route, an event, a timer tick."""

    method_name: str | None = None
    # What the recorder (the inspector, sb.trace) calls the records of this entrypoint's
    # workers: HTTP, RPC, EVENT, TIMER or MESSAGE for sandbox's own (see sandbox.records);
    # an entrypoint of your own records as CALL unless it says otherwise.
    record_kind: str = "CALL"
    # Set by bind(): see make_validator.
    validator: CallValidator | None = None
    # How the first argument carries a body whose type its hint declares (HTTP's request).
    request_body: RequestBody | None = None
    # Work that can go back where it came from (a message to its queue): when a stop begins
    # while such work waits for a free worker, the container refuses it rather than start it.
    returns_unstarted_work: bool = False

    def __new__(cls, *args: Any, **kwargs: Any):
        # ``sensitive_variables``, the argument's name before Nameko 2.7, is still taken (as by
        # Nameko 2.14). Renamed here, where the arguments are kept for bind()'s copies, so that
        # the copies do not warn again.
        if kwargs.get("sensitive_variables"):
            warnings.warn(
                "The `sensitive_variables` argument has been renamed to `sensitive_arguments`.",
                DeprecationWarning,
                stacklevel=2,
            )
            kwargs["sensitive_arguments"] = kwargs.pop("sensitive_variables")
        return super().__new__(cls, *args, **kwargs)

    def __init__(
        self,
        expected_exceptions: type[BaseException] | tuple[type[BaseException], ...] = (),
        sensitive_arguments: str | tuple[str, ...] = (),
        sensitive_variables: str | tuple[str, ...] = (),
        **kwargs: Any,
    ):
        sensitive_arguments = sensitive_variables or sensitive_arguments
        self.expected_exceptions = expected_exceptions
        if isinstance(sensitive_arguments, str):
            sensitive_arguments = (sensitive_arguments,)
        self.sensitive_arguments = tuple(sensitive_arguments)
        super().__init__(**kwargs)

    def bind(self, container: ServiceContainer, method_name: str) -> Entrypoint:
        instance = super().bind(container)
        instance.method_name = method_name
        instance.validator = instance.make_validator()
        return instance

    def make_validator(self) -> CallValidator | None:
        """Called once by bind(). With config ``VALIDATE`` on, the check of each call's arguments
        against the method's type hints; None when it is off or no hint asks for a check.

        An entrypoint runs it in the green thread that received the call, before a worker
        starts (``check_call`` does): it returns the arguments the method gets (pydantic models
        as instances) or raises ``ArgumentsRejected``. An entrypoint whose first argument is a
        request sets ``request_body`` so that the request's hint can declare its body.
        """
        method = getattr(self.container.service_cls, self.method_name)
        label = f"{self.container.service_name}.{self.method_name}"
        return validator_for(self.container.config, method, label, self.request_body)

    @functools.cached_property
    def _signature(self) -> inspect.Signature:
        # Computing a signature costs more than a whole trivial HTTP request: do it once.
        return inspect.signature(getattr(self.container.service_cls, self.method_name))

    def is_expected(self, exc: BaseException) -> bool:
        """Whether ``exc`` is part of the method's contract: logged as a warning, not an error."""
        return bool(self.expected_exceptions) and isinstance(exc, self.expected_exceptions)

    @functools.cached_property
    def _plain_parameters(self) -> tuple[str, ...] | None:
        """The method's parameters after ``self`` when each is plain and required; None else."""
        parameters = list(self._signature.parameters.values())[1:]
        if all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in parameters):
            return tuple(p.name for p in parameters)
        return None

    def check_signature(self, args: tuple, kwargs: dict) -> None:
        """Raise IncorrectSignature when the method cannot take these arguments."""
        names = self._plain_parameters
        if (
            names is not None
            and len(args) + len(kwargs) == len(names)
            # Most calls pass no keywords: then every name is filled by position.
            and (not kwargs or all(name in kwargs for name in names[len(args) :]))
        ):
            return  # binding them would say the same, at several times the cost
        try:
            self._signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise IncorrectSignature(f"{self.method_name}() {exc}") from None

    def check_call(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """``check_signature``, then the validator's check when there is one: the arguments
        the method is to run with."""
        self.check_signature(args, kwargs)
        if self.validator is None:
            return args, kwargs
        return self.validator(args, kwargs)

    @classmethod
    def decorator(cls, *args: Any, **kwargs: Any) -> Callable:
        """``@entry`` and ``@entry(...)`` both work: the bare form passes the method itself."""

        def register(fn: Callable, args: tuple = args, kwargs: dict = kwargs) -> Callable:
            register_entrypoint(fn, cls(*args, **kwargs))
            return fn

        if len(args) == 1 and not kwargs and isinstance(args[0], types.FunctionType):
            return register(args[0], args=())
        return register

    def __repr__(self) -> str:
        if not self.is_bound():
            return super().__repr__()
        return f"<{type(self).__name__} [{self.container.service_name}.{self.method_name}]>"


def register_entrypoint(fn: Callable, entrypoint: Entrypoint) -> None:
    entrypoints = getattr(fn, ENTRYPOINT_EXTENSIONS_ATTR, None)
    if entrypoints is None:
        entrypoints = set()
        setattr(fn, ENTRYPOINT_EXTENSIONS_ATTR, entrypoints)
    entrypoints.add(entrypoint)


def is_extension(obj: Any) -> bool:
    return isinstance(obj, Extension)


def is_dependency(obj: Any) -> bool:
    return isinstance(obj, DependencyProvider)


def is_entrypoint(obj: Any) -> bool:
    return isinstance(obj, Entrypoint)


def iter_extensions(extension: Extension) -> Iterator[Extension]:
    """Every sub-extension of ``extension``, depth first."""
    for _, sub in inspect.getmembers(extension, is_extension):
        yield sub
        yield from iter_extensions(sub)


def get_entrypoints(service_cls: type) -> Iterator[tuple[str, Entrypoint]]:
    """``(method_name, entrypoint prototype)`` for each entrypoint declared on ``service_cls``."""
    for name, method in inspect.getmembers(service_cls, inspect.isfunction):
        for entrypoint in getattr(method, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            yield name, entrypoint


def count_entrypoints(service_cls: type) -> int:
    return sum(1 for _ in get_entrypoints(service_cls))


def is_service_class(obj: object) -> bool:
    """A class with a str ``name`` and at least one entrypoint: something a container can run."""
    return (
        isinstance(obj, type)
        and isinstance(getattr(obj, "name", None), str)
        and count_entrypoints(obj) > 0
    )
