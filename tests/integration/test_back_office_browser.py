"""The back office end to end in Chinese, in a real browser (Debian's Chromium through
Playwright), on a real database, with the desk, the console and the open API in one app (no
Asterisk: the desk hub is fed the calls' events as the telephony side would send them).

An agent signs in at the desk; a caller who has an open leak case calls about night-time
building noise at the same flat: the desk first offers the open case, the agent files the new
matter under its own category, and the case goes to that category's department with the
deadline the time-limit rules give. The caller rings back and asks about it in the IVR; the
agent dispatches it (派单) from the case card. The department's API token accepts it and
replies; another department's token is refused and changes nothing. A second case, left
dispatched, turns overdue on the console's fixed clock and, urged by the resident (recorded as
the IVR's keys record it; the call itself: test_urge_call.py), is on the supervisor's overdue
list with its stage, department and urge count; an hour before its deadline it is due soon."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from crm.agents import tokens as api_tokens
from crm.cases import dispatch
from crm.cases import service as cases
from crm.categories.time_limits import TimeLimit, rules_from
from crm.i18n.catalogs import translator
from crm.settings import TimeLimitSettings
from crm.storage.db import SessionFactory
from crm.storage.models import ApiToken, Case, CaseCategory, Department, utcnow
from crm.telephony.events import AgentAnswered, AgentCallEnded
from crm.telephony.steps import CaseLookedUp
from crm.web.console.app import ConsoleDeps
from tests.desk_bed import PASSWORD, PHONE, Desk, open_desk, ringing, start_call
from tests.storage.test_repeat_requests import LEAK, _case

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect
QUICK_MS = 5_000

ZH = translator("zh_CN")
RULES = rules_from(TimeLimitSettings())
"""The service's default rules: hour limits on the clock, day limits in working days."""
NOISE = "010301"  # 城乡建设 › 建筑施工 › 夜间施工噪声: 24h, the construction bureau's
STAIRS = "010102"  # 城乡建设 › 房屋安全与维修 › 公共部位维修: 7 working days, housing's
ADDRESS = "幸福社区3号楼2单元301室"


@dataclass
class FixedClock:
    """The console's "now", moved by the test."""

    at: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
async def office(sessions: SessionFactory, db_url: str,
                 clock: FixedClock) -> AsyncIterator[Desk]:
    """The desk, the console (on ``clock``) and the open API in one app."""
    console = ConsoleDeps(sessions, "console-secret", idle_timeout=3600, clock=clock)
    async with open_desk(sessions, db_url, logins=("agent1", "supervisor1"), console=console,
                         time_limits=RULES) as state:
        yield state


async def _call(office: Desk, call_id: str, *, asked_case: str | None = None) -> None:
    """A call from 张三 that the IVR routes to agent1 (after looking up ``asked_case``):
    recorded, rung and answered."""
    await start_call(office.sessions, call_id,
                     *([CaseLookedUp(asked_case, True)] if asked_case is not None else []))
    await office.hub.handle(ringing(call_id, "2001"))
    await office.hub.handle(AgentAnswered(call_id, "hotline", "PJSIP/2001", "2001", "王芳",
                                          PHONE, "张三", "PJSIP/gw-00000001"))


async def _department_token(sessions: SessionFactory, department: str) -> dict[str, str]:
    token = await api_tokens.create_token(sessions, f"{department}-system",
                                          ["cases:read", "cases:write"])
    async with sessions() as session:
        token_id = await session.scalar(select(ApiToken.id)
                                        .where(ApiToken.name == f"{department}-system"))
    assert token_id is not None
    await dispatch.bind_token(sessions, token_id, department, actor="admin:test")
    return {"Authorization": f"Bearer {token}"}


