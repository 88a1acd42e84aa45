"""The supervisor console in a real browser (Chromium through Playwright) against the running
hotline service and the real Asterisk: the live wallboard follows SIPp callers in the queue
and rebuilds from QueueStatus after an AMI reconnect; the dashboard draws seeded surveys;
recordings play only for supervisors, and every playback is in the audit log; agents do not
get in.

Set HOTLINE_SCREENSHOTS=1 to write docs/screenshots/console-dashboard.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import struct
import uuid
import wave
from collections.abc import AsyncIterator, Awaitable

import aiohttp
import pytest

from crm.agents import accounts as agents
from crm.audit import log as audit
from crm.consultations.recorder import apply_event
from crm.demo_data import seed_demo
from crm.telephony.events import CallEnded, CallerQueued, CallStarted, CallStep
from crm.telephony.steps import RecordingStarted, RouteChosen
from hotline.paths import recording_store
from hotline.service import HotlineService, hotline_zone
from hotline.settings import REPO_ROOT
from hotline.tools.sipp import CallResult, place_call
from tests.console_data import DISTRIBUTION, PER_AGENT, seed_surveys

pytestmark = pytest.mark.asterisk

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

PASSWORD = "console-browser-pw"
CALLER, CALLER_NAME = "13800138000", "张三"
SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "console-dashboard.png"
WAIT_MS = 30_000
"""Bound for what goes through the IVR and the queue (the IVR's prompts take seconds)."""
QUICK_MS = 5_000


@pytest.fixture
async def accounts(hotline: HotlineService) -> None:
    await seed_demo(hotline.settings.database_url)
    for login in ("agent1", "supervisor1", "admin"):
        await agents.set_password(hotline.sessions, login, PASSWORD)


def base_url(service: HotlineService) -> str:
    return f"http://{service.settings.web.host}:{service.settings.web.port}"


async def open_console(browser, service: HotlineService, login: str,  # type: ignore[no-untyped-def]
                       path: str = "/console/"):
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1360, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    await page.goto(f"{base_url(service)}{path}")
    await page.wait_for_url(f"{base_url(service)}/console/login**", timeout=QUICK_MS)
    await page.fill("#login", login)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    return page


@contextlib.asynccontextmanager
async def calling(call: Awaitable[CallResult]) -> AsyncIterator[asyncio.Future[CallResult]]:
    """A SIPp caller in the background, hung up (task cancelled) when the block ends."""
    task = asyncio.ensure_future(call)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def caller(service: HotlineService) -> Awaitable[CallResult]:
    """张三 (Mandarin on file) keys '#' at the greeting (no case number): the queue."""
    return place_call(service.settings, caller_number=CALLER, caller_name=CALLER_NAME,
                      keys="#", pause_before_keys_ms=300, hold_ms=60_000)


async def test_the_wallboard_follows_callers_in_the_queue_and_resyncs_after_a_reconnect(
        hotline: HotlineService, accounts: None, browser) -> None:  # type: ignore[no-untyped-def]
    assert hotline.wallboard is not None
    page = await open_console(browser, hotline, "supervisor1")
    await page.wait_for_url(f"{base_url(hotline)}/console/", timeout=QUICK_MS)
    await expect(page.locator("#link-state")).to_have_attribute("data-state", "live",
                                                               timeout=QUICK_MS)
    await expect(page.locator("#link-state")).to_have_text("实时")  # console.js's t()
    states = await page.locator("#members .state").all_text_contents()
    assert not [s for s in states if re.fullmatch(r"[a-z_]*", s)], states  # names, not codes
    waiting = page.locator("#waiting-count")
    await expect(waiting).to_have_attribute("data-count", "0")
    await expect(page.locator("#agents-available")).to_have_attribute("data-count", "0")
    async with calling(caller(hotline)):
        await expect(waiting).to_have_attribute("data-count", "1", timeout=WAIT_MS)
        await expect(page.locator("#longest-wait")).not_to_have_attribute("data-since", "")
        async with calling(caller(hotline)):
            await expect(waiting).to_have_attribute("data-count", "2", timeout=WAIT_MS)
        await expect(waiting).to_have_attribute("data-count", "1", timeout=QUICK_MS)
        await expect(page.locator("#abandoned-today")).to_have_attribute("data-count", "1",
                                                                        timeout=QUICK_MS)

        # A caller the wallboard believes in but Asterisk does not (an event it got wrong,
        # or the leave it missed while disconnected) is gone after the next AMI login.
        resyncs = hotline.wallboard.resyncs
        await hotline.wallboard.handle(CallerQueued("phantom", hotline.settings.asterisk.queue_name,
                                                    channel="PJSIP/phantom-0001"))
        await expect(waiting).to_have_attribute("data-count", "2", timeout=QUICK_MS)
        assert hotline.ami._protocol is not None
        hotline.ami._protocol.abort()  # the AMI connection drops; the client logs in again
        await hotline.wallboard.wait_for(lambda: hotline.wallboard.resyncs > resyncs, 15)
        await expect(waiting).to_have_attribute("data-count", "1", timeout=QUICK_MS)
    await expect(waiting).to_have_attribute("data-count", "0", timeout=QUICK_MS)
    await expect(page.locator("#abandoned-today")).to_have_attribute("data-count", "2",
                                                                    timeout=QUICK_MS)
    assert page.js_errors == []


async def test_the_dashboard_draws_the_seeded_surveys(
        hotline: HotlineService, accounts: None, browser) -> None:  # type: ignore[no-untyped-def]
    seeded = await seed_surveys(hotline.sessions, hotline_zone(hotline.settings))
    page = await open_console(browser, hotline, "supervisor1", "/console/dashboard")
    await page.wait_for_url(f"{base_url(hotline)}/console/dashboard", timeout=QUICK_MS)
    distribution = page.locator("#chart-distribution rect.bar")
    await expect(distribution).to_have_count(5)
    bars = {await b.get_attribute("data-key"): await b.get_attribute("data-value")
            for b in await distribution.all()}
    assert bars == {str(score): str(count) for score, count in DISTRIBUTION.items()}
    for login, (count, average, _) in PER_AGENT.items():
        bar = page.locator(f'#chart-agents rect.bar[data-key="{login}"]')
        await expect(bar).to_have_attribute("data-count", str(count))
        await expect(bar).to_have_attribute("data-value", f"{average:g}")
    points = page.locator("#chart-trend circle.point")
    days = {await p.get_attribute("data-label"): (await p.get_attribute("data-count"),
                                                  await p.get_attribute("data-value"))
            for p in await points.all()}
    assert days == {day: (str(n), f"{avg:g}") for day, (n, avg) in seeded.trend().items()}
    tooltip = page.locator('#chart-agents rect[data-key="agent1"] title')
    await expect(tooltip).to_have_text("王芳: 4.25 · 4")
    await expect(page.locator("#kpi-low")).to_have_text("2")
    if os.environ.get("HOTLINE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)

    await page.click('#chart-agents a:has(rect[data-key="agent2"])')  # drill down
    await page.wait_for_url("**/console/surveys?*agent=agent2*", timeout=QUICK_MS)
    rows = page.locator("#survey-list tbody tr[data-survey-id]")
    await expect(rows).to_have_count(3)  # two scores and one survey left unrated
    await page.select_option("#filter-max_score", "2")
    await page.click("#apply-filters")
    await expect(rows).to_have_count(2)
    assert {await r.get_attribute("data-score") for r in await rows.all()} == {"1", "2"}
    assert page.js_errors == []


def _tone(path, seconds: float = 0.6) -> None:  # type: ignore[no-untyped-def]
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / 8000)))
                      for n in range(int(8000 * seconds)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)


