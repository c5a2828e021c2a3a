"""A Nameko project as it is, ``from nameko...`` imports and community extensions, under
``sandbox run`` on either broker."""

import sqlite3
import time

import requests
import yaml

from sandbox.testing.utils import find_free_port

SERVICES = """
from nameko.dependency_providers import Config
from nameko.events import EventDispatcher, event_handler
from nameko.rpc import RpcProxy, rpc
from nameko.web.handlers import http
from nameko_redis import Redis
from nameko_sqlalchemy import Database
from sqlalchemy import Column, Integer, String
from sqlalchemy.orm import declarative_base

Base = declarative_base()


class Visit(Base):
    __tablename__ = "visits"
    id = Column(Integer, primary_key=True)
    who = Column(String, nullable=False)


class Visits:
    name = "visits"
    db = Database(Base)
    redis = Redis("visits")
    dispatch = EventDispatcher()
    config = Config()

    @rpc
    def record(self, who):
        with self.db.get_session() as session:
            session.add(Visit(who=who))
        self.dispatch("visited", who)
        return self.db.session.query(Visit).filter_by(who=who).count()

    @event_handler("visits", "visited")
    def count(self, who):
        self.redis.incr(self.config["COUNTER_KEY"])


class Front:
    name = "front"
    visits = RpcProxy("visits")
    redis = Redis("visits")
    config = Config()

    @http("POST", "/visit/<who>")
    def visit(self, request, who):
        return str(self.visits.record(who))

    @http("GET", "/events")
    def events(self, request):
        return self.redis.get(self.config["COUNTER_KEY"]) or "0"
"""


def test_a_nameko_project_runs_unchanged(cli, tmp_path, rabbit_config, redis_server, redis_prefix):
    with sqlite3.connect(tmp_path / "visits.db") as db:  # the project's migrations would
        db.execute("create table visits (id integer primary key, who varchar not null)")
    port = find_free_port()
    config = {
        "AMQP_URI": rabbit_config["AMQP_URI"],
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}",
        "DB_URIS": {"visits:Base": f"sqlite:///{tmp_path / 'visits.db'}"},
        "REDIS_URIS": {"visits": redis_server},
        "COUNTER_KEY": f"{redis_prefix}visited",
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = cli("run", "services", "--config", "config.yaml", modules={"services": SERVICES})
    proc.wait_for_line("`nameko` is sandbox here")
    proc.wait_for_line("started service front")
    base = f"http://127.0.0.1:{port}"
    assert requests.post(f"{base}/visit/ada", timeout=30).text == "1"
    assert requests.post(f"{base}/visit/ada", timeout=30).text == "2"
    wait_for_events(f"{base}/events", "2")
    proc.proc.terminate()
    code, stderr = proc.finish()
    assert code == 0, stderr
    assert "Traceback" not in stderr


def wait_for_events(url, expected, timeout=30):
    """The handlers run after the calls return: wait for their count, with a deadline."""
    deadline = time.monotonic() + timeout
    while (counted := requests.get(url, timeout=10).text) != expected:
        assert time.monotonic() < deadline, f"{counted} events handled, not {expected}"
        time.sleep(0.05)
