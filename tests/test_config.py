import io

import pytest

from sandbox.config import DEFAULTS, ConfigDict, config, load_config, substitute
from sandbox.exceptions import ConfigurationError


@pytest.fixture(autouse=True)
def environ(monkeypatch):
    for name in ("SB_HOST", "SB_PORT", "SB_FLAG", "SB_MISSING", "SB_OTHER", "SB_USER", "SB-DASH"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- substitution -------------------------------------------------------------------------


def test_plain_variable(environ):
    environ.setenv("SB_HOST", "rabbit")
    assert load_config("uri: amqp://${SB_HOST}:5672/") == {"uri": "amqp://rabbit:5672/"}


def test_default_used_when_unset():
    assert load_config("host: ${SB_HOST:localhost}") == {"host": "localhost"}


def test_variable_wins_over_default(environ):
    environ.setenv("SB_HOST", "rabbit")
    assert load_config("host: ${SB_HOST:localhost}") == {"host": "rabbit"}


def test_nested_defaults(environ):
    text = "host: ${SB_HOST:${SB_OTHER:fallback}}"
    assert load_config(text) == {"host": "fallback"}
    environ.setenv("SB_OTHER", "other")
    assert load_config(text) == {"host": "other"}
    environ.setenv("SB_HOST", "first")
    assert load_config(text) == {"host": "first"}


def test_recursive_defaults_are_read_as_yaml(environ):
    text = "x: ${SB_HOST:${SB_OTHER:${SB_MISSING:deep}}-end}\nport: ${SB_HOST:${SB_PORT}}"
    environ.setenv("SB_PORT", "7")
    assert load_config(text) == {"x": "deep-end", "port": 7}


def test_unused_default_is_not_looked_up(environ):
    environ.setenv("SB_HOST", "set")
    assert load_config("host: ${SB_HOST:${SB_MISSING}}") == {"host": "set"}


def test_several_variables_in_one_value(environ):
    environ.setenv("SB_USER", "ada")
    text = "uri: amqp://${SB_USER}:${SB_MISSING:pw}@${SB_HOST:localhost}/"
    assert load_config(text) == {"uri": "amqp://ada:pw@localhost/"}


def test_values_are_read_as_yaml_scalars(environ):
    environ.setenv("SB_FLAG", "false")
    loaded = load_config(
        "port: ${SB_PORT:8000}\nflag: ${SB_FLAG}\nratio: ${SB_MISSING:0.5}\nnothing: ${SB_MISSING:}"
    )
    assert loaded == {"port": 8000, "flag": False, "ratio": 0.5, "nothing": None}


@pytest.mark.parametrize(
    ("value", "loaded"),
    [
        ("[1,2,3]", [1, 2, 3]),
        ('"1"', "1"),
        ("1", 1),
        ("a: [1, 2]  # a comment", {"a": [1, 2]}),
        ("hello world", "hello world"),
    ],
)
def test_a_value_is_read_as_yaml_as_nameko_does(environ, value, loaded):
    environ.setenv("SB_OTHER", value)
    assert load_config("x: ${SB_OTHER}") == {"x": loaded}


def test_a_value_inside_text_stays_text(environ):
    environ.setenv("SB_OTHER", "[1,2,3]")
    assert load_config("x: values ${SB_OTHER}") == {"x": "values [1,2,3]"}


def test_a_value_that_is_not_yaml_names_the_key(environ):
    environ.setenv("SB_OTHER", "{oops")
    with pytest.raises(ConfigurationError) as info:
        load_config("a: 1\nnested:\n  list:\n    - ${SB_OTHER}\n")
    message = str(info.value)
    assert message.startswith(
        "<string>, line 4: key nested.list[0]: '${SB_OTHER}' is not valid YAML once substituted"
    )
    assert "oops" not in message  # the environment's value, maybe a secret, is not shown
    assert message.endswith("!raw_env_var keeps a string")
    assert "\n" not in message


def test_variable_values_are_not_expanded_again(environ):
    environ.setenv("SB_OTHER", "${SB_MISSING}")
    assert load_config("x: ${SB_OTHER}") == {"x": "${SB_MISSING}"}


def test_raw_env_var_keeps_a_string(environ):
    environ.setenv("SB_PORT", "5672")
    environ.setenv("SB_OTHER", "[1,2,3]")
    loaded = load_config("port: !raw_env_var ${SB_PORT}\nlist: !raw_env_var ${SB_OTHER}")
    assert loaded == {"port": "5672", "list": "[1,2,3]"}


def test_explicit_env_var_tag_on_a_quoted_value():
    assert load_config("port: !env_var '${SB_PORT:99}'") == {"port": 99}


def test_explicit_env_var_tag_without_a_reference_keeps_the_text():
    assert load_config("port: !env_var '99'") == {"port": "99"}


def test_quoted_strings_are_untouched():
    text = "single: '${SB_MISSING}'\ndouble: \"${SB_MISSING:x}\""
    assert load_config(text) == {"single": "${SB_MISSING}", "double": "${SB_MISSING:x}"}


def test_nested_structures_are_substituted():
    # Flow collections end a plain scalar at "{", so a list uses block style.
    text = "LOGGING:\n  handlers:\n    - ${SB_MISSING:console}\n  level: ${SB_MISSING:10}\n"
    assert load_config(text) == {"LOGGING": {"handlers": ["console"], "level": 10}}


def test_an_unset_variable_without_default_is_empty():
    loaded = load_config(
        "alone: ${SB_MISSING}\ninside: a${SB_MISSING}b\nraw: !raw_env_var ${SB_MISSING}"
    )
    assert loaded == {"alone": None, "inside": "ab", "raw": ""}


def test_an_unset_variable_without_default_is_logged_once_per_reference(caplog):
    load_config("password: ${SB_MISSING_SECRET}\nport: ${SB_MISSING_PORT:5672}")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "the environment variable SB_MISSING_SECRET is not set: ${SB_MISSING_SECRET} reads as empty"
    ]


