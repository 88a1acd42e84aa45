"""The service-level figures of real calls (Asterisk 22, SIPp callers and a SIPp agent phone,
the running hotline service), against the figures worked out by hand for them, on the
wallboard and the service-level page in a real browser, in the console's CSV, and through the
open API (JSON and CSV) over real HTTP.

Four calls, one after the other:
1. 张三 asks for a person (key 2); the agent phone answers at once (the wait is what the
   queue takes to ring it: well under 15 s), hangs up after 1.5 s; 张三 rates 满意 (4).
2. A caller asks for a person while no agent is in the queue and hangs up as soon as the
   queue has them: abandoned, in under 5 s.
3. 张三 keys a case number and hears its status, then hangs up: finished in self-service.
4. A caller hangs up during the greeting: an IVR hang-up.

The keys are those of today's menu (the intake without menus changes them: see AGENT_KEYS).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from datetime import datetime
from fractions import Fraction as F
from typing import Any

import aiohttp
import pytest

from crm.agents import accounts as agents
from crm.agents import tokens as api_tokens
from crm.reports import service_levels as levels
from crm.telephony.events import AgentAnswered, CallerAbandoned, CallerQueued, CallStarted
from hotline.service import HotlineService, hotline_zone
from hotline.tools.sipp import place_call
from tests.integration.service_fixtures import CallWatcher
from tests.integration.test_speech_ivr import calling, case_of, step
from tests.integration.test_surveys import agent_in_queue
from tests.service_level_calls import ensure_callback_table, rounded

pytestmark = pytest.mark.asterisk

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

PASSWORD = "service-levels-live-pw"
AGENT_KEYS = "2"
"""张三 (Mandarin on file, so no language menu): 2 at the main menu asks for a person."""
RATING_KEYS = "," * 9 + "4" + ",,,4,,,4,,,4"
"""满意 (4), keyed from 9.75 s on every 3 s until the survey hears it (see test_surveys)."""
QUICK_MS = 5_000
PUSH_MS = 20_000

EXPECTED: dict[str, Any] = {
    "offered": 4, "queued": 2,            # calls 1 and 2 reached the queue
    "answered": 1, "answered_within": 1,  # call 1, answered at once
    "abandoned": 1, "abandoned_short": 1,  # call 2, gone as soon as it was queued
    "left_queue": 0, "self_service": 1, "ivr_hangup": 1, "in_progress": 0,
    "connection_rate": F(1 + 1, 4),       # answered 1 + self-service 3, of 4
    "answered_within_rate": F(1, 2),      # of the 2 that reached the queue
    "abandon_rate": F(1, 2), "short_abandon_rate": F(1, 2),
    "self_service_rate": F(1, 4),
    "callbacks_requested": 0, "callbacks_pending": 0, "callbacks_completed": 0,
    "callbacks_completion_rate": None,
    "surveys_rated": 1, "surveys_satisfied": 1, "satisfaction_rate": F(1), "average_score": F(4),
    "below_target": ["connection_rate", "answered_within_rate"],  # 50 % < 95 %, 50 % < 90 %
}


@pytest.fixture
async def service(hotline: HotlineService) -> HotlineService:
    from crm.demo_data import seed_demo

    await seed_demo(hotline.settings.database_url)
    await agents.set_password(hotline.sessions, "supervisor1", PASSWORD)
    await ensure_callback_table(hotline.sessions)
    hotline.settings.survey.comment_silence_seconds = 1.0  # no comment: a short silence
    return hotline


def base_url(service: HotlineService) -> str:
    return f"http://{service.settings.web.host}:{service.settings.web.port}"


async def wallboard_page(browser, service: HotlineService):  # type: ignore[no-untyped-def]
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1360, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    await page.goto(f"{base_url(service)}/console/")
    await page.wait_for_url(f"{base_url(service)}/console/login**", timeout=QUICK_MS)
    await page.fill("#login", "supervisor1")
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(f"{base_url(service)}/console/", timeout=QUICK_MS)
    await expect(page.locator("#link-state")).to_have_attribute("data-state", "live",
                                                               timeout=QUICK_MS)
    return page


async def answered_and_rated(service: HotlineService) -> None:
    async with agent_in_queue(service, ring_ms=200, hold_ms=1500) as phone:
        call = asyncio.ensure_future(place_call(
            service.settings, caller_number="13800138000", caller_name="张三",
            keys=AGENT_KEYS + RATING_KEYS, hold_ms=40_000, wait_for_bye=True))
        try:
            await phone.wait_answered(20)
            assert await phone.wait_hangup(10) == "local"  # the agent hung up
            survey = await service.surveys.wait_finished(lambda s: True, within=45)
            result = await asyncio.wait_for(call, 20)
        finally:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
    assert result.answered and (survey.outcome, survey.score) == ("rated", 4)


async def abandoned_at_once(service: HotlineService, watcher: CallWatcher) -> None:
    seen = len(watcher.events)
    async with calling(place_call(service.settings, caller_number="13900139000",
                                  caller_name="李秀英", keys=AGENT_KEYS, hold_ms=60_000)):
        await watcher.wait_for(lambda e: e in watcher.events[seen:]
                               and isinstance(e, CallerQueued), within=30)
    await watcher.wait_for(lambda e: e in watcher.events[seen:]
                           and isinstance(e, CallerAbandoned), within=10)


async def self_service(service: HotlineService, watcher: CallWatcher) -> None:
    number = await case_of(service, "张三")
    seen = len(watcher.events)
    async with calling(place_call(service.settings, caller_number="13800138000",
                                  caller_name="张三", keys=f"1{number}#1", hold_ms=60_000)):
        told = await watcher.wait_for(lambda e: e in watcher.events[seen:] and step("told")(e),
                                      within=30)
        await watcher.wait_for(step("prompt", prompt="after_status_menu"), within=30)
    assert told.detail["verified"] is True


async def hung_up_in_the_greeting(service: HotlineService) -> None:
    result = await place_call(service.settings, caller_number="13600136000",
                              caller_name="来电", hold_ms=1500)
    assert result.answered


async def test_real_calls_give_the_hand_worked_figures_everywhere(
        service: HotlineService, watcher: CallWatcher,
        browser) -> None:  # type: ignore[no-untyped-def]
    tz = hotline_zone(service.settings)
    page = await wallboard_page(browser, service)
    await expect(page.locator("#level-offered")).to_have_attribute("data-value", "0")

    await answered_and_rated(service)
    await watcher.wait_ended()
    await abandoned_at_once(service, watcher)
    await self_service(service, watcher)
    await hung_up_in_the_greeting(service)
    await watcher.wait_for(lambda e: sum(type(x).__name__ == "CallEnded"
                                         for x in watcher.events) >= 4, within=30)
    await service.recorder.drain()
    started = [e for e in watcher.events if isinstance(e, CallStarted)]
    assert len(started) == 4, started

    # The module: the hand-worked counts and rates; the waits from the queue events seen.
    today = datetime.now(tz).date()
    found = await levels.service_levels(service.sessions, levels.Period(today, today), tz,
                                        service.settings.service_levels)
    got = {key: getattr(found.total, key) for key in EXPECTED if key != "below_target"}
    assert {**got, "below_target": levels.below_target(found.total, service.settings
                                                       .service_levels)} == EXPECTED
    queued = {e.call_id: e.at for e in watcher.events if isinstance(e, CallerQueued)}
    ends = {e.call_id: e.at for e in watcher.events
            if isinstance(e, AgentAnswered | CallerAbandoned)}
    waits = sorted(F(round((ends[c] - queued[c]).total_seconds() * 1000), 1000)
                   for c in queued)
    assert len(waits) == 2 and waits[-1] < 5  # both well under the 5 s of a short abandon
    assert found.total.wait_avg_s == sum(waits) / 2 and found.total.wait_p90_s == waits[-1]
    # The phone talks 1.5 s after its answer; Asterisk's AgentConnect can come a few hundred
    # ms after that answer on a loaded host (0.88 s was counted once in CI).
    assert found.total.handle_avg_s is not None and 0.5 <= found.total.handle_avg_s < 10
    total = levels.bucket_json(found.total, service.settings.service_levels)
    expected = rounded(EXPECTED)

    # The wallboard (pushed as the calls ended) and the service-level page, in the browser.
    for figure in levels.FIGURES:
        await expect(page.locator(f"#level-{figure.key}")).to_have_attribute(
            "data-value", levels.value_text(total[figure.key]), timeout=PUSH_MS)
    for key in ("connection_rate", "answered_within_rate"):
        await expect(page.locator(f"#level-{key} .flag")).to_be_visible()
    await expect(page.locator("#level-satisfaction_rate .flag")).to_be_hidden()
    await expect(page.locator("#level-connection_rate .big")).to_have_text("50.0 %")
    await page.goto(f"{base_url(service)}/console/service-levels?from={today}&to={today}")
    for figure in levels.FIGURES:
        await expect(page.locator(f"#level-{figure.key}")).to_have_attribute(
            "data-value", levels.value_text(total[figure.key]))
    await expect(page.locator("#chart-connection_rate circle.point")).to_have_attribute(
        "data-below", "true")
    console_csv = await page.request.get(
        f"{base_url(service)}/console/service-levels.csv?from={today}&to={today}&bucket=day")
    assert console_csv.ok
    [row] = list(csv.DictReader(io.StringIO((await console_csv.text()).lstrip("\ufeff"))))
    assert {k: row[k] for k in expected} == {
        k: "; ".join(v) if isinstance(v, list) else "" if v is None else str(v)
        for k, v in expected.items()}
    assert page.js_errors == []

    # The open API over HTTP: JSON and CSV by hour; the calls are in their hours.
    token = await api_tokens.create_token(service.sessions, "city", ["reports:read"])
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{base_url(service)}/api/service-levels?from={today}&to={today}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        async with http.get(url + "&bucket=hour&format=csv", headers=headers) as response:
            assert response.status == 200
            hours = list(csv.DictReader(io.StringIO((await response.text()).lstrip("\ufeff"))))
    assert {k: body["total"][k] for k in expected} == expected
    assert body["total"] == total
    assert len(hours) == 24
    assert sum(int(h["offered"]) for h in hours) == 4
    assert sum(int(h["abandoned_short"]) for h in hours) == 1
