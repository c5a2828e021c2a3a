"""sb.faults and %sandbox faults in a real kernel: on, marked, off; bad rules in one line."""

import textwrap

import pytest

PING = """
from sandbox.rpc import rpc

class KernelPing:
    name = "kping"

    @rpc
    def ping(self):
        return "pong"
"""


@pytest.fixture(scope="module")
def ping_kernel(module_sandbox_kernel):
    module_sandbox_kernel.run(textwrap.dedent(PING))
    return module_sandbox_kernel


def test_sb_faults_block_is_marked_in_the_trace_and_removed(ping_kernel):
    result = ping_kernel.run(
        'with sb.faults(error={"kping.ping": "KeyError"}):\n'
        "    try:\n"
        "        sb.rpc.kping.ping()\n"
        "    except Exception as exc:\n"
        "        print('failed:', type(exc).__name__)\n"
        "print(sb.rpc.kping.ping())\n"
        "print(sb.trace.filter(text='fault'))"
    )
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:2] == ["failed: RemoteError", "pong"]
    assert "kping.ping  error" in lines[2] and lines[2].endswith("[fault: error KeyError]")


def test_a_rule_for_no_running_entrypoint_is_warned_about(ping_kernel):
    result = ping_kernel.run('faults = sb.faults(drop={"kping.pnig": 0.5})')
    assert result.stderr == (
        "sandbox: warning: fault rule 'kping.pnig' matches no entrypoint of a running service\n"
    )


@pytest.mark.parametrize(
    "line",
    [
        "%sandbox faults drop=kping.ping",
        "%sandbox faults drop=kping.ping:lots",
        "%sandbox faults x",
    ],
)
def test_bad_magic_rules_are_one_line(ping_kernel, line):
    result = ping_kernel.run(line)
    assert result.stdout == ""
    assert result.stderr.startswith("sandbox: ") and result.stderr.count("\n") == 1
    assert "%sandbox faults" in result.stderr


def test_magic_turns_faults_on_until_off(ping_kernel):
    on = ping_kernel.run("%sandbox faults error=kping.*:ValueError seed=3")
    assert on.stdout.startswith("faults on until %sandbox faults off: <Faults active")
    failed = ping_kernel.run(
        "try:\n    sb.rpc.kping.ping()\nexcept Exception as exc:\n    print(exc.exc_type)"
    )
    assert failed.stdout == "ValueError\n"
    assert "injected={'error': 1}" in ping_kernel.run("%sandbox faults").stdout
    assert ping_kernel.run("%sandbox faults off").stdout == "faults off\n"
    assert ping_kernel.run("print(sb.rpc.kping.ping())").stdout == "pong\n"
    assert ping_kernel.run("%sandbox faults").stdout == "no faults on\n"