def test_a_name_is_anything_up_to_a_brace_colon_or_space(environ):
    environ.setenv("SB-DASH", "dashed")
    assert load_config("x: ${SB-DASH}") == {"x": "dashed"}


@pytest.mark.parametrize(
    ("text", "loaded"),
    [
        ('${SB_MISSING:"{name} {age}"}', "{name} {age}"),
        ("${SB_MISSING:[{a}, {b}]}", [{"a": None}, {"b": None}]),
        ('${SB_MISSING:"a } b"}', "a } b"),
        ("${SB_MISSING:'it''s }'}", "it's }"),
        ('${SB_MISSING:"say \\"}\\""}', 'say "}"'),
        ('${SB_MISSING:"${SB_OTHER:x}"}', "x"),
    ],
)
def test_braces_and_quotes_in_a_default(text, loaded):
    assert load_config(f"x: {text}") == {"x": loaded}


def test_a_malformed_reference_names_the_key():
    with pytest.raises(ConfigurationError) as info:
        load_config("a: 1\nLOGGING:\n  level: ${SB_HOST:abc\n")
    assert str(info.value) == (
        "<string>, line 3: key LOGGING.level: unclosed '${' in '${SB_HOST:abc'"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${SB_HOST", "expected ':' or '}'"),
        ("${SB_HOST:abc", "unclosed '\\${'"),
        ("${SB_HOST:{abc}", "unclosed '\\${'"),
        ("${}", "expected a variable name"),
        ("${SB HOST}", "expected ':' or '}'"),
        ('${SB_HOST:"abc}', "unclosed quote"),
        ("${SB_HOST:${SB_PORT}", "unclosed '\\${'"),
    ],
)
def test_malformed_references(text, message):
    with pytest.raises(ConfigurationError, match=message):
        substitute(text, {})


