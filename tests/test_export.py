"""Exporting notebook cells to a module: what is kept, in which order, and what is reported."""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox.config import load_config
from sandbox.export import ExportError, export_cells
from sandbox.export.imports import ImportedName, render_imports
from sandbox.extensions import is_service_class
from sandbox.testing.services import worker_factory

PROJECT = Path(__file__).resolve().parents[1]


def export(*cells, **kwargs):
    kwargs.setdefault("source", "shop.ipynb")
    return export_cells([textwrap.dedent(cell) for cell in cells], **kwargs)


def body(result):
    """The module without its header comment."""
    return result.module.split("\n\n", 1)[1]


def ruff_check(tmp_path, text):
    """Run ruff with the project's settings on ``text``; return its report."""
    path = tmp_path / "exported.py"
    path.write_text(text)
    command = [sys.executable, "-m", "ruff", "check", "--no-cache"]
    command += ["--config", str(PROJECT / "pyproject.toml"), path.name]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def load_module(tmp_path, text, name="exported_services"):
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SETUP = """
%load_ext sandbox
import json, logging, os, re
from sandbox.testing.services import dummy, entrypoint_hook
from sandbox.timer import timer
"""

PRICES = """
# Prices are in cents.
BASE = 100  # one item
TAX = 20
UNUSED = 1


def with_tax(cents):
    return cents + cents * TAX // 100


def price(count):
    \"\"\"The price of ``count`` items, tax included.\"\"\"
    return with_tax(count * BASE)
"""

SHOP = """
class Shop:
    # The shop of the tests.
    name = "shop"

    @dummy
    def quote(self, count):
        return json.dumps({"price": price(count)})  # as JSON
"""

INTERACTIVE = """
%rpc shop.quote 3
!pip install requests
listing = !ls
sb.rpc.shop.quote(2)
print(price(3))
price
"""


def test_a_service_brings_its_helper_chain_and_nothing_else(tmp_path):
    result = export(SETUP, PRICES, SHOP, INTERACTIVE)
    assert result.services == ["Shop"]
    assert result.warnings == []
    expected = (
        "import json\n\nfrom sandbox.testing.services import dummy\n\n"
        + textwrap.dedent(PRICES).strip().replace("\nUNUSED = 1\n", "\n")
        + "\n\n\n"
        + textwrap.dedent(SHOP).strip()
        + "\n"
    )
    assert body(result) == expected
    module = load_module(tmp_path, result.module)
    assert is_service_class(module.Shop)
    assert worker_factory(module.Shop).quote(2) == '{"price": 240}'


def test_header_names_the_notebook_and_how_to_run(tmp_path):
    result = export(SETUP, PRICES, SHOP, source="work/shop.ipynb", module_name="shop_services")
    assert result.module.splitlines()[:2] == [
        "# Services exported from work/shop.ipynb by sandbox: edit the notebook and export again.",
        "# Run them with: sandbox run shop_services --config config.yaml",
    ]
    assert result.config.startswith("# Config for shop_services.py, exported from work/shop.ipynb")


def test_only_the_imported_names_used_are_kept():
    result = export(
        """
        from collections import OrderedDict, defaultdict, namedtuple
        import os.path, sys as system
        from sandbox.rpc import rpc as remote, RpcProxy
        from sandbox.testing.services import dummy

        class Paths:
            name = "paths"

            @dummy
            def join(self, *parts):
                counts = defaultdict(int)
                return os.path.join(*parts), system.platform, counts
        """
    )
    imports = body(result).split("\n\n\n")[0]
    assert imports == (
        "import os.path\nimport sys as system\nfrom collections import defaultdict\n\n"
        "from sandbox.testing.services import dummy"
    )


def test_class_level_constants_and_helper_classes():
    result = export(
        SETUP,
        """
        LIMIT = 10
        DEFAULT_NAME = "limits"
        IGNORED = 3


        class Limits:
            MAX = LIMIT * 2

            @classmethod
            def clamp(cls, value):
                return min(value, cls.MAX)


        class Limited:
            name = "limited"
            ceiling = Limits.MAX

            @dummy
            def clamp(self, value):
                return Limits.clamp(value)
        """,
    )
    text = body(result)
    assert "LIMIT = 10" in text and "class Limits:" in text and "IGNORED" not in text
    assert "DEFAULT_NAME" not in text
    assert text.index("LIMIT = 10") < text.index("class Limits:") < text.index("class Limited:")