async def test_recordings_play_for_supervisors_only_and_every_playback_is_audited(
        hotline: HotlineService, accounts: None, browser) -> None:  # type: ignore[no-untyped-def]
    store = recording_store(hotline.settings)
    assert store is not None
    call_id = str(uuid.uuid4())
    async with hotline.sessions() as session, session.begin():
        await apply_event(session, CallStarted(call_id, CALLER, CALLER_NAME, "PJSIP/gw-1"))
        await apply_event(session, CallStep(call_id, RouteChosen("agent")))
        await apply_event(session, CallStep(
            call_id, RecordingStarted(f"{store.asterisk_dir}/{call_id}.wav")))
        await apply_event(session, CallEnded(call_id, "agent", "16"))
    consultation = next(c for c in await _consultations(hotline) if c[1] == call_id)[0]
    recording = store.host_dir / f"{call_id}.wav"
    _tone(recording)
    url = f"{base_url(hotline)}/console/consultations/{consultation}/recording"
    try:
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(url, allow_redirects=False) as response:
                assert response.status == 401

        agent = await open_console(browser, hotline, "agent1",
                                   f"/console/consultations/{consultation}")
        await expect(agent.locator("#login-error")).to_contain_text("supervisors and admins")
        response = await agent.goto(url)  # no console session: no audio
        assert response is not None and response.status == 401

        page = await open_console(browser, hotline, "supervisor1",
                                  f"/console/consultations/{consultation}")
        await page.wait_for_url(f"**/console/consultations/{consultation}", timeout=QUICK_MS)
        await expect(page.locator("#caller-name")).to_have_text(CALLER_NAME)
        player = page.locator("#recording-player")
        await expect(player).to_be_visible()
        await player.click()  # a user gesture: the page may play audio
        played = await player.evaluate("""async (audio) => {
            audio.muted = true;
            await audio.play();
            await new Promise((done) => audio.addEventListener('ended', done, { once: true }));
            return audio.duration;
        }""")
        assert abs(played - 0.6) < 0.05
        plays = [e for e in await audit.entries(hotline.sessions, object_type="consultation",
                                                object_id=consultation)
                 if e.action == "recording.play"]
        assert plays and {e.actor for e in plays} == {"agent:supervisor1"}
        assert plays[0].detail["call_id"] == call_id

        admin = await open_console(browser, hotline, "admin",
                                   "/console/audit?action=recording.play")
        await admin.wait_for_url("**/console/audit?action=recording.play", timeout=QUICK_MS)
        entry = admin.locator(f'#audit-list tr[data-object="consultation:{consultation}"]')
        await expect(entry.first).to_contain_text("账号 supervisor1")
        await expect(entry.first).to_contain_text("播放录音")
        assert page.js_errors == [] and admin.js_errors == []
    finally:
        recording.unlink(missing_ok=True)


