"""The knowledge base on SQLite and PostgreSQL: articles with their term index, search,
expiry, the "answered from article" mark and its share of calls."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select

from crm.errors import ConsultationNotFound, UnknownDepartment
from crm.knowledge import service
from crm.knowledge.demo_articles import ARTICLES, seed_demo_articles
from crm.knowledge.errors import ArticleNotFound, InvalidArticle
from crm.knowledge.models import ConsultationArticle, KnowledgeTerm
from crm.knowledge.service import ArticleInput
from crm.storage.models import Consultation, ConsultationStep, Department

TODAY = date(2026, 12, 6)
T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


async def _departments(sessions) -> None:
    async with sessions() as session, session.begin():
        session.add_all([Department(code=c, name=n) for c, n in
                         [("housing", "住房保障科"), ("sanitation", "环境卫生所"),
                          ("civil", "民政服务中心")]])


async def test_seeded_articles_are_found_by_chinese_words_and_flagged_when_expired(
        sessions) -> None:
    await _departments(sessions)
    assert await seed_demo_articles(sessions, today=TODAY) == len(ARTICLES)
    assert await seed_demo_articles(sessions, today=TODAY) == 0  # seeding twice adds nothing

    [top, *_] = await service.search(sessions, "我们小区停水了，什么时候恢复供水？",
                                      today=TODAY)
    assert top.article.title == "计划停水通知及临时供水"
    assert top.article.department_code == "housing" and top.article.ivr_key == "2"
    assert {"停水", "供水"} <= set(top.matched)
    assert "二十四小时" in top.article.answers["cmn"]
    assert await service.search(sessions, "楼上装修噪音太吵了", today=TODAY) == []

    listed = await service.list_articles(sessions, today=TODAY)
    assert [a.title for a in listed if a.expired] == ["楼道灯和公共设施报修"]
    assert listed[0].expired  # the expired ones first


async def test_an_edit_reindexes_the_article_and_bad_input_changes_nothing(sessions) -> None:
    await _departments(sessions)
    article_id = await service.create_article(sessions, ArticleInput(
        "充电桩安装申请", "电动车充电桩安装需要物业同意书和车位证明。", TODAY,
        {"cmn": "安装充电桩要带物业同意书。"}, "repair", "housing"), actor="sup")
    assert [m.article.id for m in await service.search(sessions, "充电桩")] == [article_id]

    await service.update_article(sessions, article_id, ArticleInput(
        "电动自行车集中充电点", "小区东门设有电动自行车集中充电点，刷卡充电。", TODAY,
        {"cmn": "东门有集中充电点。", "en": "Charging point at the east gate."},
        "repair", "housing", "4"), actor="sup")
    assert await service.search(sessions, "充电桩 同意书") == []
    [found] = await service.search(sessions, "集中充电点在哪里")
    assert found.article.answers == {"cmn": "东门有集中充电点。",
                                     "en": "Charging point at the east gate."}
    assert found.article.updated_by == "sup"

    with pytest.raises(InvalidArticle) as bad:
        await service.update_article(sessions, article_id, ArticleInput(
            "无普通话答案", "正文", TODAY, {"en": "English only"}), actor="sup")
    assert bad.value.details == {"field": "answer_cmn"}
    with pytest.raises(UnknownDepartment):
        await service.update_article(sessions, article_id, ArticleInput(
            "标题", "正文", TODAY, {"cmn": "答"}, department_code="nope"), actor="sup")
    with pytest.raises(ArticleNotFound):
        await service.get_article(sessions, article_id + 100)
    assert (await service.get_article(sessions, article_id)).title == "电动自行车集中充电点"


async def test_answered_from_article_and_its_share_of_calls(sessions) -> None:
    await _departments(sessions)
    await seed_demo_articles(sessions, today=TODAY)
    async with sessions() as session, session.begin():
        calls = [Consultation(call_id=f"c-{i}", started_at=T0 + timedelta(minutes=i))
                 for i in range(4)]
        session.add_all(calls)
    [garbage, *_] = await service.search(sessions, "垃圾投放时间")
    [water, *_] = await service.search(sessions, "停水")
    await service.mark_answered(sessions, calls[0].id, garbage.article.id, agent_id=None,
                                actor="a1")
    await service.mark_answered(sessions, calls[0].id, water.article.id, agent_id=None,
                                actor="a1")
    await service.mark_answered(sessions, calls[0].id, water.article.id, agent_id=None,
                                actor="a1")  # twice: no change
    await service.mark_answered(sessions, calls[2].id, water.article.id, agent_id=None,
                                actor="a1")
    with pytest.raises(ConsultationNotFound):
        await service.mark_answered(sessions, 9999, water.article.id, agent_id=None, actor="a1")
    with pytest.raises(ArticleNotFound):
        await service.mark_answered(sessions, calls[1].id, 9999, agent_id=None, actor="a1")

    assert await service.answered_articles(sessions, calls[0].id) == sorted(
        [garbage.article.id, water.article.id])
    share = await service.answered_share(sessions, T0, T0 + timedelta(hours=1))
    assert (share.calls, share.answered, share.share) == (4, 2, 0.5)
    async with sessions() as session, session.begin():  # the IVR read one to calls[1], [2]
        for call in calls[1:3]:
            session.add(ConsultationStep(consultation_id=call.id, at=T0, kind="article_read",
                                         detail={"article_id": water.article.id,
                                                 "title": "t", "by": "keys"}))
    share = await service.answered_share(sessions, T0, T0 + timedelta(hours=1))
    assert (share.calls, share.answered, share.by_agents, share.by_ivr) == (4, 3, 2, 2)
    later = await service.answered_share(sessions, T0 + timedelta(minutes=3), T0 + timedelta(1))
    assert (later.calls, later.answered) == (1, 0)

    async with sessions() as session, session.begin():  # retention removes a consultation
        await session.execute(delete(Consultation).where(Consultation.id == calls[0].id))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ConsultationArticle)) == 1
        assert await session.scalar(select(func.count()).select_from(KnowledgeTerm)) > 50