async def _stored(sessions: SessionFactory, number: str) -> dict[str, Any]:
    async with sessions() as session:
        case = await session.scalar(select(Case).where(Case.number == number))
        assert case is not None
        category = await session.get(CaseCategory, case.category_id)
        assert category is not None
        department = await session.get(Department, case.department_id)
        default = await session.get(Department, category.department_id)
        assert department is not None and default is not None
        return {"stage": case.stage, "created_at": case.created_at, "deadline": case.deadline,
                "latest_update": case.latest_update, "department": department.code,
                "department_name": department.name, "category_department": default.code,
                "limit": TimeLimit.of(category.time_limit_days, category.time_limit_hours)}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # both: the storage/api tests
async def test_a_case_from_the_call_to_the_supervisors_overdue_list(
        office: Desk, clock: FixedClock, browser) -> None:  # type: ignore[no-untyped-def]
    existing = await _case(office.sessions, ADDRESS)  # 张三's open leak case at this flat
    await (await office.client()).get("/healthz")  # the server is up
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # -- 1. the desk, in Chinese by default -----------------------------------------------------
    await page.goto(f"{office.origin}/desk/login")
    await page.fill("#login", "agent1")
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(f"{office.origin}/desk/", timeout=QUICK_MS)
    await expect(page.locator("html")).to_have_attribute("lang", ZH.html_lang)
    await expect(page.locator("#new-case-submit")).to_have_text(ZH.gettext("Create case"))
    await expect(page.locator("#link-state")).to_have_attribute("data-state", "live",
                                                               timeout=QUICK_MS)

    await _call(office, "call-noise")
    await expect(page.locator("#pop")).to_have_attribute("data-phase", "connected",
                                                         timeout=QUICK_MS)
    await page.select_option("#new-case-category", LEAK)
    await page.fill("#new-case-description", "楼上装修，夜里一直施工")
    await page.fill("#new-case-address", "南京市幸福社区三号楼二单元301")
    await page.click("#new-case-submit")
    offered = page.locator(f"#repeat-list li[data-case='{existing}']")
    await expect(offered).to_be_visible(timeout=QUICK_MS)
    await expect(page.locator("#repeat-list li")).to_have_count(1)
    await expect(offered.locator(".repeat-calls")).to_have_text(
        ZH.gettext("{n} calls").replace("{n}", "0"))

    # not the leak: the night-time building works, a matter of its own
    await page.select_option("#new-case-category", NOISE)
    await page.click("#new-case-submit")
    await expect(page.locator("#repeats")).to_be_hidden(timeout=QUICK_MS)
    made = page.locator("#new-case-number")
    await expect(made).to_have_text(re.compile(r"^[0-9]{11}$"), timeout=QUICK_MS)
    number = (await made.text_content() or "").strip()
    assert number != existing

    stored = await _stored(office.sessions, number)
    assert stored["department"] == stored["category_department"] == "construction"
    assert str(stored["limit"]) == "24h"
    assert stored["deadline"] == RULES.deadline(stored["created_at"], stored["limit"])
    assert stored["stage"] == "accepted"
    on_desk = page.locator("#resident-cases li").filter(has_text=number).locator(".stage")
    await expect(on_desk).to_have_text(ZH.label("stage", "accepted"), timeout=QUICK_MS)
    await expect(on_desk).to_have_attribute("data-stage", "accepted")

    await office.hub.handle(AgentCallEnded("call-noise", "hotline", "PJSIP/2001", "2001", 60,
                                           "caller"))
    await expect(page.locator("#close-call")).to_be_enabled(timeout=QUICK_MS)
    await page.click("#close-call")
    await expect(page.locator("#pop")).to_be_hidden(timeout=QUICK_MS)

    # the caller rings back and asks about the case in the IVR: its card, dispatched (派单)
    await _call(office, "call-back", asked_case=number)
    await expect(page.locator("#pop")).to_have_attribute("data-call-id", "call-back",
                                                         timeout=QUICK_MS)
    await expect(page.locator("#case-number")).to_have_text(number, timeout=QUICK_MS)
    stage = page.locator("#case-stage")
    await expect(stage).to_have_text(ZH.label("stage", "accepted"))
    await expect(page.locator("#case-department")).to_have_text(stored["department_name"])
    await page.select_option("#stage-select", "dispatched")
    await expect(page.locator("#stage-select option:checked")).to_have_text(
        ZH.label("stage", "dispatched"))
    await page.click("#stage-form button[type=submit]")
    await expect(stage).to_have_attribute("data-stage", "dispatched", timeout=QUICK_MS)
    await expect(stage).to_have_text(ZH.label("stage", "dispatched"))
    assert (await _stored(office.sessions, number))["stage"] == "dispatched"

    # -- 2. the department's API token accepts and replies; another department's is refused --
    api = await office.client()
    construction = await _department_token(office.sessions, "construction")
    housing = await _department_token(office.sessions, "housing")
    case_url = f"/api/cases/{number}"

    async def refused(path: str, body: dict[str, str]) -> None:
        before = await _stored(office.sessions, number)
        response = await api.post(f"{case_url}/{path}", json=body, headers=housing)
        assert response.status == 404, await response.text()
        assert (await response.json())["error"]["code"] == "case_not_found"
        assert await _stored(office.sessions, number) == before

    await refused("accept", {})
    accepted = await api.post(f"{case_url}/accept", json={}, headers=construction)
    assert accepted.status == 200, await accepted.text()
    assert (await accepted.json())["stage"] == "in_progress"
    await refused("reply", {"result": "不是我们的"})
    replied = await api.post(f"{case_url}/reply", json={"result": "已责令工地夜间停工"},
                             headers=construction)
    assert replied.status == 200, await replied.text()
    stored = await _stored(office.sessions, number)
    assert (stored["stage"], stored["latest_update"]) == ("resolved", "已责令工地夜间停工")
    assert (await api.get(case_url, headers=housing)).status == 404  # nor may it read it

    # -- 3. a second case left dispatched turns overdue on the console's clock -----------------
    late = (await cases.create_case(
        office.sessions, category=STAIRS, description="楼道扶手松动", actor="agent:agent1",
        contact_phone=PHONE, resident_phone=PHONE, address=ADDRESS, time_limits=RULES)).number
    await cases.change_stage(office.sessions, late, "dispatched", actor="agent:agent1")
    left = await _stored(office.sessions, late)
    assert left["department"] == "housing"
    assert left["deadline"] == RULES.deadline(left["created_at"], left["limit"])
    assert await dispatch.urge(office.sessions, late, channel="ivr_keys") == 1
    clock.at = left["deadline"] + timedelta(hours=1)

    await page.goto(f"{office.origin}/console/login")
    await page.fill("#login", "supervisor1")
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(f"{office.origin}/console/", timeout=QUICK_MS)
    await page.goto(f"{office.origin}/console/supervision")
    await expect(page.locator("html")).to_have_attribute("lang", ZH.html_lang)
    await expect(page.locator("h2")).to_have_text(ZH.gettext("Supervision"))
    row = page.locator(f"#overdue tr#case-{late}")
    await expect(row).to_be_visible(timeout=QUICK_MS)
    await expect(row.locator("td[data-stage]")).to_have_text(ZH.label("stage", "dispatched"))
    await expect(row.locator("td[data-department]")).to_have_text(left["department_name"])
    await expect(row).to_have_attribute("data-urges", "1")
    await expect(row.locator("td.urges")).to_have_text("1")
    await expect(page.locator(f"#overdue tr#case-{number}")).to_have_count(0)  # replied
    await expect(page.locator(f"#due-soon tr#case-{late}")).to_have_count(0)

    # the same case before its deadline is not overdue: the list follows the clock
    clock.at = left["deadline"] - timedelta(hours=1)
    await page.reload()
    await expect(page.locator(f"#due-soon tr#case-{late}")).to_be_visible(timeout=QUICK_MS)
    await expect(page.locator(f"#overdue tr#case-{late}")).to_have_count(0)
    assert errors == []
    await context.close()
