"""The agent desk in a real browser (Chromium through Playwright) against the real Asterisk,
with SIPp callers going through the IVR and SIPp agent phones that ring and answer.

Set HOTLINE_SCREENSHOTS=1 to write docs/screenshots/desk-pop.png from the first test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Awaitable

import aiohttp
import pytest
from sqlalchemy import select

from crm.agents import accounts as agents
from crm.agents import tokens as api_tokens
from crm.cases.lookup import find_case_status
from crm.consultations.service import find_consultations
from crm.demo_data import seed_demo
from crm.storage.models import Case, Resident
from crm.telephony.events import CallerAbandoned, CallerQueued
from hotline.service import HotlineService
from hotline.settings import REPO_ROOT
from hotline.tools.phones import AgentPhone
from hotline.tools.sipp import CallResult, place_call
from tests.integration.service_fixtures import CallWatcher

pytestmark = pytest.mark.asterisk

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

PASSWORD = "desk-browser-pw"
CALLER, CALLER_NAME = "13800138000", "张三"
SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "desk-pop.png"
WAIT_MS = 30_000
"""Bound for what goes through the IVR and the queue (the IVR's prompts take seconds)."""
QUICK_MS = 5_000
"""Bound for what the desk shows once the event is there."""


@pytest.fixture
async def demo(hotline: HotlineService) -> AsyncIterator[str]:
    """Demo data with desk passwords for agent1 (phone 2001) and agent2 (2002); yields
    张三's case number. The Asterisk outlives the test: its phones leave the queue after."""
    await seed_demo(hotline.settings.database_url)
    for login in ("agent1", "agent2"):
        await agents.set_password(hotline.sessions, login, PASSWORD)
    async with hotline.sessions() as s:
        number = await s.scalar(select(Case.number).join(Resident)
                                .where(Resident.name == CALLER_NAME))
    try:
        yield number
    finally:
        assert hotline.queue_control is not None
        for interface in ("PJSIP/2001", "PJSIP/2002"):
            await hotline.queue_control.leave(interface)


def base_url(service: HotlineService) -> str:
    return f"http://{service.settings.web.host}:{service.settings.web.port}"


async def open_desk(browser, service: HotlineService, login: str):  # type: ignore[no-untyped-def]
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1360, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.js_errors = errors
    await page.goto(f"{base_url(service)}/desk/login")
    await page.fill("#login", login)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(f"{base_url(service)}/desk/", timeout=QUICK_MS)
    await expect(page.locator("#link-state")).to_have_attribute("data-state", "live",
                                                               timeout=QUICK_MS)
    return page


async def queue_members(service: HotlineService) -> set[str]:
    items = await service.ami.action_list("QueueStatus", Queue=service.settings.asterisk.queue_name)
    return {i.get("Location") or "" for i in items if i.name == "QueueMember"}


@contextlib.asynccontextmanager
async def calling(call: Awaitable[CallResult]) -> AsyncIterator[asyncio.Future[CallResult]]:
    """A SIPp caller in the background, hung up when the test has seen enough."""
    task = asyncio.ensure_future(call)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def caller(service: HotlineService, keys: str) -> Awaitable[CallResult]:
    return place_call(service.settings, caller_number=CALLER, caller_name=CALLER_NAME,
                      keys=keys, pause_before_keys_ms=300, hold_ms=60_000)


async def test_pop_shows_the_caller_and_the_agent_creates_a_case(
        hotline: HotlineService, demo: str, browser) -> None:  # type: ignore[no-untyped-def]
    number = demo
    page = await open_desk(browser, hotline, "agent1")
    assert "PJSIP/2001" in await queue_members(hotline)
    async with AgentPhone(hotline.settings, "2001") as phone:
        await expect(page.locator("#agent-status")).to_have_attribute(
            "data-status", "available", timeout=QUICK_MS)
        # 张三 (Mandarin on file): 1 = case status at the greeting, the number, # , 1 = yes;
        # then 2 = agent after the status.
        async with calling(caller(hotline, f"1{number}#12")):
            pop = page.locator("#pop")
            await expect(pop).to_be_visible(timeout=WAIT_MS)
            await phone.wait_answered(QUICK_MS / 1000)
            await expect(pop).to_have_attribute("data-phase", "connected", timeout=QUICK_MS)
            await expect(page.locator("#agent-status")).to_have_attribute(
                "data-status", "on_call", timeout=QUICK_MS)
            await expect(page.locator("#caller-name")).to_have_text(CALLER_NAME)
            await expect(page.locator("#caller-number")).to_have_text(CALLER)  # connected: shown
            await expect(page.locator("#verified-badge")).to_have_attribute("data-verified",
                                                                            "true")
            await expect(page.locator("#case-number")).to_have_text(number)
            await expect(page.locator("#case-stage")).to_have_text("办理中")  # in_progress
            await expect(page.locator("#case-stage")).to_have_attribute("data-stage",
                                                                        "in_progress")
            await expect(page.locator("#resident-id-number")).to_have_text("****2316")
            await expect(page.locator("#resident-language")).to_have_text("普通话")
            await expect(page.locator("#call-phase")).to_have_text("通话中")
            # The IVR transcript reads as sentences in the agent's language (Chinese here).
            transcript = page.locator("#ivr-transcript")
            await expect(transcript).to_contain_text("按键：1")
            await expect(transcript).to_contain_text(f"已告知工单 {number} 状态为办理中")
            await expect(transcript).to_contain_text("转至人工坐席")
            await expect(page.locator("#ivr-path")).to_contain_text("欢迎语 → 请输入工单号")
            await expect(page.locator("#recording-badge")).to_be_visible()

            await page.select_option("#new-case-category", "garbage")
            await page.fill("#new-case-description", "小区门口垃圾桶满了，请尽快清运")
            await page.fill("#new-case-address", "幸福社区东门")
            await page.click("#new-case-submit")
            created = page.locator("#new-case-number")
            await expect(created).to_have_text(re.compile(r"^\d{11}$"), timeout=QUICK_MS)
            new_number = (await created.text_content() or "").strip()
            await expect(page.locator("#resident-cases")).to_contain_text(new_number)
            if os.environ.get("HOTLINE_SCREENSHOTS") == "1":
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SCREENSHOT), full_page=True)
            # The agent switches the desk to English mid-call: the page and its pop follow.
            await page.click("#locale-en")
            await expect(page.locator("html")).to_have_attribute("lang", "en",
                                                                 timeout=QUICK_MS)
            await expect(pop).to_have_attribute("data-phase", "connected", timeout=QUICK_MS)
            await expect(transcript).to_contain_text("Keyed: 1")
            await expect(transcript).to_contain_text(f"Told case {number} is In handling")
            await expect(transcript).not_to_contain_text("按键")
            await expect(page.locator("#ivr-path")).to_contain_text(
                "Greeting → Ask for the case number")
            await expect(page.locator("#case-stage")).to_have_text("In handling")
            await expect(page.locator("#call-phase")).to_have_text("On call")
        await expect(page.locator("#pop")).to_have_attribute("data-phase", "ended",
                                                             timeout=WAIT_MS)
    await page.click("#locale-zh_CN")  # back to Chinese, as agent1 was
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN", timeout=QUICK_MS)
    await page.click("#sign-out")
    await page.wait_for_url(f"{base_url(hotline)}/desk/login", timeout=QUICK_MS)
    assert "PJSIP/2001" not in await queue_members(hotline)
    assert page.js_errors == []

    token = await api_tokens.create_token(hotline.sessions, "desk-test", ["cases:read"])
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url(hotline)}/api/cases/{new_number}",
                            headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200
            body = await response.json()
    assert body["stage"] == "accepted" and body["category"]["code"] == "garbage"
    assert body["contact_phone"] == CALLER and body["resident"]["name"] == CALLER_NAME
    assert body["history"][0]["actor"] == "agent:agent1"
    status = await find_case_status(hotline.sessions, new_number)
    assert status is not None and status.stage == "accepted"

    await hotline.recorder.drain()
    [consultation] = await find_consultations(hotline.sessions, case_number=new_number)
    assert consultation.agent_login == "agent1" and consultation.resident_name == CALLER_NAME
    kinds = [s["kind"] for s in consultation.steps]
    assert {"queued", "agent_ringing", "agent_answered", "recording"} <= set(kinds)
    recording = next(s for s in consultation.steps if s["kind"] == "recording")
    assert recording["detail"]["file"].endswith(f"{consultation.call_id}.wav")


