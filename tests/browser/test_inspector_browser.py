"""The widgets in a real browser: JupyterLab in headless Chromium.

A notebook starts a service and shows the call form and the inspector; a click on Fire must
bring the reply as a JSON tree, a row in the inspector, and, once that row is selected, the
request and response trees. The screenshot lands in test-artifacts/inspector.png.
"""

from __future__ import annotations

import pytest

from tests.browser.lab import ARTIFACTS, jupyter_lab, needs_chromium, notebook_page

pytestmark = needs_chromium

CELLS = [
    "%load_ext sandbox",
    "from sandbox.rpc import rpc\n\n"
    "class Greeter:\n    name = 'greeter'\n\n    @rpc\n    def hello(self, name):\n"
    "        return {'greeting': f'Hello, {name}!', 'length': len(name)}",
    "[sb.rpc.greeter.hello(name)['greeting'] for name in ('Grace', 'Linus')]",
    "form = sb.call_form()\nform.choose('greeter.hello')\nform.args_widget.value = '[\"Ada\"]'\n"
    "form",
    "sb.inspect()",
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from jupyter_lab(tmp_path_factory.mktemp("lab"), "inspector", CELLS)


def test_fire_from_the_call_form_and_inspect_the_reply(lab):
    with notebook_page(lab, ARTIFACTS / "inspector-failure.png") as page:
        fire = page.locator("button.jupyter-button:has-text('Fire')")
        fire.wait_for(timeout=60_000)
        rows = page.locator(".sandbox-rows select")
        rows.wait_for(timeout=30_000)
        fire.click()

        form = page.locator(".widget-vbox", has=fire).last
        reply = form.locator(".jp-RenderedJSON")
        reply.wait_for(timeout=20_000)
        assert "Hello, Ada!" in reply.inner_text()

        # Grace's, Linus's, then Ada's call from the form: the newest is listed first.
        rows.locator("option").nth(2).wait_for(state="attached", timeout=20_000)
        row = rows.locator("option").first
        assert "RPC" in row.inner_text() and "greeter.hello" in row.inner_text()
        rows.select_option(row.get_attribute("value"))
        detail = page.locator(".widget-output .jp-RenderedJSON", has_text="request")
        detail.first.wait_for(timeout=20_000)
        trees = page.locator(".widget-output .jp-RenderedJSON").all_inner_texts()
        assert any("Ada" in t and "request" in t for t in trees)
        assert any("Hello, Ada!" in t and "response" in t for t in trees)

        inspector = page.locator(".jp-OutputArea-output", has=rows)
        inspector.screenshot(path=str(ARTIFACTS / "inspector.png"))
