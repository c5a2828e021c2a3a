"""Nameko code in kernel cells as it is: ``from nameko...`` imports and nameko-sqlalchemy with
SQLite, on either broker."""

import re
from pathlib import Path

DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "nameko.md"

ECHO = """
from nameko.events import EventDispatcher, event_handler
from nameko.rpc import rpc

class Shouter:
    name = "shouter"
    dispatch = EventDispatcher()

    @rpc
    def shout(self, text):
        self.dispatch("shouted", text)

class Listener:
    name = "listener"

    @event_handler("shouter", "shouted")
    def hear(self, text):
        return text.upper()
"""


def docs_cells(section):
    """The python blocks of a section of docs/nameko.md, the cells it shows."""
    text = DOCS_PAGE.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def test_load_ext_says_that_nameko_is_sandbox(kernel):
    loaded = kernel.run("%load_ext sandbox")
    assert "`nameko` is sandbox (Nameko is not installed)" in loaded.stdout
    same = kernel.run("import nameko.rpc, sandbox.rpc; print(nameko.rpc is sandbox.rpc)")
    assert same.stdout == "True\n"


def test_the_docs_cells_with_nameko_sqlalchemy(broker_kernel):
    load, define, call = docs_cells("nameko-sqlalchemy in a cell")
    assert load == "%load_ext sandbox\n"  # done by broker_kernel, on its broker
    started = broker_kernel.run(define)
    assert "notes running" in started.stdout
    assert broker_kernel.run(call).text == "['written unchanged']"


def test_events_between_services_written_with_nameko_imports(broker_kernel):
    broker_kernel.run(ECHO)
    heard = broker_kernel.run(
        'with sb.wait_for("listener", "hear", timeout=20) as heard:\n'
        '    sb.rpc.shouter.shout("hello")\n'
        "print(heard.result)"
    )
    assert heard.stdout == "HELLO\n"
