"""The domain's error messages as a person reads them: in Chinese on the console's error pages
and in the JSON answers the console's and desk's scripts show, in English for a user who chose
English, and always in English from the open API (its clients are programs). SQLite only:
the language of a message does not depend on the database."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import AsyncIterator
from html import unescape

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm.agents import accounts as agents
from crm.agents import tokens as api_tokens
from crm.demo_data import seed_demo
from crm.live.desk_hub import DeskHub
from crm.storage.db import SessionFactory
from crm.web.app import HealthReport, create_app
from crm.web.console.app import ConsoleDeps
from crm.web.desk import DeskDeps
from tests.zh_pages import not_chinese

PASSWORD = "errors-zh-test-pw"
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
BAD_OUTCOME = "/console/surveys?outcome=xx"


@pytest.fixture
async def server(sessions: SessionFactory, db_url: str) -> AsyncIterator[TestServer]:
    if not db_url.startswith("sqlite"):
        pytest.skip("the language of a message does not depend on the database")
    await seed_demo(db_url)
    for login in ("admin", "supervisor1", "agent1"):
        await agents.set_password(sessions, login, PASSWORD)
    console = ConsoleDeps(sessions, "errors-secret", tz=TZ, idle_timeout=600)
    desk = DeskDeps(sessions, DeskHub(sessions), None, "errors-desk-secret", numbering_tz=TZ)
    test_server = TestServer(create_app(sessions, lambda: HealthReport("logged_in", 1, 0, 0),
                                        console=console, desk=desk))
    try:
        yield test_server
    finally:
        while CLIENTS:
            await CLIENTS.pop().close()
        await test_server.close()


CLIENTS: list[TestClient] = []


async def _client(server: TestServer) -> TestClient:
    """A browser of its own (closed by the fixture; closing one closes its server)."""
    client = TestClient(server)
    await client.start_server()
    CLIENTS.append(client)
    return client


async def _signed_in(server: TestServer, app: str, login: str) -> tuple[TestClient, str]:
    client = await _client(server)
    form = await client.get(f"/{app}/login")
    page = await client.post(f"/{app}/login", data={
        "csrf": _csrf(await form.text()), "login": login, "password": PASSWORD})
    assert page.status == 200, await page.text()
    return client, _csrf(await page.text())


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


def _message(html: str) -> str:
    """The message of a console error page."""
    found = re.search(r'<p id="error-message">(.*?)</p>', html, re.S)
    assert found, html[:500]
    return unescape(found.group(1))


async def test_console_errors_read_in_the_user_s_language(server: TestServer) -> None:
    admin, csrf = await _signed_in(server, "console", "admin")
    page = await admin.get(BAD_OUTCOME)
    assert page.status == 400
    message = _message(await page.text())
    assert message.startswith("结果须为以下之一：语音导航办结、转人工、"), message
    assert not not_chinese(f"<p>{message}</p>"), message  # no code, no English
    csv = await admin.get("/console/surveys.csv?outcome=xx")  # a script's JSON answer
    assert csv.status == 400
    error = (await csv.json())["error"]
    assert error["code"] == "invalid_input" and error["message"] == message

    supervisor, _ = await _signed_in(server, "console", "supervisor1")
    refused = await supervisor.get("/console/audit")
    assert refused.status == 403
    assert _message(await refused.text()) == "此操作需要管理员或更高的角色"

    switched = await admin.post("/console/locale", data={"csrf": csrf, "locale": "en"})
    assert switched.status == 200
    page = await admin.get(BAD_OUTCOME)
    assert _message(await page.text()) == (
        "outcome must be one of Finished in the IVR, To an agent, IVR fallback to an agent, "
        "Caller hung up, Hung up while waiting")
    csv = await admin.get("/console/surveys.csv?outcome=xx")
    assert (await csv.json())["error"]["message"].startswith("outcome must be one of ")


async def test_desk_errors_read_in_the_agent_s_language(server: TestServer) -> None:
    desk, csrf = await _signed_in(server, "desk", "agent1")
    wrong = await desk.get("/desk/cases/12345")
    assert wrong.status == 400
    error = (await wrong.json())["error"]
    assert error["code"] == "invalid_case_number"
    assert error["message"] == "'12345' 不是有效的工单号（11 位数字，含正确的校验位）"
    no_call = await desk.post("/desk/calls/no-such-call/cases", headers={"X-CSRF-Token": csrf},
                              data={"category": "no-such-category", "description": "x"})
    assert no_call.status == 404
    assert (await no_call.json())["error"]["message"] == "您的工作台上没有通话 no-such-call"

    await desk.post("/desk/locale", data={"csrf": csrf, "locale": "en"})
    wrong = await desk.get("/desk/cases/12345")
    assert (await wrong.json())["error"]["message"] == (
        "'12345' is not a case number (11 digits with a valid check digit)")


async def test_the_open_api_answers_in_english(server: TestServer,
                                               sessions: SessionFactory) -> None:
    token = await api_tokens.create_token(sessions, "errors-zh", list(api_tokens.SCOPES))
    client = await _client(server)
    client.session.cookie_jar.update_cookies({"hotline_locale": "zh_CN"})
    answer = await client.post("/api/cases?lang=zh_CN",
                               headers={"Authorization": f"Bearer {token}",
                                        "Accept-Language": "zh-CN"},
                               json={"category": "no-such-category", "description": "漏水",
                                     "contact_phone": "13800000000"})
    assert answer.status == 400
    error = (await answer.json())["error"]
    assert error["code"] == "unknown_category", error
    assert error["message"].startswith("unknown category 'no-such-category'; categories: ")
