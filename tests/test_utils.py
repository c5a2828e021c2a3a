import os
import uuid

import pytest

from sandbox.utils import (
    REDACTED,
    Registrations,
    import_from_path,
    is_secret_key,
    mask_secrets,
    sanitize_url,
    unique_id,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://guest:guest@host:5672/vhost", "amqp://guest:********@host:5672/vhost"),
        ("pyamqp://user:p@ss@host", "pyamqp://user:********@host"),
        ("amqp://:secret@host/", "amqp://:********@host/"),
        ("amqp://u:pw@h1//;amqp://u:pw@h2//", "amqp://u:********@h1//;amqp://u:********@h2//"),
        ("amqp://guest@host:5672/", "amqp://guest@host:5672/"),
        ("amqp://host:5672/", "amqp://host:5672/"),
        ("memory://", "memory://"),
        ("not a url", "not a url"),
        ("http://host/path?a=b:c@d", "http://host/path?a=b:c@d"),
    ],
)
def test_sanitize_url(url, expected):
    assert sanitize_url(url) == expected


@pytest.mark.parametrize(
    "key", ["PASSWORD", "db_password", "SECRET_KEY", "apiKey", "AUTH_TOKEN", "x-api-key", "KEY"]
)
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["HEARTBEAT", "MONKEY_PATCH", "keyfile", "AMQP_URI", 3, None])
def test_ordinary_keys(key):
    assert not is_secret_key(key)


def test_mask_secrets_is_a_masked_deep_copy():
    config = {
        "AMQP_URI": "amqp://guest:guest@localhost:5672/",
        "HEARTBEAT": 60,
        "DB": {"PASSWORD": "hunter2", "HOST": "db", "URIS": ["redis://:pw@cache/0"]},
        "API_TOKEN": None,
    }
    masked = mask_secrets(config)
    assert masked == {
        "AMQP_URI": f"amqp://guest:{REDACTED}@localhost:5672/",
        "HEARTBEAT": 60,
        "DB": {"PASSWORD": REDACTED, "HOST": "db", "URIS": [f"redis://:{REDACTED}@cache/0"]},
        "API_TOKEN": None,
    }
    assert config["DB"]["PASSWORD"] == "hunter2"
    assert masked["DB"] is not config["DB"]


def test_import_from_path_both_spellings():
    assert (
        import_from_path("collections.abc:Mapping.get")
        is import_from_path("collections.abc.Mapping").get
    )
    assert import_from_path("os.path.join") is import_from_path("os.path:join")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_such_module_xyz.Thing", "no module named 'no_such_module_xyz'"),
        ("os.path:nothing_here", "'nothing_here' not found"),
        ("justaname", "expected 'module:Name' or 'module.Name'"),
        ("os.path:", "expected 'module:Name' or 'module.Name'"),
    ],
)
def test_import_from_path_errors(path, message):
    with pytest.raises(ImportError, match=message):
        import_from_path(path)


def test_import_from_path_keeps_errors_of_the_imported_module(tmp_path, monkeypatch):
    (tmp_path / "broken_dep_mod.py").write_text("import no_such_dependency_xyz\nThing = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        import_from_path("broken_dep_mod:Thing")
    assert info.value.name == "no_such_dependency_xyz"


def test_unique_ids_are_distinct_version_4_uuids():
    ids = {unique_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        parsed = uuid.UUID(value)
        assert (str(parsed), parsed.version, parsed.variant) == (value, 4, uuid.RFC_4122)


def test_a_forked_child_makes_ids_of_its_own():
    unique_id()  # the parent holds randomness for the ids to come
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write_end, "".join(unique_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end) as pipe:
        theirs = pipe.read()
    ours = "".join(unique_id() for _ in range(10))
    assert len(theirs) == len(ours) == 360
    assert not {theirs[i : i + 36] for i in range(0, 360, 36)} & {
        ours[i : i + 36] for i in range(0, 360, 36)
    }


def test_registrations_keep_each_hook_once_in_order_and_let_one_remove_itself():
    hooks = Registrations()
    ran = []

    def first():
        ran.append("first")
        hooks.remove(first)

    def second():
        ran.append("second")

    hooks.add(first)
    hooks.add(second)
    hooks.add(first)
    hooks.remove(print)  # never added: no error
    for hook in hooks:
        hook()
    assert ran == ["first", "second"]
    assert list(hooks) == [second] and hooks
    hooks.remove(second)
    assert not hooks
