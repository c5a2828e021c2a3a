import importlib.metadata
import re

import pytest
import yaml

import sandbox
from sandbox.cli import parse_definition
from sandbox.cli.main import main, version
from sandbox.config import DEFAULTS
from sandbox.exceptions import CommandError


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"sandbox {version()}\n"


def test_version_comes_from_the_distribution_or_the_package():
    try:
        expected = importlib.metadata.version("service-sandbox")
    except importlib.metadata.PackageNotFoundError:
        expected = sandbox.__version__
    assert version() == expected


def test_a_command_is_required(capsys):
    assert main([]) == 2
    assert (
        "sandbox: error: the following arguments are required: COMMAND" in capsys.readouterr().err
    )


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "shell", "backdoor", "show-config", "export", "docs"):
        assert re.search(rf"^    {command}\b", out, re.MULTILINE), command


# --- show-config --------------------------------------------------------------------------------


def show_config(capsys, *args):
    assert main(["show-config", *args]) == 0
    return capsys.readouterr().out


def test_show_config_defaults(capsys):
    assert yaml.safe_load(show_config(capsys)) == DEFAULTS


def test_show_config_resolves_file_broker_and_defines(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SB_TEST_PORT", "9000")
    path = tmp_path / "config.yaml"
    path.write_text(
        "WEB_SERVER_ADDRESS: 127.0.0.1:${SB_TEST_PORT}\n"
        "max_workers: 3\n"
        "NESTED: {PORT: '${SB_TEST_PORT:1}'}\n"
    )
    out = show_config(
        capsys, "--config", str(path), "--broker", "amqp://h/", "-d", "max_workers=4", "-d", "X=[1]"
    )
    assert yaml.safe_load(out) == {
        **DEFAULTS,
        "AMQP_URI": "amqp://h/",
        "WEB_SERVER_ADDRESS": "127.0.0.1:9000",
        "max_workers": 4,
        "NESTED": {"PORT": "${SB_TEST_PORT:1}"},
        "X": [1],
    }


def test_show_config_masks_secrets(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SB_TEST_SECRET", "hunter2")
    path = tmp_path / "config.yaml"
    path.write_text(
        "AMQP_URI: amqp://guest:${SB_TEST_SECRET}@rabbit:5672/\n"
        "DB:\n"
        "  PASSWORD: ${SB_TEST_SECRET}\n"
        "API_TOKEN: ${SB_TEST_SECRET}\n"
    )
    out = show_config(capsys, "--config", str(path))
    assert "hunter2" not in out
    shown = yaml.safe_load(out)
    assert shown["AMQP_URI"] == "amqp://guest:********@rabbit:5672/"
    assert shown["DB"] == {"PASSWORD": "********"}
    assert shown["API_TOKEN"] == "********"


def test_show_config_leaves_the_global_config_alone(capsys):
    before = dict(sandbox.config)
    show_config(capsys, "-d", "max_workers=99")
    assert dict(sandbox.config) == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\n  b: 2\n", "config.yaml, line 2: invalid YAML: mapping values are not allowed"),
        ("a: ${SB_UNSET_XYZ:x\n", "config.yaml, line 1: key a: unclosed '${' in"),
        ("- 1\n", "the top level must be a mapping"),
    ],
)
def test_show_config_errors(capsys, tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert main(["show-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sandbox: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_show_config_missing_file(capsys, tmp_path):
    assert main(["show-config", "-c", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.startswith("sandbox: error: cannot read config file ")


# --- --define ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_workers=4", ("max_workers", 4)),
        ("FLAG=true", ("FLAG", True)),
        ("URI=amqp://a:b@c/", ("URI", "amqp://a:b@c/")),
        ("EQ=a=b", ("EQ", "a=b")),
        ("EMPTY=", ("EMPTY", None)),
        (" KEY =x", ("KEY", "x")),
    ],
)
def test_parse_definition(text, expected):
    assert parse_definition(text) == expected


@pytest.mark.parametrize(
    ("text", "message"), [("novalue", "KEY=VALUE"), ("=1", "KEY=VALUE"), ("K=[1", "not valid YAML")]
)
def test_parse_definition_errors(text, message):
    with pytest.raises(CommandError, match=message):
        parse_definition(text)
