"""The knowledge base on the agent desk in a real browser (Debian's Chromium through
Playwright): the pop of a call offers the article for the words the caller said in the IVR,
the agent searches in free text and marks "answered from article N" on the consultation.

The call reaches the desk as the call events the desk hub is fed (as in
tests/desk_bed.py); no Asterisk is needed to prove the desk's side."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from crm.agents import accounts as agents
from crm.consultations.recorder import ConsultationRecorder
from crm.demo_data import seed_demo
from crm.knowledge import service as knowledge
from crm.live.desk_hub import DeskHub
from crm.storage.db import SessionFactory
from crm.storage.models import Consultation
from crm.telephony.events import (
    AgentAnswered,
    AgentRinging,
    AgentStatusChanged,
    CallStarted,
    CallStep,
)
from crm.telephony.steps import RouteChosen, SpeechHeard
from crm.web.app import HealthReport, create_app
from crm.web.desk import DeskDeps
from ivr.asterisk.queue_control import QueueControl
from tests.desk_bed import FakeAmi

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

PASSWORD = "kb-browser-pw"
PHONE = "13800138000"
CALL = "kb-call-1"
QUICK_MS = 5_000


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the storage tests cover both databases; this one is about the page."""
    return f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"


@pytest.fixture
async def desk(sessions: SessionFactory, db_url: str) -> AsyncIterator[tuple[str, DeskHub]]:
    await seed_demo(db_url)
    await agents.set_password(sessions, "agent1", PASSWORD)
    hub = DeskHub(sessions)
    hub.start()
    deps = DeskDeps(sessions, hub, QueueControl(FakeAmi(), assigned="hotline-assigned"),
                    "test-secret", idle_timeout=3600)
    server = TestServer(create_app(sessions, lambda: HealthReport("logged_in", 1, 0, 0),
                                   desk=deps))
    await server.start_server()
    try:
        yield f"http://{server.host}:{server.port}", hub
    finally:
        await hub.close()
        await server.close()


async def test_pop_offers_the_article_for_the_callers_words_and_marks_it(
        browser, desk: tuple[str, DeskHub], sessions: SessionFactory) -> None:
    base, hub = desk
    recorder = ConsultationRecorder(sessions)
    recorder.start()
    for event in (CallStarted(CALL, PHONE, "张三", "PJSIP/gw-00000001"),
                  CallStep(CALL, SpeechHeard("我们小区停水了什么时候恢复供水", 0.8)),
                  CallStep(CALL, RouteChosen("agent"))):
        await recorder.handle(event)
    await recorder.close()

    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base}/desk/login")
    await page.fill("#login", "agent1")
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await expect(page.locator("#link-state")).to_have_attribute("data-state", "live",
                                                                 timeout=QUICK_MS)
    await hub.handle(AgentStatusChanged("PJSIP/2001", "2001", "hotline", "ringing"))
    await hub.handle(AgentRinging(CALL, "hotline", "PJSIP/2001", "2001", None, PHONE, "张三",
                                  "PJSIP/gw-00000001"))
    await hub.handle(AgentAnswered(CALL, "hotline", "PJSIP/2001", "2001", "王芳", PHONE, "张三",
                                   "PJSIP/gw-00000001"))

    results = page.locator("#knowledge-results > li")
    await expect(page.locator("#knowledge-results")).to_have_attribute("data-source", "call",
                                                                       timeout=QUICK_MS)
    await expect(results.first).to_contain_text("计划停水通知及临时供水", timeout=QUICK_MS)
    await expect(results.first.locator(".knowledge-answer")).to_contain_text("临时供水点")

    # The description being typed joins the transcript's words.
    await page.fill("#new-case-description", "楼道灯坏了，楼道很黑")
    await expect(page.locator("#knowledge-results")).to_contain_text("楼道灯和公共设施报修",
                                                                      timeout=QUICK_MS)
    await expect(page.locator("#knowledge-results")).to_contain_text("已过复审日期")

    await page.fill("#knowledge-query", "老人高龄津贴要带什么材料")
    await page.click("#knowledge-search")
    await expect(page.locator("#knowledge-results")).to_have_attribute("data-source", "search",
                                                                       timeout=QUICK_MS)
    subsidy = results.filter(has_text="高龄津贴申请材料")
    await expect(results).to_have_count(1)
    await subsidy.locator("button.mark-answered").click()
    await expect(subsidy).to_have_attribute("data-answered", "true", timeout=QUICK_MS)
    await expect(subsidy.locator("button.mark-answered")).to_have_text("✓ 已据此解答")
    await expect(page.locator("#knowledge-answered")).not_to_have_text("—")

    await page.fill("#knowledge-query", "快递丢了")
    await page.click("#knowledge-search")
    await expect(page.locator("#knowledge-empty")).to_have_text("没有找到",
                                                                timeout=QUICK_MS)
    async with sessions() as session:
        consultation = await session.scalar(select(Consultation.id)
                                            .where(Consultation.call_id == CALL))
    [article] = await knowledge.answered_articles(sessions, consultation)
    assert (await knowledge.get_article(sessions, article)).title == "高龄津贴申请材料"
    assert errors == []
    await context.close()