async def _consultations(service: HotlineService) -> list[tuple[int, str]]:
    from sqlalchemy import select

    from crm.storage.models import Consultation

    async with service.sessions() as session:
        return [(r.id, r.call_id) for r in
                (await session.execute(select(Consultation.id, Consultation.call_id))).all()]


async def test_agents_cannot_open_supervisor_pages(
        hotline: HotlineService, accounts: None, browser) -> None:  # type: ignore[no-untyped-def]
    page = await open_console(browser, hotline, "agent1", "/console/audit")
    await expect(page.locator("#login-error")).to_contain_text("supervisors and admins")
    for path in ("/console/", "/console/dashboard", "/console/follow-ups",
                 "/console/surveys.csv"):
        response = await page.goto(f"{base_url(hotline)}{path}")
        assert response is not None
        assert page.url.startswith(f"{base_url(hotline)}/console/login?next=") \
            or response.status == 401

    # A supervisor who is made an agent loses the session at once (issue 14): the next page
    # is the sign-in form, and signing in again as an agent is refused.
    supervisor = await open_console(browser, hotline, "supervisor1", "/console/dashboard")
    await supervisor.wait_for_url("**/console/dashboard", timeout=QUICK_MS)
    await agents.update_agent(hotline.sessions, "supervisor1", role="agent")
    try:
        response = await supervisor.goto(f"{base_url(hotline)}/console/follow-ups")
        assert response is not None
        assert supervisor.url.startswith(f"{base_url(hotline)}/console/login?next=")
        await expect(supervisor.locator("nav:not(#language-switch)")).to_have_count(0)
        again = await open_console(browser, hotline, "supervisor1", "/console/follow-ups")
        await expect(again.locator("#login-error")).to_contain_text("supervisors and admins")
    finally:
        await agents.update_agent(hotline.sessions, "supervisor1", role="supervisor")
