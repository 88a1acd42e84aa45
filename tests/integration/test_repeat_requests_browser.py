"""Repeat requests at the desk in a real browser (Debian's Chromium through Playwright),
against the CRM's web side on a real database (no Asterisk: the desk hub is fed the call's
events as the telephony side would send them). The agent fills a new case for a caller
who already has one open about the same leak at the same flat written differently; the desk
shows that case first, with its count of calls, and the agent links the call to it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crm.storage.models import Case, ConsultationCase
from crm.telephony.events import AgentAnswered
from tests.desk_bed import (
    PASSWORD,
    PHONE,
    Desk,
    desk,  # noqa: F401 (the fixture)
    ringing,
    start_call,
)
from tests.storage.test_repeat_requests import LEAK, _case

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect
QUICK_MS = 5_000


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # both: test_repeat_requests
async def test_the_agent_links_the_call_to_the_open_case_shown_first(
        desk: Desk, browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    existing = await _case(desk.sessions, "幸福社区3号楼2单元301室")
    await (await desk.client()).get("/healthz")  # the server is up
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{desk.origin}/desk/login")
    await page.fill("#login", "agent1")
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(f"{desk.origin}/desk/", timeout=QUICK_MS)
    await expect(page.locator("#link-state")).to_have_attribute("data-state", "live",
                                                               timeout=QUICK_MS)

    await start_call(desk.sessions, "call-b")
    await desk.hub.handle(ringing("call-b", "2001"))
    await desk.hub.handle(AgentAnswered("call-b", "hotline", "PJSIP/2001", "2001", "王芳",
                                        PHONE, "张三", "PJSIP/gw-00000001"))
    await expect(page.locator("#pop")).to_have_attribute("data-phase", "connected",
                                                         timeout=QUICK_MS)
    await page.select_option("#new-case-category", LEAK)
    await page.fill("#new-case-description", "楼上又漏水了")
    await page.fill("#new-case-address", "南京市幸福社区三号楼二单元301")
    await page.click("#new-case-submit")

    offered = page.locator(f"#repeat-list li[data-case='{existing}']")
    await expect(offered).to_be_visible(timeout=QUICK_MS)
    await expect(offered.locator(".repeat-calls")).to_have_text("来电 0 次")
    await expect(page.locator("#repeat-list li")).to_have_count(1)
    await offered.locator("button.link-repeat").click()
    await expect(page.locator("#new-case-result")).to_have_text(
        f"已关联工单 {existing}", timeout=QUICK_MS)
    await expect(page.locator("#repeats")).to_be_hidden()

    async with desk.sessions() as session:
        linked = (await session.scalars(select(Case.number).join(
            ConsultationCase, ConsultationCase.case_id == Case.id))).all()
        made = (await session.scalars(select(Case.number).where(
            Case.description == "楼上又漏水了"))).all()
    assert existing in linked and made == []  # linked, no duplicate
    assert errors == []
