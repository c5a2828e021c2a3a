"""Nameko code in kernel cells as it is: ``from nameko...`` imports and nameko-sqlalchemy with
SQLite, on either broker."""

import textwrap

NOTES = """
from nameko.events import EventDispatcher, event_handler
from nameko.rpc import rpc
from nameko_sqlalchemy import Database
from sqlalchemy import Column, Integer, String, create_engine
from sqlalchemy.orm import declarative_base

from sandbox import config

Base = declarative_base()

class Note(Base):
    __tablename__ = "notes"
    id = Column(Integer, primary_key=True)
    text = Column(String, nullable=False)

config["DB_URIS"] = {"notes:Base": "sqlite:///notes.db"}  # in the kernel's working directory
Base.metadata.create_all(create_engine(config["DB_URIS"]["notes:Base"]))

class Notes:
    name = "notes"
    db = Database(Base)
    dispatch = EventDispatcher()

    @rpc
    def add(self, text):
        with self.db.get_session() as session:
            session.add(Note(text=text))
        self.dispatch("added", text)

    @rpc
    def texts(self):
        return [note.text for note in self.db.session.query(Note).order_by(Note.id)]

class Mirror:
    name = "mirror"

    @event_handler("notes", "added")
    def on_added(self, text):
        return text[::-1]
"""


def test_load_ext_says_that_nameko_is_sandbox(kernel):
    loaded = kernel.run("%load_ext sandbox")
    assert "`nameko` is sandbox (Nameko is not installed)" in loaded.stdout
    same = kernel.run("import nameko.rpc, sandbox.rpc; print(nameko.rpc is sandbox.rpc)")
    assert same.stdout == "True\n"


def test_a_nameko_sqlalchemy_service_in_a_cell(broker_kernel):
    started = broker_kernel.run(textwrap.dedent(NOTES))
    assert "notes running" in started.stdout and "mirror running" in started.stdout
    called = broker_kernel.run(
        'with sb.wait_for("mirror", "on_added", timeout=20) as handled:\n'
        '    sb.rpc.notes.add("written in a cell")\n'
        "print(sb.rpc.notes.texts(), handled.result)"
    )
    assert called.stdout == "['written in a cell'] llec a ni nettirw\n"
