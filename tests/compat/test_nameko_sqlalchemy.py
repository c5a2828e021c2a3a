"""nameko-sqlalchemy 1.5.0 on sandbox, as its users write it: ``Database``, ``DatabaseSession``,
``transaction_retry``, its pytest fixtures next to sandbox's, and SQLite that never stalls the
other services."""

import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from latency import best_latency
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import entrypoint_hook, worker_factory
from nameko.web.handlers import http
from nameko_sqlalchemy import Database, DatabaseSession, transaction_retry
from sqlalchemy import Column, Integer, String, create_engine
from sqlalchemy.orm import declarative_base

Base = declarative_base()

# Set by the service once its session holds the note, just before the commit may block.
inside = threading.Event()


class Note(Base):
    __tablename__ = "notes"
    id = Column(Integer, primary_key=True)
    text = Column(String, nullable=False)


class Notes:
    name = "notes"
    # A locked database is waited for this long, not sqlite3's default 5 s.
    db = Database(Base, engine_options={"connect_args": {"timeout": 30}})

    @rpc
    @transaction_retry
    def add(self, text):
        with self.db.get_session() as session:
            session.add(Note(text=text))
            inside.set()
        return text

    @rpc
    def texts(self):
        return [note.text for note in self.db.session.query(Note).order_by(Note.id)]

    @http("POST", "/notes")
    def post(self, request):
        return 201, self.add(request.get_data(as_text=True))


class Archive:
    """The older style: one session per worker, committed by the service."""

    name = "archive"
    session = DatabaseSession(Base)

    @rpc
    def count(self):
        return self.session.query(Note).count()


class Quick:
    name = "quick"

    @http("GET", "/quick")
    def quick(self, request):
        return "quick"


@pytest.fixture
def db_config(tmp_path):
    url = f"sqlite:///{tmp_path / 'notes.db'}"
    Base.metadata.create_all(create_engine(url))
    return {"DB_URIS": {"notes:Base": url, "archive:Base": url}}


def test_a_service_with_a_database_over_rpc(
    rabbit_config, web_config, db_config, container_factory
):
    # Notes serves HTTP too: on a free port, not the default one another test may hold.
    config = {**rabbit_config, **web_config, **db_config}
    for cls in (Notes, Archive):
        container_factory(cls, config).start()
    with ServiceRpcProxy("notes", config) as notes:
        assert notes.add("first") == "first"
        assert notes.add("second") == "second"
        assert notes.texts() == ["first", "second"]
    with ServiceRpcProxy("archive", config) as archive:
        assert archive.count() == 2


def test_entrypoint_hook_and_worker_factory(web_config, db_config, container_factory):
    container = container_factory(Notes, {**web_config, **db_config})
    container.start()
    with entrypoint_hook(container, "add") as add:
        add("hooked")
    worker = worker_factory(Notes)
    worker.db.session.query.return_value.order_by.return_value = [Note(text="mocked")]
    assert worker.texts() == ["mocked"]
    with entrypoint_hook(container, "texts") as texts:
        assert texts() == ["hooked"]


def test_a_locked_database_stalls_no_other_service(web_config, db_config, container_factory):
    for cls in (Notes, Quick):
        container_factory(cls, {**web_config, **db_config}).start()
    holder = sqlite3.connect(db_config["DB_URIS"]["notes:Base"][len("sqlite:///") :])
    holder.isolation_level = None
    holder.execute("begin exclusive")
    base = f"http://{web_config['WEB_SERVER_ADDRESS']}"
    inside.clear()
    blocked = ThreadPoolExecutor(1).submit(requests.post, f"{base}/notes", "held", timeout=60)
    assert inside.wait(30)
    assert best_latency(f"{base}/quick") < 0.1
    assert not blocked.done(), "the write went through a locked database"
    holder.execute("commit")
    assert blocked.result().status_code == 201
    assert holder.execute("select text from notes").fetchall() == [("held",)]


PYTEST_SESSION = """
    import pytest
    from nameko.rpc import rpc
    from nameko.standalone.rpc import ServiceRpcProxy
    from nameko.testing.services import worker_factory
    from nameko_sqlalchemy import Database
    from sqlalchemy import Column, Integer, String
    from sqlalchemy.orm import declarative_base

    Base = declarative_base()

    class Note(Base):
        __tablename__ = "notes"
        id = Column(Integer, primary_key=True)
        text = Column(String)

    class Notes:
        name = "notes"
        db = Database(Base)

        @rpc
        def add(self, text):
            with self.db.get_session() as session:
                session.add(Note(text=text))

        @rpc
        def count(self):
            return self.db.session.query(Note).count()

    @pytest.fixture(scope="session")
    def model_base():
        return Base

    def test_db_session_fixture(db_session):
        db_session.add(Note(text="one"))
        db_session.commit()
        assert db_session.query(Note).count() == 1

    def test_database_fixture_in_a_worker(database):
        worker = worker_factory(Notes, db=database)
        worker.add("two")
        assert worker.count() == 1

    def test_a_container_on_the_test_database(db_url, db_session, rabbit_config, container_factory):
        config = {**rabbit_config, "DB_URIS": {"notes:Base": db_url}}
        container_factory(Notes, config).start()
        with ServiceRpcProxy("notes", config) as notes:
            notes.add("three")
            assert notes.count() == 1
"""


@pytest.mark.parametrize("first", ["nameko_sqlalchemy", "sandbox"])
def test_its_pytest_fixtures_with_sandbox_s_loaded_first_or_second(run_pytest, tmp_path, first):
    # -p loads the named plugin before the others: nameko-sqlalchemy's imports nameko.extensions
    # at once, so with it first, nothing of sandbox's pytest plugin has run yet.
    url = f"sqlite:///{tmp_path / 'test.db'}"
    done = run_pytest(PYTEST_SESSION, "-p", first, f"--test-db-url={url}", "-rs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^3 passed\b", done.stdout, re.M), done.stdout