def test_a_class_attribute_is_not_visible_in_methods_so_the_module_constant_is_kept():
    result = export(
        SETUP,
        'TIMEOUT = 5\nunused = "x"\n',
        """
        class Waiter:
            name = "waiter"
            TIMEOUT = 1

            @dummy
            def wait(self):
                unused = 2  # a local: does not need the module's
                return TIMEOUT, unused
        """,
    )
    assert "TIMEOUT = 5" in result.module
    assert 'unused = "x"' not in result.module


def test_the_last_definition_wins_and_moves_before_its_users(tmp_path):
    result = export(
        SETUP,
        "INTERVAL = 60\n\ndef greeting():\n    return 'hello'\n",
        """
        class Ticker:
            name = "ticker"

            @timer(interval=INTERVAL)
            def tick(self):
                return greeting()

            @dummy
            def version(self):
                return 1
        """,
        """
        class Ticker:
            name = "ticker"

            @timer(interval=INTERVAL)
            def tick(self):
                return greeting()

            @dummy
            def version(self):
                return 2
        """,
        # Redefined after the service: the module defines them before it (INTERVAL is used
        # by the class statement itself).
        "INTERVAL = 30\n\ndef greeting():\n    return 'hi'\n",
    )
    text = body(result)
    assert text.count("class Ticker") == 1 and "return 2" in text and "return 1" not in text
    assert "INTERVAL = 60" not in text and "'hello'" not in text
    assert text.index("INTERVAL = 30") < text.index("class Ticker")
    module = load_module(tmp_path, result.module)
    assert worker_factory(module.Ticker).tick() == "hi"


def test_a_later_class_with_the_same_service_name_replaces_the_earlier_one():
    result = export(
        SETUP,
        'class GreeterV1:\n    name = "greeter"\n\n    @dummy\n    def hi(self):\n        pass\n',
        'class Greeter:\n    name = "greeter"\n\n    @dummy\n    def hi(self):\n        pass\n',
    )
    assert result.services == ["Greeter"]
    assert "GreeterV1" not in result.module


def test_amendments_follow_their_definition_and_config_changes_stay_out():
    result = export(
        SETUP,
        """
        from sandbox import config
        config["GREETING"] = "hello"
        ROUTES = {}
        COUNT = 1
        """,
        """
        def home():
            return "home"


        ROUTES["/"] = home
        COUNT += 1
        ROUTES["/about"] = "about"
        """,
        """
        class Router:
            name = "router"

            @dummy
            def route(self, path):
                return ROUTES[path], COUNT
        """,
    )
    text = body(result)
    assert "config" not in text
    order = ["ROUTES = {}", "COUNT = 1", "def home", 'ROUTES["/"] = home', "COUNT += 1", "about"]
    positions = [text.index(piece) for piece in order]
    assert positions == sorted(positions)


def test_magics_shell_commands_and_interactive_code_are_left_out():
    result = export(
        SETUP,
        PRICES,
        SHOP,
        INTERACTIVE,
        '%%http POST /quote\n{"count": 2}\n',
        "%%time\nprice(2)\n",
        "sb.dispatch('shop', 'sold', {'count': 1})\ndisplay(price(1))\nif True:\n    x = 3\n",
    )
    for interactive in ("get_ipython", "sb.", "print(", "display", "pip", "listing", "x = 3"):
        assert interactive not in result.module
    assert result.warnings == []


