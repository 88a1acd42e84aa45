"""The agent's desk in headless Chromium (Playwright) for ``bench.pop_delay``: signed in,
with an observer on the ``#pop`` element that reports when a pop became visible and its
next animation frame, on the browser's own epoch clock; and how far that clock is from the
service's.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

from bench.pop_bed import AGENT_LOGIN, PASSWORD
from bench.pop_timing import Tally
from hotline.service import HotlineService

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SETUP_TIMEOUT_MS = 15_000

OBSERVER_JS = """
() => {
  const pop = document.getElementById('pop');
  if (!pop) throw new Error('no #pop on this page: not the desk');
  const now = () => performance.timeOrigin + performance.now();
  let last = '';
  new MutationObserver(() => {
    const id = pop.dataset.callId || '';
    if (pop.hidden || !id) { last = ''; return; }
    if (id === last) return;
    last = id;
    const dom = now();
    window.benchPopShown(id, dom);
    requestAnimationFrame(() => window.benchPopPainted(id, now()));
  }).observe(pop, { attributes: true, attributeFilter: ['hidden', 'data-call-id'] });
}
"""


@contextlib.asynccontextmanager
async def desk_page(service: HotlineService, tally: Tally) -> AsyncIterator[Any]:
    """Chromium with the agent signed in at /desk and the pop observer installed."""
    from playwright.async_api import async_playwright, expect

    if shutil.which(CHROMIUM) is None:
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium")
    base = f"http://{service.settings.web.host}:{service.settings.web.port}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(locale="zh-CN",
                                                viewport={"width": 1360, "height": 1000})
            page = await context.new_page()
            page.js_errors = []
            page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
            await page.expose_function("benchPopShown", tally.on_shown)
            await page.expose_function("benchPopPainted", tally.on_painted)
            await page.goto(f"{base}/desk/login")
            await page.fill("#login", AGENT_LOGIN)
            await page.fill("#password", PASSWORD)
            await page.click("#sign-in")
            await page.wait_for_url(f"{base}/desk/", timeout=SETUP_TIMEOUT_MS)
            await expect(page.locator("#link-state")).to_have_attribute(
                "data-state", "live", timeout=SETUP_TIMEOUT_MS)
            await page.evaluate(OBSERVER_JS)
            page.navigations = 0
            page.on("framenavigated",
                    lambda frame: setattr(page, "navigations", page.navigations + 1)
                    if frame == page.main_frame else None)
            yield page
        finally:
            await browser.close()


async def clock_offset_ms(page: Any, samples: int = 15) -> tuple[float, float]:
    """Browser epoch ms minus time.time() ms, at the shortest of ``samples`` round trips;
    returns (offset, half that round trip) -- the offset is known to within the latter."""
    best: tuple[float, float] | None = None
    for _ in range(samples):
        before = time.time() * 1000
        browser = await page.evaluate("() => performance.timeOrigin + performance.now()")
        after = time.time() * 1000
        half = (after - before) / 2
        if best is None or half < best[1]:
            best = (browser - (before + half), half)
    assert best is not None
    return best
