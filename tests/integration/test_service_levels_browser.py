"""The service-level figures in a real browser (Debian's Chromium through Playwright): the
wallboard's tiles follow the scripted day of calls (tests/service_level_calls.py) over its
websocket until they show the figures worked out by hand, and the console's service-level
page draws them with the targets as lines and the figures below target marked in words.

Set HOTLINE_SCREENSHOTS=1 to write docs/screenshots/console-service-levels.png and
console-wallboard-levels.png.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator

import pytest

from crm.reports import service_levels as levels
from crm.storage.db import SessionFactory
from hotline.settings import REPO_ROOT
from tests.service_level_calls import DAY, DAY_TOTAL, PASSWORD, Hotline, crm_side, rounded

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "console-service-levels.png"
WALLBOARD_SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "console-wallboard-levels.png"
QUICK_MS = 5_000
PLAY_MS = 30_000
"""Bound for the whole scripted day to be written and pushed."""


@pytest.fixture
async def hotline(sessions: SessionFactory, db_url: str) -> AsyncIterator[Hotline]:
    async with crm_side(sessions, db_url) as running:
        await running.server.start_server()
        yield running


async def signed_in(browser, hotline: Hotline, path: str):  # type: ignore[no-untyped-def]
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1360, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    base = str(hotline.server.make_url("")).rstrip("/")
    await page.goto(f"{base}{path}")
    await page.wait_for_url(f"{base}/console/login**", timeout=QUICK_MS)
    await page.fill("#login", "supervisor1")
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(f"{base}{path}", timeout=QUICK_MS)
    return page


async def test_wallboard_and_dashboard_show_the_hand_worked_figures(
        hotline: Hotline, browser) -> None:  # type: ignore[no-untyped-def]
    expected = rounded(DAY_TOTAL)
    page = await signed_in(browser, hotline, "/console/")
    await expect(page.locator("#link-state")).to_have_attribute("data-state", "live",
                                                               timeout=QUICK_MS)
    await expect(page.locator("#level-offered")).to_have_attribute("data-value", "0")
    await expect(page.locator("#level-connection_rate")).to_have_attribute("data-value", "")

    await hotline.play()  # pushed to the open page as the calls end
    for figure in levels.FIGURES:
        await expect(page.locator(f"#level-{figure.key}")).to_have_attribute(
            "data-value", levels.value_text(expected[figure.key]), timeout=PLAY_MS)
    connection = page.locator("#level-connection_rate")
    await expect(connection).to_have_class(re.compile(r"\bbelow-target\b"))
    await expect(connection.locator(".big")).to_have_text("54.5 %")  # 6 of 11
    await expect(connection.locator(".flag")).to_be_visible()
    await expect(connection.locator(".flag")).to_have_text("▼ 低于目标")
    await expect(page.locator("#level-answered_within_rate .flag")).to_be_visible()
    satisfaction = page.locator("#level-satisfaction_rate")  # 2 of 3 >= the 60 % target
    await expect(satisfaction).not_to_have_class(re.compile(r"\bbelow-target\b"))
    await expect(satisfaction.locator(".flag")).to_be_hidden()
    await expect(satisfaction.locator(".big")).to_have_text("66.7 %")
    # seconds in the reader's language, written by console.js from the pushed value
    await expect(page.locator("#level-wait_p90_s .big")).to_have_text("40.0 秒")
    assert page.js_errors == []
    if os.environ.get("HOTLINE_SCREENSHOTS") == "1":
        await page.screenshot(path=str(WALLBOARD_SCREENSHOT), full_page=True)

    await page.goto(str(hotline.server.make_url(f"/console/service-levels?from={DAY}&to={DAY}")))
    for figure in levels.FIGURES:
        await expect(page.locator(f"#level-{figure.key}")).to_have_attribute(
            "data-value", levels.value_text(expected[figure.key]))
    await expect(page.locator("#level-connection_rate .flag")).to_have_text("▼ 低于目标")
    await expect(page.locator("#level-satisfaction_rate .flag")).to_have_count(0)
    # The trend of 接通率: the target as a dashed line at 95 %, the day's point below it.
    target = page.locator("#chart-connection_rate line.target")
    await expect(target).to_have_attribute("data-value", "95")
    point = page.locator("#chart-connection_rate circle.point")
    await expect(point).to_have_attribute("data-value", "54.55")  # 6/11 in percent
    await expect(point).to_have_attribute("data-below", "true")
    assert await point.evaluate("p => p.getBoundingClientRect().top") > \
        await target.evaluate("l => l.getBoundingClientRect().top")  # drawn under the line
    satisfied = page.locator("#chart-satisfaction_rate circle.point")
    await expect(satisfied).to_have_attribute("data-value", "66.67")
    await expect(satisfied).not_to_have_attribute("data-below", "true")
    await expect(page.locator("#chart-satisfaction_rate line.target")).to_have_attribute(
        "data-value", "60")
    await expect(page.locator("#chart-abandon_rate line.target")).to_have_count(0)
    row = page.locator(f'#levels-table tr[data-day="{DAY}"]')
    await expect(row.locator('td[data-key="wait_p90_s"]')).to_have_text("40.0 秒")
    await expect(row.locator('td[data-key="handle_avg_s"]')).to_have_text("138.0 秒")
    if os.environ.get("HOTLINE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert page.js_errors == []
