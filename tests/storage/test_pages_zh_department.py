"""A department's page of the console (承办部门) in Chinese, the default, and in English after
the account chooses it: no English and no raw code where a person reads, the stages named
and the closed loop in its order (SQLite only, like tests/storage/test_pages_zh.py)."""

from __future__ import annotations

import re
from datetime import timedelta

from aiohttp.test_utils import TestServer
from sqlalchemy import select

from crm.agents import accounts as agents
from crm.cases import dispatch
from crm.cases.service import change_stage, create_case
from crm.i18n.catalogs import translator
from crm.i18n.labels import CLOSED_LOOP
from crm.storage.db import SessionFactory
from crm.storage.models import CaseCategory, utcnow
from tests.storage.test_pages_zh import PASSWORD, _client, _csrf, web  # noqa: F401
from tests.zh_pages import not_chinese, readable_text

CLERK = "housing1"
_HAN = re.compile(r"[\u4e00-\u9fff]")


async def _dispatched(sessions: SessionFactory, category: str, age: timedelta) -> str:
    case = await create_case(sessions, category=category, description="楼道灯坏了",
                             actor="agent:agent1", contact_phone="13800138000",
                             now=utcnow() - age)
    await change_stage(sessions, case.number, "dispatched", actor="agent:agent1")
    return case.number


async def test_a_department_reads_its_page_in_chinese_then_english(
        web: tuple[TestServer, SessionFactory]) -> None:  # noqa: F811
    server, sessions = web
    late = await _dispatched(sessions, "repair", timedelta(days=8))  # housing's: overdue
    handled = await _dispatched(sessions, "repair", timedelta(hours=1))
    clerk = await agents.create_agent(sessions, login=CLERK, display_name="住房科",
                                      role="agent", password=PASSWORD)
    await dispatch.bind_agent(sessions, clerk.id, "housing", actor="agent:admin")
    await dispatch.accept(sessions, handled, department="housing", actor=f"agent:{CLERK}")
    await dispatch.urge(sessions, late, channel="ivr_keys")
    await dispatch.send_reminders(sessions)
    await dispatch.request_extension(sessions, handled, utcnow() + timedelta(days=30),
                                     "等配件", department="housing", actor=f"agent:{CLERK}")

    client = await _client(server)
    form = await client.get("/console/login")
    signed = await client.post("/console/login", data={
        "csrf": _csrf(await form.text()), "login": CLERK, "password": PASSWORD})
    assert signed.status == 200 and str(signed.url).endswith("/console/department")
    html = await signed.text()
    assert '<html lang="zh-CN">' in html
    assert not not_chinese(html, {CLERK}), not_chinese(html, {CLERK})
    zh = translator("zh_CN")
    loop = " → ".join(zh.label("stage", s) for s in CLOSED_LOOP)
    assert loop.startswith("已受理 → 已派单 → 办理中") and loop in " ".join(readable_text(html))
    assert f'id="case-{late}" class="case overdue" data-stage="dispatched"' in html
    for text in ("本部门工单", "已派单", "办理中", "已超期", "签收", "催办 ×1", "待主管裁定",
                 "申请延期"):
        assert text in html, text

    switched = await client.post("/console/locale", data={"csrf": _csrf(html), "locale": "en"},
                                 headers={"Referer": "/console/department"})
    assert switched.status == 200 and str(switched.url).endswith("/console/department")
    html = await switched.text()
    assert '<html lang="en">' in html
    shown = " ".join(readable_text(html))
    assert ("Accepted → Dispatched → In handling → Replied → Closed → Return visit → Rated"
            in shown)
    for text in ("Department cases", "Dispatched", "In handling", "overdue", "Accept",
                 "urged ×1", "awaiting a supervisor", "Ask for an extension"):
        assert text in shown, text
    async with sessions() as session:
        categories = set((await session.scalars(select(CaseCategory.name))).all())
    interface = [t for t in readable_text(html) if _HAN.search(t)]
    # what is still Chinese is data (the account's and the categories' names) and the
    # language switch's own name of Chinese
    assert all(t == "中文" or "住房科" in t or t in categories for t in interface), interface
    assert "本部门工单" not in html and "签收" not in html


async def test_supervision_callbacks_and_audit_with_rows_read_in_chinese(
        web: tuple[TestServer, SessionFactory]) -> None:  # noqa: F811
    """The supervisor's side of the same data: overdue and due-soon cases, a return and an
    extension to rule on, callbacks pending and closed, and the audit log of it all."""
    from crm.callbacks import service as callbacks
    from tests.storage.test_pages_zh import DATA, _signed_in

    server, sessions = web
    late = await _dispatched(sessions, "repair", timedelta(days=8))
    soon = await _dispatched(sessions, "repair", timedelta(days=6, hours=12))
    await dispatch.urge(sessions, late, channel="ivr_speech")
    await dispatch.send_reminders(sessions)
    await dispatch.request_return(sessions, late, "不归本部门", department="housing",
                                  actor="token:housing")
    await dispatch.request_extension(sessions, soon, utcnow() + timedelta(days=30), "等配件",
                                     department="housing", actor="token:housing")
    waiting = await callbacks.request_callback(sessions, number="13800138001",
                                               reason="abandoned", waited_s=42)
    dropped = await callbacks.request_callback(sessions, number="13800138002", reason="chosen")
    await callbacks.reassign_callback(sessions, waiting.request.id, "agent2",
                                      actor="agent:admin")
    await callbacks.cancel_callback(sessions, dropped.request.id, actor="agent:admin",
                                    note="居民已来电")

    client, _ = await _signed_in(server, "console", "admin")
    problems = {}
    for path in ("/console/supervision", "/console/callbacks", "/console/audit"):
        html = await (await client.get(path)).text()
        # agent2's name and the name of the department's API token
        problems[path] = not_chinese(html, DATA | {"Kim Jisoo", "housing"})
        if path == "/console/supervision":
            assert f'id="case-{late}"' in html and "不归本部门" in html and "等配件" in html
        if path == "/console/callbacks":
            assert f'id="callback-{waiting.request.id}"' in html and "排队时挂机" in html
        if path == "/console/audit":
            assert "催办" in html and "取消回拨" in html
    assert not any(problems.values()), problems
