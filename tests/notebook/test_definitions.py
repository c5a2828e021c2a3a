"""Service classes as cells define them: mistakes said once in one line, define and call at once.

Each test uses its own service names, so that they can share one kernel.
"""

import textwrap
import time


def cell(kernel, source):
    return kernel.run(textwrap.dedent(source))


def quiet(kernel):
    """A later cell shows nothing of the classes defined before it."""
    later = kernel.run("later = 1")
    assert (later.stdout, later.stderr) == ("", "")


def test_a_class_without_name_is_said_once(module_sandbox_kernel):
    defined = cell(
        module_sandbox_kernel,
        """
        from sandbox.rpc import rpc

        class Nameless:
            @rpc
            def add(self, a, b):
                return a + b
        """,
    )
    assert defined.error is None and defined.stdout == ""
    assert defined.stderr == (
        'sandbox: class Nameless has entrypoints but no `name`; add name = "..." to start it\n'
    )
    quiet(module_sandbox_kernel)


def test_a_second_class_of_the_same_name_replaces_the_first_once(module_sandbox_kernel):
    first = cell(
        module_sandbox_kernel,
        """
        from sandbox.rpc import rpc

        class Greeter1:
            name = "greeter"

            @rpc
            def who(self):
                return "first"
        """,
    )
    assert "● greeter running" in first.stdout and first.stderr == ""
    second = cell(
        module_sandbox_kernel,
        """
        class Greeter2:
            name = "greeter"

            @rpc
            def who(self):
                return "second"
        """,
    )
    assert second.stderr == 'sandbox: Greeter2 replaces Greeter1 as service "greeter"\n'
    assert "● greeter reloaded" in second.stdout
    quiet(module_sandbox_kernel)
    quiet(module_sandbox_kernel)
    answer = module_sandbox_kernel.run("print(sb.rpc.greeter.who(), sb.services['greeter'].cls)")
    assert answer.stdout == "second <class '__main__.Greeter2'>\n"


def test_a_constructor_that_fails_crashes_the_service_and_calls_fail_at_once(
    module_sandbox_kernel,
):
    defined = cell(
        module_sandbox_kernel,
        """
        from sandbox.rpc import rpc

        class NeedsArgs:
            name = "needs_args"

            def __init__(self, db):
                self.db = db

            @rpc
            def ping(self):
                return "pong"
        """,
    )
    assert defined.error is None and defined.stdout == ""
    assert defined.stderr == (
        "sandbox: could not start 'needs_args': NeedsArgs() failed, and each call makes one: "
        "TypeError: NeedsArgs.__init__() missing 1 required positional argument: 'db'\n"
    )
    quiet(module_sandbox_kernel)
    table = module_sandbox_kernel.run("print(repr(sb.services))").stdout
    assert "✖ needs_args crashed: NeedsArgs() failed" in table
    started = time.monotonic()
    called = module_sandbox_kernel.run("sb.rpc.needs_args.ping()", timeout=30, allow_error=True)
    assert time.monotonic() - started < 5
    assert called.error["ename"] == "ServiceCrashed"
    assert "NeedsArgs() failed" in called.error["evalue"]


def test_a_failing_constructor_in_a_new_version_leaves_the_old_one_serving(
    module_sandbox_kernel,
):
    cell(
        module_sandbox_kernel,
        """
        from sandbox.rpc import rpc

        class Versioned:
            name = "versioned"

            @rpc
            def version(self):
                return 1
        """,
    )
    broken = cell(
        module_sandbox_kernel,
        """
        class Versioned:
            name = "versioned"

            def __init__(self):
                raise ValueError("not today")

            @rpc
            def version(self):
                return 2
        """,
    )
    assert broken.stdout == ""
    assert broken.stderr == (
        "sandbox: could not start 'versioned': Versioned() failed, and each call makes one: "
        "ValueError: not today; the previous version keeps running\n"
    )
    quiet(module_sandbox_kernel)
    answer = module_sandbox_kernel.run(
        "print(sb.rpc.versioned.version(), sb.services['versioned'].state)"
    )
    assert answer.stdout == "1 running\n"


def test_a_dependency_whose_setup_fails_crashes_the_service_once(module_sandbox_kernel):
    defined = cell(
        module_sandbox_kernel,
        """
        from sandbox.extensions import DependencyProvider
        from sandbox.rpc import rpc

        class Unreachable(DependencyProvider):
            def setup(self):
                raise RuntimeError("database unreachable")

        class Stored:
            name = "stored"
            db = Unreachable()

            @rpc
            def ping(self):
                return "pong"
        """,
    )
    assert defined.stderr == (
        "sandbox: could not start 'stored': RuntimeError: database unreachable\n"
    )
    quiet(module_sandbox_kernel)
    state = module_sandbox_kernel.run("print(sb.services['stored'].state)")
    assert state.stdout == "crashed\n"


def test_an_async_entrypoint_is_refused_in_one_line(module_sandbox_kernel):
    defined = cell(
        module_sandbox_kernel,
        """
        from sandbox.rpc import rpc

        class AsyncCalc:
            name = "async_calc"

            @rpc
            async def add(self, a, b):
                return a + b
        """,
    )
    assert defined.error is None and defined.stdout == ""
    assert defined.stderr == (
        "sandbox: could not start 'async_calc': AsyncCalc.add is async def; "
        "entrypoints run in green threads, define it with def\n"
    )
    quiet(module_sandbox_kernel)


def test_a_service_can_be_called_in_the_cell_that_defines_it(module_sandbox_kernel):
    defined = cell(
        module_sandbox_kernel,
        """
        from sandbox.rpc import rpc

        class Calc:
            name = "calc"

            @rpc
            def add(self, a, b):
                return a + b

        print("sum", sb.rpc.calc.add(1, 2))
        """,
    )
    assert defined.error is None and defined.stderr == ""
    assert defined.stdout.splitlines() == ["● calc running: rpc add", "sum 3"]
    quiet(module_sandbox_kernel)
    again = module_sandbox_kernel.run("print(sb.services['calc'].container is not None)")
    assert again.stdout == "True\n"


def test_a_class_redefined_in_one_cell_runs_its_last_version(module_sandbox_kernel):
    defined = cell(
        module_sandbox_kernel,
        """
        from sandbox.rpc import rpc

        class Twice:
            name = "twice"

            @rpc
            def version(self):
                return 1

        before = sb.rpc.twice.version()

        class Twice:
            name = "twice"

            @rpc
            def version(self):
                return 2

        print(before, sb.rpc.twice.version())
        """,
    )
    assert defined.stdout.splitlines() == [
        "● twice running: rpc version",
        "● twice reloaded: rpc version",
        "1 2",
    ]
    quiet(module_sandbox_kernel)


def test_unload_removes_the_define_hook(sandbox_kernel):
    sandbox_kernel.run("%unload_ext sandbox")
    gone = sandbox_kernel.run(
        "print('__sandbox_define__' in globals(), len(get_ipython().ast_transformers))\n"
        "class Plain:\n"
        "    pass"
    )
    assert gone.error is None and gone.stdout == "False 0\n"