def test_unresolvable_names_are_each_reported(tmp_path):
    (tmp_path / "mylib.py").write_text("def helper():\n    return 1\n")
    result = export(
        SETUP,
        "from mylib import helper\nfrom .relative import thing\nimport not_installed_xyz\n",
        "for factor in range(3):\n    pass\n",
        "with open(__file__) as handle:\n    pass\n",
        """
        class Needy:
            name = "needy"
            scale = factor * 2

            @dummy
            def go(self):
                return helper(), thing, not_installed_xyz, handle, sb.rpc, undefined_thing
        """,
        local_dir=tmp_path,
    )
    assert result.warnings == [
        "'factor' is only set by running code (a for loop in cell 3); used by Needy",
        "'handle' is only set by running code (a with block in cell 4); used by Needy",
        "'sb' is the notebook's client; in a service, call others through "
        "RpcProxy/EventDispatcher; used by Needy",
        "'undefined_thing' is not defined in the notebook; used by Needy",
        "'helper' is imported from mylib, a local file: ship mylib with the module",
        "'not_installed_xyz' is imported from not_installed_xyz, which is not installed here",
        "'thing' is imported from .relative, a relative import: make it absolute",
    ]
    assert result.module.splitlines()[2] == (
        "# Not defined here (see the export warnings): factor, handle, sb, undefined_thing"
    )
    # The imports are kept, so the module fails where the notebook would.
    assert "from mylib import helper" in result.module


def test_comments_are_kept_above_inside_and_after_statements():
    result = export(SETUP, PRICES, SHOP)
    for comment in ("# Prices are in cents.", "BASE = 100  # one item", "# The shop of the tests."):
        assert comment in result.module
    assert '"""The price of ``count`` items, tax included."""' in result.module
    assert 'return json.dumps({"price": price(count)})  # as JSON' in result.module


def test_a_comment_separated_by_a_blank_line_stays_with_its_neighbours_only():
    result = export(
        SETUP,
        "# About the whole cell\n\nimport math\n# the answer\nANSWER = 42\n\n\n# dropped\nx = 1\n",
        'class A:\n    name = "a"\n\n    @dummy\n    def m(self):\n        return ANSWER\n',
    )
    assert "# the answer\nANSWER = 42" in result.module
    assert "About the whole cell" not in result.module and "# dropped" not in result.module


def test_two_exports_are_byte_identical():
    cells = [SETUP, PRICES, SHOP, INTERACTIVE, "for i in range(2):\n    pass\n"]
    first, second = export(*cells), export(*cells)
    assert first.module.encode() == second.module.encode()
    assert first.config.encode() == second.config.encode()
    assert first.warnings == second.warnings


def test_selection_by_class_or_service_name():
    calc = 'class Calc:\n    name = "calc"\n\n    @dummy\n    def add(self, a, b):\n        pass\n'
    cells = (SETUP, PRICES, SHOP, calc)
    assert export(*cells).services == ["Shop", "Calc"]
    only_calc = export(*cells, services=["calc"])
    assert only_calc.services == ["Calc"] and "class Shop" not in only_calc.module
    assert "BASE" not in only_calc.module
    assert export(*cells, services=["Calc", "Shop"]).services == ["Shop", "Calc"]
    with pytest.raises(ExportError, match=r"no service class 'nope' .*Shop \(shop\), Calc"):
        export(*cells, services=["nope"])


def test_a_class_asked_for_by_name_is_exported_with_a_warning():
    result = export(SETUP, "class Plain:\n    value = 1\n", services=["Plain"])
    assert result.services == ["Plain"]
    assert result.warnings == [
        "Plain does not look like a service class (no str 'name' or no entrypoint found); "
        "exported as asked"
    ]


def test_no_service_is_an_error():
    with pytest.raises(ExportError, match="no service classes in the notebook"):
        export(SETUP, PRICES)


@pytest.mark.parametrize(
    ("imports", "decorator", "is_service"),
    [
        ("from sandbox.rpc import rpc", "@rpc", True),
        ("from sandbox.rpc import rpc as remote", "@remote", True),
        ("from sandbox import rpc", "@rpc.rpc", True),
        ("import sandbox.rpc", "@sandbox.rpc.rpc", True),
        ("from sandbox.web.handlers import http", '@http("GET", "/")', True),
        ("from sandbox.events import event_handler", '@event_handler("a", "b")', True),
        ("from sandbox.timer import timer", "@timer(interval=1)", True),
        ("from sandbox.messaging import consume", "@consume(queue)", True),
        ("from sandbox.extensions import Entrypoint", "@Entrypoint.decorator", True),
        (
            "from sandbox.extensions import Entrypoint\ncustom = Entrypoint.decorator",
            "@custom",
            True,
        ),
        ("from mylib import rpc", "@rpc", False),
        ("from sandbox.utils import sanitize_url", "@sanitize_url", False),
        ("import functools", "@functools.cache", False),
        ("rpc = staticmethod", "@rpc", False),
    ],
)
def test_service_detection_is_decided_from_the_source(imports, decorator, is_service):
    cell = f'{imports}\n\nclass Candidate:\n    name = "candidate"\n\n    {decorator}\n'
    cell += "    def method(self):\n        pass\n"
    if is_service:
        assert export(cell).services == ["Candidate"]
    else:
        with pytest.raises(ExportError):
            export(cell)


