"""The knowledge base in the supervisor console over HTTP, on both databases: the list with
expired articles flagged, creating and editing an article (the search index follows), and
a wrong field shown with everything the supervisor typed kept."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm.agents import accounts as agents
from crm.audit import log as audit
from crm.demo_data import seed_demo
from crm.knowledge import service as knowledge
from crm.storage.db import SessionFactory
from crm.storage.models import Consultation
from crm.web.app import HealthReport, create_app
from crm.web.console.app import ConsoleDeps

PASSWORD = "knowledge-test-pw"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


@pytest.fixture
async def supervisor(sessions: SessionFactory, db_url: str) -> AsyncIterator[TestClient]:
    await seed_demo(db_url)
    await agents.set_password(sessions, "supervisor1", PASSWORD)
    server = TestServer(create_app(sessions, lambda: HealthReport("logged_in", 1, 0, 0),
                                   console=ConsoleDeps(sessions, "console-secret")))
    client = TestClient(server)
    await client.start_server()
    try:
        form = await client.get("/console/login")
        signed = await client.post("/console/login", data={
            "csrf": _csrf(await form.text()), "login": "supervisor1", "password": PASSWORD})
        assert signed.status == 200
        yield client
    finally:
        await client.close()


async def test_supervisor_creates_and_edits_an_article(supervisor: TestClient,
                                                       sessions: SessionFactory) -> None:
    listing = await supervisor.get("/console/knowledge")
    html = await listing.text()
    assert listing.status == 200 and "生活垃圾分类投放时间" in html
    assert len(re.findall(r'data-expired="yes"', html)) == 1
    assert re.search(r'data-expired="yes">\s*<td class="num">\d+</td>\s*<td><a [^>]+>'
                     r'楼道灯和公共设施报修', html)

    form = await supervisor.get("/console/knowledge/new")
    csrf = _csrf(await form.text())
    review = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    article = {"csrf": csrf, "title": "社区疫苗接种点和时间", "category": "subsidy",
               "department": "civil", "review_date": review, "ivr_key": "",
               "answer_cmn": "", "answer_en": "Vaccination at the health station.",
               "answer_ko": "", "body": "社区卫生服务站每周二、周四上午提供疫苗接种，请带身份证。"}
    refused = await supervisor.post("/console/knowledge", data=article, allow_redirects=False)
    page = await refused.text()
    assert refused.status == 400
    assert 'data-field="answer_cmn"' in page and "普通话语音答复为必填项" in page  # Mandarin...
    assert "社区卫生服务站每周二" in page and "Vaccination at the health station." in page
    assert await knowledge.search(sessions, "疫苗接种") == []  # nothing saved

    article["answer_cmn"] = "社区卫生服务站每周二、周四上午接种疫苗。"
    created = await supervisor.post("/console/knowledge", data=article, allow_redirects=False)
    assert created.status == 303
    article_id = int(created.headers["Location"].rsplit("-", 1)[1])
    [found] = await knowledge.search(sessions, "哪里可以打疫苗接种")
    assert found.article.id == article_id and found.article.department_code == "civil"

    edit = await supervisor.get(f"/console/knowledge/{article_id}")
    assert 'value="社区疫苗接种点和时间"' in await edit.text()
    article.update(title="流感疫苗接种", body="流感疫苗每年十月开始在社区卫生服务站接种。",
                   ivr_key="x")
    wrong = await supervisor.post(f"/console/knowledge/{article_id}", data=article)
    assert wrong.status == 400 and 'data-field="ivr_key"' in await wrong.text()
    article["ivr_key"] = "5"
    saved = await supervisor.post(f"/console/knowledge/{article_id}", data=article,
                                  allow_redirects=False)
    assert saved.status == 303
    view = await knowledge.get_article(sessions, article_id)
    assert (view.title, view.ivr_key, view.updated_by) == ("流感疫苗接种", "5", "agent:supervisor1")
    assert [m.article.id for m in await knowledge.search(sessions, "流感疫苗")] == [article_id]

    missing = await supervisor.get("/console/knowledge/99999")
    assert missing.status == 404
    no_csrf = await supervisor.post("/console/knowledge", data={**article, "csrf": "x"})
    assert no_csrf.status == 403
    entries = await audit.entries(sessions, object_type="knowledge_article")
    assert sorted(e.action for e in entries) == ["knowledge.create"] * 6 + ["knowledge.update"]
    assert {e.source for e in entries if e.actor == "agent:supervisor1"} == {"127.0.0.1"}


async def test_dashboard_shows_the_share_of_calls_answered_from_the_knowledge_base(
        supervisor: TestClient, sessions: SessionFactory) -> None:
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        calls = [Consultation(call_id=f"kb-{i}", started_at=now - timedelta(seconds=i))
                 for i in range(4)]
        session.add_all(calls)
    [water, *_] = await knowledge.search(sessions, "停水")
    await knowledge.mark_answered(sessions, calls[1].id, water.article.id, agent_id=None,
                                  actor="agent1")
    page = await (await supervisor.get("/console/dashboard")).text()
    tile = re.search(r'id="kpi-knowledge" data-answered="(\d+)" data-calls="(\d+)">([^<]+)<',
                     page)
    assert tile is not None and tile.groups() == ("1", "4", "25%")
