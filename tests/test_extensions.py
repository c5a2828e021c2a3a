import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.containers import ServiceContainer
from sandbox.exceptions import IncorrectSignature
from sandbox.extensions import (
    ENTRYPOINT_EXTENSIONS_ATTR,
    DependencyProvider,
    Entrypoint,
    Extension,
    ProviderCollector,
    SharedExtension,
    iter_extensions,
)
from sandbox.runtime import get_runtime


class Shared(SharedExtension):
    pass


class Sub(Extension):
    pass


class EntryWithShared(Entrypoint):
    shared = Shared()
    sub = Sub()


class Dep(DependencyProvider):
    shared = Shared()

    def __init__(self, value=1):
        self.value = value


class Service:
    name = "svc"
    dep = Dep(value=7)

    @EntryWithShared.decorator
    def bare(self):
        pass

    @EntryWithShared.decorator(expected_exceptions=ValueError, sensitive_arguments="secret")
    def called(self, a, secret, b=2):
        pass


def test_decorator_bare_and_called_forms():
    (bare,) = getattr(Service.bare, ENTRYPOINT_EXTENSIONS_ATTR)
    (called,) = getattr(Service.called, ENTRYPOINT_EXTENSIONS_ATTR)
    assert bare.expected_exceptions == () and bare.sensitive_arguments == ()
    assert called.expected_exceptions is ValueError
    assert called.sensitive_arguments == ("secret",)


def test_several_entrypoints_on_one_method():
    class Svc:
        name = "multi"

        @EntryWithShared.decorator
        @Entrypoint.decorator
        def both(self):
            pass

    assert len(getattr(Svc.both, ENTRYPOINT_EXTENSIONS_ATTR)) == 2
    assert len(ServiceContainer(Svc, {}).entrypoints) == 2


def test_bind_clones_with_constructor_args_and_shares_shared_extensions():
    container = ServiceContainer(Service, {})
    (dep,) = container.dependencies
    assert dep.value == 7 and dep is not Service.dep and not Service.dep.is_bound()
    shared = {ep.shared for ep in container.entrypoints} | {dep.shared}
    assert len(shared) == 1, "one shared extension per container"
    subs = {ep.sub for ep in container.entrypoints}
    assert len(subs) == 2, "plain sub-extensions are per parent"
    assert shared <= container.subextensions and subs <= container.subextensions
    other = ServiceContainer(Service, {})
    assert next(iter(other.dependencies)).shared is not dep.shared


def test_iter_extensions_is_recursive():
    class Inner(Extension):
        pass

    class Middle(Extension):
        inner = Inner()

    class Outer(Extension):
        middle = Middle()

    found = list(iter_extensions(Outer()))
    assert [type(e) for e in found] == [Middle, Inner]


def test_check_signature():
    container = ServiceContainer(Service, {})
    (called,) = [e for e in container.entrypoints if e.method_name == "called"]
    called.check_signature((1,), {"secret": "s"})
    with pytest.raises(IncorrectSignature, match="missing a required argument: 'secret'"):
        called.check_signature((1,), {})
    with pytest.raises(IncorrectSignature):
        called.check_signature((1, 2, 3, 4), {})


def test_provider_collector_stop_waits_for_providers():
    class Collector(ProviderCollector, SharedExtension):
        pass

    collector = Collector()
    order = []

    def scenario():
        import eventlet

        collector.register_provider("a")
        collector.register_provider("b")
        waiter = eventlet.spawn(lambda: (collector.stop(), order.append("stopped")))
        eventlet.sleep(0)
        collector.unregister_provider("a")
        eventlet.sleep(0)
        order.append("a gone")
        collector.unregister_provider("b")
        waiter.wait()

    get_runtime().call(scenario, timeout=5)
    assert order == ["a gone", "stopped"]


def test_reprs_name_the_service_and_method():
    container = ServiceContainer(Service, {})
    (dep,) = container.dependencies
    assert repr(dep) == "<Dep [svc.dep]>"
    assert "[svc.bare]" in repr(next(e for e in container.entrypoints if e.method_name == "bare"))
    assert "[unbound]" in repr(Dep())


class Shapes:
    name = "shapes"

    @Entrypoint.decorator
    def plain(self, a, b, c):
        pass

    @Entrypoint.decorator
    def defaults(self, a, b=1, *rest, c, **more):
        pass


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["plain", "defaults"]),
    args=st.lists(st.integers(), max_size=4),
    kwargs=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(), max_size=4),
)
def test_check_signature_agrees_with_binding(method, args, kwargs):
    container = ServiceContainer(Shapes, {})
    (entrypoint,) = [e for e in container.entrypoints if e.method_name == method]
    try:
        inspect.signature(getattr(Shapes, method)).bind(None, *args, **kwargs)
    except TypeError:
        with pytest.raises(IncorrectSignature):
            entrypoint.check_signature(tuple(args), kwargs)
    else:
        entrypoint.check_signature(tuple(args), kwargs)