@pytest.mark.parametrize("name_line", ["name = 3", "name = NAME", "label = 'x'", "# name = 'x'"])
def test_a_service_needs_a_str_literal_name(name_line):
    cell = f"from sandbox.rpc import rpc\n\nclass Candidate:\n    {name_line}\n\n    @rpc\n"
    cell += "    def method(self):\n        pass\n"
    with pytest.raises(ExportError):
        export(cell)


def test_a_cell_that_does_not_compile_is_reported_and_skipped():
    broken_helper = PRICES + "\n\ndef with_tax(cents):\n    nonlocal TAX\n"
    result = export(SETUP, PRICES, SHOP, "def broken(:\n    pass\n", broken_helper)
    assert result.warnings == [
        "cell 4 is not valid Python and was skipped: invalid syntax (line 1)",
        "cell 5 is not valid Python and was skipped: no binding for nonlocal 'TAX' found (line 17)",
    ]
    assert result.services == ["Shop"]
    assert "return cents + cents * TAX // 100" in result.module


def test_a_top_level_await_is_allowed_but_its_result_cannot_be_exported():
    result = export(
        SETUP,
        "import asyncio\nDELAY = await asyncio.sleep(0, 1)\n",
        'class S:\n    name = "s"\n\n    @dummy\n    def m(self):\n        return DELAY\n',
    )
    assert result.warnings == [
        "'DELAY' is only set by running code (an await in cell 2); used by S"
    ]


def test_future_imports_and_statements_sharing_a_line():
    result = export(
        "from __future__ import annotations\n" + SETUP,
        "A = 1; B = A + 1; print(B)\n",
        'class S:\n    name = "s"\n\n    @dummy\n    def m(self) -> int:\n        return B\n',
    )
    assert result.module.split("\n\n")[1] == "from __future__ import annotations"
    assert "A = 1\nB = A + 1\n" in result.module and "print" not in result.module
    assert result.warnings == []


def test_exports_pass_ruff_with_the_project_settings(tmp_path):
    calc = """
    import math
    from sandbox.rpc import rpc, RpcProxy
    from sandbox.events import EventDispatcher, event_handler
    from sandbox.web.handlers import http
    from collections import OrderedDict as Ordered
    from __future__ import annotations


    class Calc:
        name = "calc"
        dispatch = EventDispatcher()
        shop = RpcProxy("shop")

        @rpc
        def root(self, value: float) -> float:
            self.dispatch("rooted", Ordered(value=value))
            return math.sqrt(value)

        @http("GET", "/price/<int:count>")
        def price(self, request, count):
            return str(price(count))

        @event_handler("shop", "sold")
        def sold(self, payload):
            return self.shop.quote(payload["count"])
    """
    results = [export(SETUP, PRICES, SHOP, INTERACTIVE, calc), export(SETUP, PRICES, SHOP)]
    for result in results:
        code, report = ruff_check(tmp_path, result.module)
        assert code == 0, report + "\n" + result.module


