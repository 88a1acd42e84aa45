"""The console's data administration page over real HTTP and a real database (SQLite and
PostgreSQL): downloads and uploads of departments, categories and agents, a bad file named by
line and field with nothing written, CSRF, and the audit trail."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from crm.agents import accounts as agents
from crm.audit import log as audit
from crm.storage.db import SessionFactory
from crm.storage.models import Agent, CaseCategory
from crm.web.app import HealthReport, create_app
from crm.web.console.app import ConsoleDeps

PASSWORD = "data-admin-test-pw"
DEPARTMENTS = ("code,name,name_en,name_ko,phone\n"
               "housing,住房保障科,Housing,,6001\nwater,供水公司,,,\n")
BAD_CATEGORIES = ("code,name,parent,time_limit,department\n"
                  "repair,房屋维修,,5d,housing\n"
                  "leak,漏水,,3x,gas\n")
AGENTS = ("login,name,role,extension,languages\n"
          "amy,王艾米,agent,2001,cmn;en\n"
          "kim.s,\"Kim, Seo-yeon\",supervisor,2002,ko\n")


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


@pytest.fixture
async def admin(sessions: SessionFactory) -> AsyncIterator[tuple[TestClient, str]]:
    await agents.create_agent(sessions, login="admin1", display_name="管理员", role="admin",
                              extension="2900", password=PASSWORD)
    server = TestServer(create_app(sessions, lambda: HealthReport("logged_in", 1, 0, 0),
                                   console=ConsoleDeps(sessions, "data-secret")))
    client = TestClient(server)
    await client.start_server()
    try:
        form = await client.get("/console/login")
        signed = await client.post("/console/login", data={
            "csrf": _csrf(await form.text()), "login": "admin1", "password": PASSWORD})
        assert signed.status == 200
        yield client, _csrf(await signed.text())
    finally:
        await client.close()


async def _upload(client: TestClient, kind: str, text: str | bytes, csrf: str | None,
                  name: str = "in.csv") -> tuple[int, str]:
    data = aiohttp.FormData()
    if csrf is not None:
        data.add_field("csrf", csrf)
    data.add_field("file", text.encode() if isinstance(text, str) else text, filename=name,
                   content_type="text/csv")
    response = await client.post(f"/console/data/{kind}/import", data=data)
    return response.status, await response.text()


async def _count(sessions: SessionFactory, table: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_admin_imports_and_exports_over_http(sessions: SessionFactory,
                                                   admin: tuple[TestClient, str]) -> None:
    client, csrf = admin
    page = await client.get("/console/data")
    html = await page.text()
    assert page.status == 200 and 'href="/console/data" aria-current="page"' in html
    for kind in ("departments", "categories", "agents", "residents"):
        assert f'action="/console/data/{kind}/import"' in html
        assert f'href="/console/data/{kind}.csv"' in html

    status, html = await _upload(client, "departments", DEPARTMENTS, csrf)
    assert status == 200 and 'data-created="2" data-updated="0"' in html
    big = "# " + "x" * (1024 * 1024) + "\n" + DEPARTMENTS  # above the app's 1 MiB bodies
    status, html = await _upload(client, "departments", big, csrf)
    assert status == 200 and 'data-created="0" data-updated="2"' in html

    status, html = await _upload(client, "categories", BAD_CATEGORIES, csrf, "cats.csv")
    assert status == 422 and 'id="import-problems"' in html
    problems = [html_lib.unescape(p) for p in re.findall(r"<li>(第 [^<]*)</li>", html)]
    assert problems == [  # in the admin's language (the CLI's are English)
        "第 3 行，字段“time_limit”：'3x' 不是有效的办理时限，应如 2h、24h、7d 或 15d（h 为小时，"
        "d 为天）",
        "第 3 行，字段“department”：没有代码为 'gas' 的部门（请先导入部门）"]
    assert await _count(sessions, CaseCategory) == 0  # line 2 was good: nothing written

    status, html = await _upload(client, "agents", AGENTS, None)
    assert status == 403 and await _count(sessions, Agent) == 1  # no CSRF token: refused

    status, html = await _upload(client, "agents", "\ufeff" + AGENTS, csrf)
    assert status == 200 and 'data-created="2" data-updated="0"' in html
    assert "hotline agents set-password LOGIN" in html
    download = await client.get("/console/data/agents.csv")
    assert download.status == 200
    assert download.headers["Content-Disposition"] == 'attachment; filename="agents.csv"'
    exported = (await download.read()).decode("utf-8")
    assert exported == ("\ufefflogin,name,role,extension,languages\n"
                        "admin1,管理员,admin,2900,cmn\n"
                        "amy,王艾米,agent,2001,cmn;en\n"
                        "kim.s,\"Kim, Seo-yeon\",supervisor,2002,ko\n")
    status, html = await _upload(client, "agents", exported, csrf)  # the round trip
    assert status == 200 and 'data-created="0" data-updated="3"' in html
    assert (await (await client.get("/console/data/agents.csv")).read()).decode() == exported
    assert (await agents.get_agent(sessions, "admin1")).can_log_in  # password untouched

    status, html = await _upload(client, "agents", "login,name,role\nadmin1,我,agent\n", csrf)
    assert status == 422
    assert "第 2 行，字段“role”：您不能通过自己的导入修改自己的角色（管理员）" in html
    assert (await agents.get_agent(sessions, "admin1")).role == "admin"

    status, html = await _upload(client, "residents", b"name,phones\n\xff\xfe\n", csrf)
    assert status == 422 and "不是 UTF-8 文本（第 12 字节）" in html

    actions = sorted((e.action, e.object_type, e.actor)
                     for e in await audit.entries(sessions, limit=100)
                     if e.action.startswith(("departments.", "categories.", "agents.",
                                             "export.")))
    assert actions == [
        ("agents.import", "agents", "agent:admin1"),
        ("agents.import", "agents", "agent:admin1"),
        ("agents.import_refused", "agents", "agent:admin1"),
        ("categories.import_refused", "categories", "agent:admin1"),
        ("departments.import", "departments", "agent:admin1"),
        ("departments.import", "departments", "agent:admin1"),
        ("export.csv", "agents", "agent:admin1"),
        ("export.csv", "agents", "agent:admin1"),
    ]
