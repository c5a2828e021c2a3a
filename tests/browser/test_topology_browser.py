"""sb.topology() in a real browser: JupyterLab in headless Chromium, messages flowing.

A burst of 10,000 events runs while the page counts its animation frames and the snapshots
the kernel syncs: the front end must keep drawing (a generous floor of frames a second) and
get a few snapshots a second, not one per message. The numbers are printed; the screenshot,
taken with dots on the edges, lands in test-artifacts/topology.png.
"""

from __future__ import annotations

import pytest

from tests.browser.lab import ARTIFACTS, READY, jupyter_lab, needs_chromium, notebook_page

pytestmark = needs_chromium

BURST = 10_000

CELLS = [
    "%load_ext sandbox",
    "from sandbox.events import event_handler\nfrom sandbox.rpc import rpc\n\n"
    "class Shop:\n    name = 'shop'\n\n    @rpc\n    def order(self, item):\n"
    "        return item\n\n"
    "class Billing:\n    name = 'billing'\n\n    @event_handler('shop', 'ordered')\n"
    "    def bill(self, payload):\n        return payload",
    "view = sb.topology()\nview",
    # In a thread, so the kernel is idle and hears the click that starts the burst.
    "import threading, time\n\ndef burst():\n    while not view.widget.selected:\n"
    "        time.sleep(0.05)\n"
    f"    for n in range({BURST}):\n        sb.dispatch('shop', 'ordered', {{'n': n}})\n\n"
    "threading.Thread(target=burst, daemon=True).start()",
]

COUNT_FRAMES = """() => {
  window.sbFrames = 0; window.sbLongest = 0; let last = performance.now();
  const tick = (now) => { window.sbFrames += 1; window.sbLongest = Math.max(window.sbLongest,
    now - last); last = now; if (!window.sbStop) requestAnimationFrame(tick); };
  requestAnimationFrame(tick); window.sbStart = performance.now(); }"""

STOP_FRAMES = """(root) => { window.sbStop = true; return { frames: window.sbFrames,
  seconds: (performance.now() - window.sbStart) / 1000, longest: window.sbLongest,
  syncs: Number(root.dataset.syncs || 0), launched: Number(root.dataset.launched || 0) }; }"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from jupyter_lab(tmp_path_factory.mktemp("lab"), "topology", CELLS)


def test_topology_keeps_drawing_through_a_burst(lab):
    shot = ARTIFACTS / "topology.png"
    with notebook_page(lab, ARTIFACTS / "topology-failure.png", height=1200) as page:
        root = page.locator(".sandbox-topology")
        queue = root.locator("g.node.queue[data-id='queue:evt-shop-ordered--billing.bill']")
        queue.wait_for(timeout=60_000)
        page.wait_for_function(READY, timeout=60_000)  # the burst's thread waits for us

        syncs_before = int(root.get_attribute("data-syncs") or 0)
        page.evaluate(COUNT_FRAMES)
        exchange = root.locator("g.node.exchange[data-id='exchange:shop.events']")
        exchange.click()  # shows its details, and starts the burst
        root.locator("circle.dot").first.wait_for(timeout=60_000)
        root.screenshot(path=str(shot))
        done = root.locator("g.node.exchange text", has_text=f"{BURST} published")
        done.wait_for(timeout=180_000)
        measured = page.evaluate(STOP_FRAMES, root.element_handle())

        fps = measured["frames"] / measured["seconds"]
        syncs = measured["syncs"] - syncs_before
        print(
            f"\nburst of {BURST}: {measured['seconds']:.1f} s, {fps:.1f} frames/s, "
            f"longest frame {measured['longest']:.0f} ms, {syncs} snapshots synced "
            f"({syncs / measured['seconds']:.1f}/s), {measured['launched']} dots launched; "
            f"screenshot: {shot}"
        )
        assert fps >= 5  # generous: an idle page draws 60
        assert syncs / measured["seconds"] <= 10  # the kernel sends at most 4 a second
        assert measured["launched"] > 0
        assert (
            "--ordered--> evt-shop-ordered--billing.bill"
            in root.locator(".topology-details").inner_text()
        )
        queue.click()
        details = root.locator(".topology-details", has_text="consumed by: billing")
        details.wait_for(timeout=30_000)
