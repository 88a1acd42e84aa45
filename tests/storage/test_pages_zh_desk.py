"""The agent desk in Chinese and in English: the page (no English where a Chinese-speaking
agent reads, tests/zh_pages.py), the names of codes handed to its script, the sign-in
errors, and the pop's IVR transcript in the agent's own language, switched with the
language switch. SQLite only: rendering does not depend on the database."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm.agents import accounts as agents
from crm.demo_data import seed_demo
from crm.i18n.catalogs import translator
from crm.live.desk_hub import DeskHub
from crm.storage.db import SessionFactory
from crm.telephony.events import AgentRinging, CallStarted, CallStep
from crm.telephony.steps import KeysEntered, LanguageChosen, RouteChosen
from crm.web.app import HealthReport, create_app
from crm.web.desk import DeskDeps
from tests.zh_pages import not_chinese, readable_text

PASSWORD = "zh-desk-test-pw"
PHONE = "13800138000"
DATA = frozenset({"agent1"})
"""The demo agent's login: data, not interface text."""
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
async def web(sessions: SessionFactory, db_url: str
              ) -> AsyncIterator[tuple[TestServer, DeskHub, list[TestClient]]]:
    if not db_url.startswith("sqlite"):
        pytest.skip("rendering does not depend on the database")
    await seed_demo(db_url)
    await agents.set_password(sessions, "agent1", PASSWORD)
    hub = DeskHub(sessions)
    hub.start()
    desk = DeskDeps(sessions, hub, None, "zh-desk-secret")
    server = TestServer(create_app(sessions, lambda: HealthReport("logged_in", 1, 0, 0),
                                   desk=desk))
    clients: list[TestClient] = []
    try:
        yield server, hub, clients
    finally:
        await hub.close()
        for client in clients:
            await client.close()
        await server.close()


def _csrf(html: str) -> str:
    found = re.search(r'(?:name="csrf" value|data-csrf)="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


async def _client(server: TestServer, clients: list[TestClient]) -> TestClient:
    client = TestClient(server)
    await client.start_server()
    clients.append(client)
    return client


async def _sign_in(server: TestServer, clients: list[TestClient]) -> tuple[TestClient, str]:
    client = await _client(server, clients)
    form = await client.get("/desk/login")
    page = await client.post("/desk/login", data={
        "csrf": _csrf(await form.text()), "login": "agent1", "password": PASSWORD})
    assert page.status == 200, await page.text()
    return client, _csrf(await page.text())


def _labels(html: str) -> dict[str, dict[str, str]]:
    found = re.search(r'<script type="application/json" id="desk-labels">(.*?)</script>', html,
                      re.S)
    assert found, "no desk-labels"
    return json.loads(found.group(1))


async def _ring(hub: DeskHub) -> None:
    """A call that keyed 1, chose Cantonese and asked for an agent rings agent1 (2001)."""
    await hub.handle(CallStarted("call-zh", PHONE, "张三", "PJSIP/gw-00000001"))
    await hub.handle(CallStep("call-zh", LanguageChosen("yue", "keys")))
    await hub.handle(CallStep("call-zh", KeysEntered("1")))
    await hub.handle(CallStep("call-zh", RouteChosen("agent", "asked")))
    await hub.handle(AgentRinging("call-zh", "hotline", "PJSIP/2001", "2001", None, PHONE, "张三",
                                  "PJSIP/gw-00000001"))
    await hub.drain()


def _transcript(current: dict) -> list[str]:
    return [line["text"] for line in current["call"]["pop"]["ivr"]["transcript"]]


async def test_the_desk_reads_in_chinese_then_in_english(
        web: tuple[TestServer, DeskHub, list[TestClient]]) -> None:
    server, hub, clients = web
    client, csrf = await _sign_in(server, clients)
    html = await (await client.get("/desk/")).text()
    assert '<html lang="zh-CN">' in html
    assert not not_chinese(html, DATA), not_chinese(html, DATA)
    created = translator("zh_CN").label("disposition", "case_created")
    assert CJK.search(created) and f'<option value="case_created">{created}</option>' in html
    labels = _labels(html)
    assert labels["stage"]["in_progress"] == "办理中"
    assert labels["prompt"]["ask_case_number"] == "请输入工单号"  # the IVR path's prompts
    assert labels["agent_status"]["available"] and CJK.search(labels["call_phase"]["ringing"])
    messages = json.loads(re.search(r'id="i18n-messages">(.*?)</script>', html, re.S)
                          .group(1))  # type: ignore[union-attr]
    assert messages["Unknown caller"] == "未知来电"

    await _ring(hub)
    lines = _transcript(await (await client.get("/desk/current-call")).json())
    assert "按键：1" in lines and "语言：粤语（来自按键）" in lines, lines
    assert "转至人工坐席（来电人要求）" in lines, lines

    switched = await client.post("/desk/locale", data={"csrf": csrf, "locale": "en"},
                                 allow_redirects=False)
    assert switched.status == 303
    lines = _transcript(await (await client.get("/desk/current-call")).json())
    assert "Keyed: 1" in lines and "Language Cantonese (by keys)" in lines, lines
    html = await (await client.get("/desk/")).text()
    assert '<html lang="en">' in html
    assert _labels(html)["stage"]["in_progress"] == "In handling"
    assert json.loads(re.search(r'id="i18n-messages">(.*?)</script>', html, re.S)
                      .group(1)) == {}  # type: ignore[union-attr]
    texts = readable_text(html)
    for english in ("Waiting for calls", "Take action", "Done with this call", "Case created",
                    "Ready", "Sign out"):
        assert english in texts, english
    # What is Chinese on the English page is data: the agent's and categories' names.
    chinese = [t for t in texts if CJK.search(t)]
    assert all(t in ("王芳", "中文") or "/" in t or "(" in t for t in chinese), chinese


async def test_sign_in_errors_read_in_the_pages_language(
        web: tuple[TestServer, DeskHub, list[TestClient]]) -> None:
    server, _, clients = web
    client = await _client(server, clients)
    form = await client.get("/desk/login")
    wrong = await client.post("/desk/login", data={
        "csrf": _csrf(await form.text()), "login": "agent1", "password": "not-it"})
    html = await wrong.text()
    assert wrong.status == 401 and "账号或密码错误。" in html
    assert not not_chinese(html, DATA), not_chinese(html, DATA)
    expired = await client.post("/desk/login", data={"login": "agent1", "password": "x"})
    assert expired.status == 403 and "表单已过期，请重新登录。" in await expired.text()
    english = await _client(server, clients)
    form = await english.get("/desk/login?lang=en")
    wrong = await english.post("/desk/login", data={
        "csrf": _csrf(await form.text()), "login": "agent1", "password": "not-it"})
    assert "Wrong login or password." in await wrong.text()