def test_import_layout_matches_ruff_for_mixed_sections(tmp_path):
    (tmp_path / "localmod.py").write_text("")
    names = [
        ImportedName("sandbox.rpc", "rpc"),
        ImportedName("sandbox.rpc", "RpcProxy"),
        ImportedName("sandbox.rpc", "TIMEOUT"),
        ImportedName("sandbox.rpc", "rpc", "remote"),
        ImportedName("os.path"),
        ImportedName("json", None, "j"),
        ImportedName("Zeta"),
        ImportedName("alpha10"),
        ImportedName("alpha2"),
        ImportedName("localmod"),
        ImportedName("", "sibling", None, 1),
        ImportedName("__future__", "annotations"),
        ImportedName("typing", "a_member_name_long_enough_to_need_wrapping_the_whole_line"),
        ImportedName("typing", "another_member_name_long_enough"),
    ]
    block = render_imports(names, tmp_path)
    assert block.startswith("from __future__ import annotations\n\nimport json as j\n")
    assert "from typing import (\n    a_member_name" in block
    used = "".join(f"    {n.bound},\n" for n in names if n.module != "__future__")
    code, report = ruff_check(tmp_path, f"{block}\n\nUSED = [\n{used}]\n")
    assert code == 0, report + "\n" + block


def test_config_keeps_the_keys_set_with_secrets_as_placeholders(monkeypatch):
    result = export(
        SETUP,
        PRICES,
        SHOP,
        """
        from sandbox import config
        config["AMQP_URI"] = "amqp://guest:guest@old-host:5672/"
        config["GREETING"] = "hello"
        config["DATABASE"] = {"url": "postgresql://app:s3cret@db/app", "pool": 4}
        config.update({"API_TOKEN": "t0ken"}, max_workers=4)
        config["COMPUTED"] = os.environ["HOME"]
        config["WEBHOOK"] = "https://example.com/hook?token=abc&x=1"
        """,
        "%sandbox connect amqp://user:p4ss@rabbit:5672/vhost\n",
    )
    assert result.config.splitlines()[1] == (
        "# Secrets are read from the environment: "
        "set AMQP_PASSWORD, API_TOKEN, DATABASE_PASSWORD, WEBHOOK_TOKEN."
    )
    for secret in ("p4ss", "s3cret", "t0ken", "abc", "guest:guest"):
        assert secret not in result.config
    assert result.warnings == [
        "config key 'COMPUTED' is computed in cell 4: not exported, set it in config.yaml"
    ]
    for name, value in [
        ("AMQP_PASSWORD", "p4ss"),
        ("API_TOKEN", "t0ken"),
        ("DATABASE_PASSWORD", "s3cret"),
        ("WEBHOOK_TOKEN", "abc"),
    ]:
        monkeypatch.setenv(name, value)
    assert load_config(result.config) == {
        "AMQP_URI": "amqp://user:p4ss@rabbit:5672/vhost",
        "WEB_SERVER_ADDRESS": "0.0.0.0:8000",
        "API_TOKEN": "t0ken",
        "DATABASE": {"url": "postgresql://app:s3cret@db/app", "pool": 4},
        "GREETING": "hello",
        "WEBHOOK": "https://example.com/hook?token=abc&x=1",
        "max_workers": 4,
    }


def test_config_from_sb_connect_and_from_live_settings():
    connected = export(SETUP, PRICES, SHOP, 'sb.connect("amqp://guest:pw@127.0.0.1:5672/")\n')
    assert (
        "AMQP_URI: ${AMQP_URI:amqp://guest:${AMQP_PASSWORD}@127.0.0.1:5672/}\n" in connected.config
    )
    live = export(
        SETUP,
        PRICES,
        SHOP,
        settings={
            "AMQP_URI": "memory://",
            "WEB_SERVER_ADDRESS": "127.0.0.1:8123",
            "max_workers": 10,  # the default: left out
            "SESSION_SECRET": "xyz",
            "CLIENT": object(),
        },
    )
    assert live.config.splitlines()[2:] == [
        "AMQP_URI: ${AMQP_URI:amqp://guest:guest@localhost:5672/}",
        "WEB_SERVER_ADDRESS: ${WEB_SERVER_ADDRESS:0.0.0.0:8123}",
        "SESSION_SECRET: ${SESSION_SECRET}",
    ]
    assert live.warnings == ["config key 'CLIENT' holds a object: not exported"]


def test_write_puts_config_yaml_beside_the_module(tmp_path):
    result = export(SETUP, PRICES, SHOP)
    module_path, config_path = result.write(tmp_path / "services.py")
    assert config_path == tmp_path / "config.yaml"
    assert module_path.read_text() == result.module
    assert config_path.read_text() == result.config