def test_substitute_with_an_explicit_environment():
    assert substitute("$ ${A} {x} ${B:${C:c}} ${D}.", {"A": "a"}) == "$ a {x} c ."


# --- sources and errors -----------------------------------------------------------------------


def test_load_from_path_and_from_file_object(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("AMQP_URI: memory://\nmax_workers: 3\n")
    expected = {"AMQP_URI": "memory://", "max_workers": 3}
    assert load_config(path) == expected
    assert load_config(str(path)) == expected
    with path.open() as stream:
        assert load_config(stream) == expected
    assert load_config(io.StringIO("{max_workers: 3}")) == {"max_workers": 3}


def test_empty_document_is_an_empty_config():
    assert load_config("") == {}
    assert load_config(io.StringIO("# nothing yet\n")) == {}


def test_missing_file():
    with pytest.raises(ConfigurationError, match="cannot read config file nowhere.yaml"):
        load_config("nowhere.yaml")


def test_broken_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line 3: invalid YAML: ")


def test_unsafe_tags_are_refused():
    with pytest.raises(ConfigurationError, match="line 1"):
        load_config("a: !!python/object/apply:os.system ['true']")


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigurationError, match="top level must be a mapping"):
        load_config("- a\n- b\n")


# --- the ConfigDict object ----------------------------------------------------------------------


def test_global_config_starts_with_defaults():
    assert isinstance(config, ConfigDict)
    assert dict(ConfigDict(DEFAULTS)) == DEFAULTS
    assert DEFAULTS["rpc_exchange"] == "nameko-rpc"
    assert DEFAULTS["AMQP_URI"] == "memory://"


def test_setup_replaces_content_with_defaults_plus_mapping():
    cfg = ConfigDict({"stale": 1})
    cfg.setup({"max_workers": 2, "EXTRA": "x"})
    assert dict(cfg) == {**DEFAULTS, "max_workers": 2, "EXTRA": "x"}


def test_patch_as_context_manager():
    cfg = ConfigDict({"a": 1, "nested": {"b": 2}})
    with cfg.patch({"a": 10, "c": 3}):
        assert dict(cfg) == {"a": 10, "nested": {"b": 2}, "c": 3}
        cfg["nested"]["b"] = 20
        cfg["d"] = 4
    assert dict(cfg) == {"a": 1, "nested": {"b": 2}}


def test_patch_with_clear():
    cfg = ConfigDict({"a": 1})
    with cfg.patch({"b": 2}, clear=True):
        assert dict(cfg) == {"b": 2}
    assert dict(cfg) == {"a": 1}


def test_patch_restores_after_an_exception():
    cfg = ConfigDict({"a": 1})
    with pytest.raises(RuntimeError), cfg.patch({"a": 2}):
        cfg.setup({})
        raise RuntimeError("boom")
    assert dict(cfg) == {"a": 1}


def test_patch_as_decorator_is_reusable():
    cfg = ConfigDict({"a": 1})
    seen = []

    @cfg.patch({"a": 2})
    def read():
        seen.append(cfg["a"])

    read()
    read()
    assert seen == [2, 2]
    assert cfg["a"] == 1


def test_patch_of_the_global_config():
    with config.patch({"AMQP_URI": "amqp://x"}):
        assert config["AMQP_URI"] == "amqp://x"
    assert config["AMQP_URI"] == DEFAULTS["AMQP_URI"]


def test_repr_and_str_mask_secrets():
    cfg = ConfigDict({"AMQP_URI": "amqp://guest:hunter2@host/", "DB_PASSWORD": "hunter2"})
    for text in (repr(cfg), str(cfg)):
        assert "hunter2" not in text
        assert text.startswith("ConfigDict({")
        assert "amqp://guest:********@host/" in text
    assert cfg["DB_PASSWORD"] == "hunter2"


def test_sandbox_config_is_the_global_object():
    import sandbox

    assert sandbox.config is config