async def test_ring_all_both_desks_pop_and_the_answer_keeps_it(
        hotline: HotlineService, demo: str, browser) -> None:  # type: ignore[no-untyped-def]
    first = await open_desk(browser, hotline, "agent1")
    second = await open_desk(browser, hotline, "agent2")
    assert {"PJSIP/2001", "PJSIP/2002"} <= await queue_members(hotline)
    async with AgentPhone(hotline.settings, "2001", ring_ms=2500) as answering, \
            AgentPhone(hotline.settings, "2002", ring_ms=60_000) as ringing_on:
        async with calling(caller(hotline, "#")):  # '#' at the greeting: an agent
            for page in (first, second):
                await expect(page.locator("#pop")).to_be_visible(timeout=WAIT_MS)
                await expect(page.locator("#caller-number")).to_have_text("138********")
            ids = {await p.locator("#pop").get_attribute("data-call-id") for p in (first, second)}
            assert len(ids) == 1
            await answering.wait_answered(QUICK_MS / 1000)
            await expect(first.locator("#pop")).to_have_attribute("data-phase", "connected",
                                                                  timeout=QUICK_MS)
            await expect(first.locator("#caller-number")).to_have_text(CALLER)
            await expect(second.locator("#pop")).to_be_hidden(timeout=QUICK_MS)
            await expect(second.locator("#idle-note")).to_contain_text("已由其他坐席接听")
            await ringing_on._phone().wait_event("cancelled", within=QUICK_MS / 1000)
    assert first.js_errors == [] and second.js_errors == []


