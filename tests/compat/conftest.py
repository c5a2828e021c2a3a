"""Nameko community extensions, installed as they are (without their dependencies, which name
the real Nameko): their services, test fixtures and blocking libraries on sandbox."""

import os
import socket
import subprocess
import sys
import textwrap
import uuid

import pytest

REDIS_ADDRESS = ("127.0.0.1", 6379)
# The tests' own database, and a key prefix per test, removed afterwards.
REDIS_DB = 11


@pytest.fixture(scope="session")
def redis_server():
    """The redis-server the tests use (skips when none answers)."""
    try:
        socket.create_connection(REDIS_ADDRESS, timeout=2).close()
    except OSError as exc:
        pytest.skip(f"no redis-server answers at 127.0.0.1:6379 ({exc}); scripts/ensure-redis.sh")
    host, port = REDIS_ADDRESS
    return f"redis://{host}:{port}/{REDIS_DB}"


@pytest.fixture
def redis_prefix(redis_server):
    """A key prefix of the test's own; its keys are deleted after the test."""
    import redis

    prefix = f"sandbox-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_server)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def run_pytest(tmp_path):
    """``run_pytest(source, *args)``: a real pytest process on a test file of ``source``."""

    def run(source: str, *args: str) -> subprocess.CompletedProcess:
        (tmp_path / "test_it.py").write_text(textwrap.dedent(source))
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
            cwd=tmp_path,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            capture_output=True,
            text=True,
            timeout=100,
        )

    return run
