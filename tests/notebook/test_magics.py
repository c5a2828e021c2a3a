"""The magics in a real kernel: arguments refused rather than guessed at, and ``%sandbox?``."""

import json
import re
import textwrap

import pytest

CALC = """
from sandbox.rpc import rpc

class MagicCalc:
    name = "magic_calc"

    @rpc
    def add(self, a, b=0):
        return a + b
"""


@pytest.fixture(scope="module")
def calc_kernel(module_sandbox_kernel):
    module_sandbox_kernel.run(textwrap.dedent(CALC))
    return module_sandbox_kernel


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("%rpc magic_calc.add 1 2", "3"),
        ("%rpc magic_calc.add a=1 b=2", "3"),
        ('%rpc magic_calc.add [1] [2, "x"]', "[1, 2, 'x']"),
        ('%rpc magic_calc.add "a" "b"', "'ab'"),
        ("%rpc magic_calc.add *[1, 2]", "3"),
        ("%rpc magic_calc.add 1, b=2", "3"),
    ],
)
def test_rpc_takes_python_call_arguments_or_json_values(calc_kernel, line, reply):
    result = calc_kernel.run(line)
    assert result.stderr == ""
    assert result.data[0]["text/plain"] == reply


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "%rpc magic_calc.add (1, 2",
            'cannot parse arguments "(1, 2": not JSON values (no JSON value at column 1), '
            "nor Python call arguments ('(' was never closed)",
        ),
        (
            "%rpc magic_calc.add 1 two",
            'cannot parse arguments "1 two": not JSON values (no JSON value at column 3), '
            "nor Python call arguments (invalid syntax. Perhaps you forgot a comma?)",
        ),
        (
            '%http POST /items {"a": 1',
            "the body looks like JSON but is not: "
            "Expecting ',' delimiter: line 1 column 8 (char 7)",
        ),
        (
            "%dispatch magic_calc added (1, 2",
            "payload is neither JSON nor Python: '(' was never closed",
        ),
        ("%sandbox inspect rpc", "usage: %sandbox inspect [service=S kind=K status=S text=T]"),
    ],
)
def test_arguments_that_parse_neither_way_are_refused_in_one_line(calc_kernel, line, expected):
    calc_kernel.run("sb.trace.clear()")
    result = calc_kernel.run(line)
    assert result.error is None and result.stdout == "" and result.data == []
    assert result.stderr == f"sandbox: {expected}\n"
    assert calc_kernel.run("print(len(sb.trace))").stdout == "0\n", "nothing was sent"


def test_sandbox_patch_is_retired_in_one_line(module_sandbox_kernel):
    result = module_sandbox_kernel.run("%sandbox patch")
    assert result.error is None and result.stdout == ""
    assert result.stderr == (
        "sandbox: %sandbox patch is no longer needed: "
        "blocking calls in handlers no longer stall the other services\n"
    )


def test_sandbox_help_lists_every_magic_command_and_client_attribute(module_sandbox_kernel):
    # What the help must cover, read from the live objects rather than written down here.
    names = module_sandbox_kernel.run(
        "import json\n"
        "from sandbox.notebook.magics import SandboxMagics\n"
        "print(json.dumps({\n"
        "    'line': sorted(SandboxMagics.magics['line']),\n"
        "    'cell': sorted(SandboxMagics.magics['cell']),\n"
        "    'commands': sorted(n[9:] for n in dir(SandboxMagics) if n.startswith('_sandbox_')),\n"
        "    'client': sorted(n for n in dir(sb) if not n.startswith('_')),\n"
        "}))"
    )
    covered = json.loads(names.stdout)
    assert covered["commands"] and covered["client"] and covered["cell"]
    page = re.sub(r"\x1b\[[0-9;]*m", "", module_sandbox_kernel.page("%sandbox?"))
    missing = [
        *(f"%{name}" for name in covered["line"] if f"%{name} " not in page),
        *(f"%%{name}" for name in covered["cell"] if f"%%{name} " not in page),
        *(cmd for cmd in covered["commands"] if not re.search(rf"^ +{cmd}\b", page, re.M)),
        *(f"sb.{attr}" for attr in covered["client"] if f"sb.{attr}" not in page),
    ]
    assert missing == []
    assert not re.search(r"^ +patch\b", page, re.M)