async def test_the_pop_comes_back_after_a_reload_and_a_dropped_socket(
        hotline: HotlineService, demo: str, browser) -> None:  # type: ignore[no-untyped-def]
    page = await open_desk(browser, hotline, "agent1")
    async with AgentPhone(hotline.settings, "2001") as phone, \
            calling(caller(hotline, "#")):
        await phone.wait_answered(WAIT_MS / 1000)
        pop = page.locator("#pop")
        await expect(pop).to_have_attribute("data-phase", "connected", timeout=QUICK_MS)
        call_id = await pop.get_attribute("data-call-id")

        await page.reload()
        await expect(pop).to_have_attribute("data-phase", "connected", timeout=QUICK_MS)
        assert await pop.get_attribute("data-call-id") == call_id
        await expect(page.locator("#caller-name")).to_have_text(CALLER_NAME)

        desk = hotline.desk_hub.desk("agent1")  # type: ignore[union-attr]
        assert desk is not None
        for socket in list(desk.sockets):  # the network drops the desk's websocket
            await socket.close()
        await expect(page.locator("#link-state")).to_have_attribute("data-state", "live",
                                                                   timeout=QUICK_MS)
        await expect(pop).to_have_attribute("data-call-id", call_id or "")
        await expect(pop).to_be_visible()
    assert page.js_errors == []


async def test_a_caller_who_gives_up_in_the_queue_is_recorded_as_abandoned(
        hotline: HotlineService, demo: str, watcher: CallWatcher) -> None:
    async with calling(caller(hotline, "#")):
        queued = await watcher.wait_for(lambda e: isinstance(e, CallerQueued), WAIT_MS / 1000)
    abandoned = await watcher.wait_for(lambda e: isinstance(e, CallerAbandoned), QUICK_MS / 1000)
    await watcher.wait_ended()
    await hotline.recorder.drain()
    [consultation] = await find_consultations(hotline.sessions, phone=CALLER)
    assert queued.call_id == abandoned.call_id == consultation.call_id
    assert consultation.outcome == "abandoned"
    assert [s["kind"] for s in consultation.steps if s["kind"] in ("queued", "abandoned")] == [
        "queued", "abandoned"]
