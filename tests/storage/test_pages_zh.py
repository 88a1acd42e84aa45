"""Every page of the console and the desk in Chinese, with realistic data: no raw code and no
untranslated English where a person reads (tests/zh_pages.py), and the language switch
(saved per user, a cookie for the sign-in pages). SQLite only: rendering does not depend on
the database (tests/storage/test_console_web.py covers both)."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from crm.agents import accounts as agents
from crm.callbacks.service import request_callback
from crm.cases import dispatch
from crm.cases.service import change_stage, create_case
from crm.demo_data import seed_demo
from crm.knowledge.demo_articles import ARTICLES
from crm.live.desk_hub import DeskHub
from crm.live.wallboard import Wallboard
from crm.storage.db import SessionFactory
from crm.storage.models import Agent, CaseCategory, Department, Resident, utcnow
from crm.storage.recordings import RecordingStore
from crm.web.app import HealthReport, create_app
from crm.web.console.app import ConsoleDeps
from crm.web.desk import DeskDeps
from tests.console_data import seed_surveys
from tests.zh_pages import not_chinese

PASSWORD = "zh-pages-test-pw"
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
CONSOLE_PAGES = ["/console/", "/console/dashboard", "/console/service-levels",
                 "/console/surveys", "/console/consultations", "/console/consultations/{c}",
                 "/console/residents/{r}", "/console/follow-ups", "/console/callbacks",
                 "/console/knowledge", "/console/knowledge/new", "/console/knowledge/{k}",
                 "/console/supervision", "/console/audit", "/console/data"]
"""Every page of the console an admin reads (the department's page: its own test)."""
DATA = frozenset({"agent1", "agent2", "supervisor1", "admin", "dept1"})
"""Logins of the demo accounts: data, not interface text."""
DATA |= {"hotline", "Kim Jisoo", "Riverside", "来电咨询 <b>repair</b>"}
"""The demo's queue, an agent's and a community's name, notes of tests.console_data."""
DATA |= {answers["en"] for *_, answers, _days in ARTICLES if "en" in answers}
"""The demo articles' English spoken answers (an article's form shows them): data."""


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


@pytest.fixture
async def web(sessions: SessionFactory, db_url: str,
              tmp_path: Path) -> AsyncIterator[tuple[TestServer, SessionFactory]]:
    if not db_url.startswith("sqlite"):
        pytest.skip("rendering does not depend on the database")
    await seed_demo(db_url)
    await seed_surveys(sessions, TZ)
    for login in ("admin", "agent1"):
        await agents.set_password(sessions, login, PASSWORD)
    await _back_office(sessions)
    wallboard = Wallboard(sessions, queue="hotline", tz=TZ)
    await wallboard.start()
    console = ConsoleDeps(sessions, "zh-secret", wallboard=wallboard,
                          recordings=RecordingStore(tmp_path), tz=TZ, idle_timeout=600)
    hub = DeskHub(sessions)
    desk = DeskDeps(sessions, hub, None, "zh-desk-secret", numbering_tz=TZ)
    server = TestServer(create_app(sessions, lambda: HealthReport("logged_in", 1, 0, 0),
                                   console=console, desk=desk))
    try:
        yield server, sessions
    finally:
        await wallboard.close()
        while CLIENTS:
            await CLIENTS.pop().close()
        await server.close()


CLIENTS: list[TestClient] = []


async def _client(server: TestServer) -> TestClient:
    """A browser of its own (closed with the server by the fixture: closing a TestClient
    closes its server)."""
    client = TestClient(server)
    await client.start_server()
    CLIENTS.append(client)
    return client


async def _back_office(sessions: SessionFactory) -> None:
    """What the supervision, department and callbacks pages list: an overdue dispatched case,
    urged once, that its department asks to return; a case due soon with an extension asked;
    a missed caller waiting for a callback."""
    async with sessions() as session:
        category = await session.scalar(
            select(CaseCategory.code).where(CaseCategory.department_id.is_not(None),
                                            CaseCategory.level == 3,
                                            CaseCategory.time_limit_days == 7).limit(1))
        department = await session.scalar(
            select(Department.code).join(CaseCategory,
                                         CaseCategory.department_id == Department.id)
            .where(CaseCategory.code == category))
    assert category and department
    old = await create_case(sessions, category=category, description="小区路灯坏了两周",
                            actor="agent:agent1", contact_phone="13800138000",
                            address="幸福社区3号楼", now=utcnow() - timedelta(days=20))
    await change_stage(sessions, old.number, "dispatched", actor="agent:agent1")
    await dispatch.urge(sessions, old.number, channel="ivr_keys")
    await dispatch.request_return(sessions, old.number, "不属于本部门职责",
                                  department=department, actor="agent:admin")
    soon = await create_case(sessions, category=category, description="楼道灯不亮",
                             actor="agent:agent1", contact_phone="13800138000",
                             now=utcnow() - timedelta(days=6, hours=12))
    await change_stage(sessions, soon.number, "dispatched", actor="agent:agent1")
    await dispatch.request_extension(sessions, soon.number, utcnow() + timedelta(days=3),
                                     "需要协调物业", department=department,
                                     actor="agent:admin")
    await request_callback(sessions, number="13900139000", reason="abandoned",
                           language="cmn")


async def _signed_in(server: TestServer, app: str, login: str) -> tuple[TestClient, str]:
    client = await _client(server)
    form = await client.get(f"/{app}/login")
    page = await client.post(f"/{app}/login", data={
        "csrf": _csrf(await form.text()), "login": login, "password": PASSWORD})
    assert page.status == 200, await page.text()
    return client, _csrf(await page.text())


async def _ids(sessions: SessionFactory) -> dict[str, str]:
    from crm.knowledge.models import KnowledgeArticle
    from crm.storage.models import Consultation
    async with sessions() as session:
        first = (await session.execute(select(Consultation.id, Consultation.call_id)
                                       .order_by(Consultation.id).limit(1))).one()
        return {"c": str(first.id), "call": first.call_id,
                "r": str(await session.scalar(select(Resident.id).limit(1))),
                "k": str(await session.scalar(select(KnowledgeArticle.id).limit(1)))}


async def test_every_console_page_reads_in_chinese(web: tuple[TestServer, SessionFactory]
                                                   ) -> None:
    server, sessions = web
    client, _ = await _signed_in(server, "console", "admin")
    ids = await _ids(sessions)
    problems: dict[str, list[str]] = {}
    for path in CONSOLE_PAGES:
        page = await client.get(path.format(**ids))
        html = await page.text()
        assert page.status == 200, (path, html[:500])
        assert '<html lang="zh-CN">' in html, path
        found = not_chinese(html, DATA | {ids["call"]})  # a call id shown on its record
        if found:
            problems[path] = found
    assert not problems, "\n".join(
        f"{p}: {', '.join(dict.fromkeys(w.split(' in ')[0] for w in f))}"
        for p, f in problems.items())


async def test_sign_in_pages_and_home_read_in_chinese(web: tuple[TestServer, SessionFactory]
                                                      ) -> None:
    server, _ = web
    client = await _client(server)
    for path in ("/", "/desk/login", "/console/login", "/console/no-such-page"):
        page = await client.get(path)
        html = await page.text()
        assert '<html lang="zh-CN">' in html or path == "/console/no-such-page", path
        assert not not_chinese(html, DATA), (path, not_chinese(html, DATA))


async def test_a_cookie_chooses_english_before_signing_in(
        web: tuple[TestServer, SessionFactory]) -> None:
    server, _ = web
    client = await _client(server)
    page = await client.get("/desk/login?lang=en")
    assert '<html lang="en">' in await page.text()
    assert page.cookies["hotline_locale"].value == "en"
    again = await client.get("/console/login")  # the cookie is the site's, not the app's
    html = await again.text()
    assert '<html lang="en">' in html and "Supervisor sign-in" in html


async def test_a_user_s_choice_is_saved_on_their_account(
        web: tuple[TestServer, SessionFactory]) -> None:
    server, sessions = web
    client, csrf = await _signed_in(server, "console", "admin")
    switched = await client.post("/console/locale", data={"csrf": csrf, "locale": "en"},
                                 headers={"Referer": "/console/audit"},
                                 allow_redirects=False)
    assert switched.status == 303 and switched.headers["Location"] == "/console/audit"
    page = await client.get("/console/audit")
    assert '<html lang="en">' in await page.text()
    junk = await client.post("/console/locale", data={"csrf": csrf, "locale": "xx"})
    assert junk.status == 400
    refused = await client.post("/console/locale", data={"locale": "zh_CN"})
    assert refused.status == 403  # no CSRF token
    async with sessions() as session:
        assert await session.scalar(select(Agent.locale).where(Agent.login == "admin")) == "en"
    # another browser (no cookie) of the same account: English too
    other, _ = await _signed_in(server, "console", "admin")
    assert '<html lang="en">' in await (await other.get("/console/")).text()
    desk, csrf = await _signed_in(server, "desk", "agent1")
    page = await desk.get("/desk/")
    assert '<html lang="zh-CN">' in await page.text()  # agent1 chose nothing
    await desk.post("/desk/locale", data={"csrf": csrf, "locale": "en"})
    assert '<html lang="en">' in await (await desk.get("/desk/")).text()
