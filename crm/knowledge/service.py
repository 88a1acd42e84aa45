"""What the console, the desk, the dashboard and the IVR ask of the knowledge base: articles
kept with their term index, search, the "answered from article N" mark and its share of
calls."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crm.audit import log as audit
from crm.errors import ConsultationNotFound, UnknownDepartment
from crm.i18n.phrases import Labels, Phrase
from crm.knowledge.errors import ArticleNotFound, InvalidArticle
from crm.knowledge.models import (
    ConsultationArticle,
    KnowledgeAnswer,
    KnowledgeArticle,
    KnowledgeTerm,
)
from crm.knowledge.ranking import MIN_SCORE, bm25
from crm.knowledge.segmentation import article_terms, query_terms
from crm.storage.db import SessionFactory
from crm.storage.models import Consultation, ConsultationStep, Department, utcnow
from crm.telephony.steps import ArticleRead

LANGUAGES = ("cmn", "en", "ko")
MAX_TITLE = 200
MAX_BODY = 20000
MAX_ANSWER = 1000
MAX_QUERY = 2000


@dataclass(frozen=True)
class ArticleInput:
    """An article as the console submits it (validated by ``checked``)."""

    title: str
    body: str
    review_date: date
    answers: Mapping[str, str] = field(default_factory=dict)
    """language -> the short spoken answer"""
    category_code: str | None = None
    department_code: str | None = None
    ivr_key: str | None = None

    def checked(self) -> ArticleInput:
        title, body = self.title.strip(), self.body.strip()
        if not title or len(title) > MAX_TITLE:
            raise InvalidArticle(Phrase("the title must have 1 to {max} characters",
                                        {"max": MAX_TITLE}),
                                 details={"field": "title"})
        if not body or len(body) > MAX_BODY:
            raise InvalidArticle(Phrase("the text must have 1 to {max} characters",
                                        {"max": MAX_BODY}),
                                 details={"field": "body"})
        answers = {lang: text.strip() for lang, text in self.answers.items() if text.strip()}
        for lang, text in answers.items():
            if lang not in LANGUAGES:
                raise InvalidArticle(Phrase("unknown language {language}; valid: {languages}",
                                            {"language": repr(lang),
                                             "languages": Labels("language", tuple(LANGUAGES))}),
                                     details={"field": f"answer_{lang}"})
            if len(text) > MAX_ANSWER:
                raise InvalidArticle(Phrase("a spoken answer has at most {max} characters",
                                            {"max": MAX_ANSWER}),
                                     details={"field": f"answer_{lang}"})
        if "cmn" not in answers:
            raise InvalidArticle(Phrase("the Mandarin spoken answer is required"),
                                 details={"field": "answer_cmn"})
        key = (self.ivr_key or "").strip() or None
        if key is not None and not (len(key) == 1 and key.isdigit()):
            raise InvalidArticle(Phrase("the IVR key is one digit"),
                                 details={"field": "ivr_key"})
        return ArticleInput(title, body, self.review_date, answers,
                            (self.category_code or "").strip() or None,
                            (self.department_code or "").strip() or None, key)


@dataclass(frozen=True)
class ArticleView:
    id: int
    title: str
    body: str
    category_code: str | None
    department_code: str | None
    department_name: str | None
    review_date: date
    ivr_key: str | None
    answers: dict[str, str]
    updated_at: datetime
    updated_by: str | None
    expired: bool

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "body": self.body,
                "category": self.category_code, "department": self.department_code,
                "department_name": self.department_name,
                "review_date": self.review_date.isoformat(), "ivr_key": self.ivr_key,
                "answers": self.answers, "updated_at": self.updated_at.isoformat(),
                "updated_by": self.updated_by, "expired": self.expired}


@dataclass(frozen=True)
class Match:
    article: ArticleView
    score: float
    matched: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.article.to_json(), "score": self.score, "matched": list(self.matched)}


def _today() -> date:
    return utcnow().date()


def _view(article: KnowledgeArticle, department: Department | None, today: date) -> ArticleView:
    return ArticleView(article.id, article.title, article.body, article.category_code,
                       department.code if department else None,
                       department.name if department else None, article.review_date,
                       article.ivr_key, {a.language: a.text for a in article.answers},
                       article.updated_at, article.updated_by, article.review_date < today)


async def _department_id(session: AsyncSession, code: str | None) -> int | None:
    if code is None:
        return None
    found = await session.scalar(select(Department.id).where(Department.code == code))
    if found is None:
        raise UnknownDepartment(Phrase("no department with code {code}", {"code": repr(code)}),
                                details={"field": "department"})
    return found


async def _index(session: AsyncSession, article: KnowledgeArticle, data: ArticleInput) -> None:
    """Replaces the article's term rows (segmenting runs off the event loop)."""
    counts = await asyncio.to_thread(article_terms, data.title, data.body,
                                     list(data.answers.values()))
    await session.execute(delete(KnowledgeTerm).where(KnowledgeTerm.article_id == article.id))
    session.add_all(KnowledgeTerm(article_id=article.id, term=t, count=c)
                    for t, c in counts.items())


def _apply(article: KnowledgeArticle, data: ArticleInput, department_id: int | None,
           actor: str) -> None:
    article.title, article.body = data.title, data.body
    article.category_code, article.department_id = data.category_code, department_id
    article.review_date, article.ivr_key = data.review_date, data.ivr_key
    article.updated_at, article.updated_by = utcnow(), actor
    article.answers = [KnowledgeAnswer(language=lang, text=text)
                       for lang, text in sorted(data.answers.items())]


async def create_article(sessions: SessionFactory, data: ArticleInput, *, actor: str,
                         source: str | None = None, web_session: str | None = None) -> int:
    data = data.checked()
    async with sessions() as session, session.begin():
        department_id = await _department_id(session, data.department_code)
        article = KnowledgeArticle(created_at=utcnow())
        _apply(article, data, department_id, actor)
        session.add(article)
        await session.flush()
        await _index(session, article, data)
        audit.record(session, actor=actor, action="knowledge.create",
                     object_type="knowledge_article", object_id=article.id,
                     detail={"title": data.title}, source=source, web_session=web_session)
        return article.id


async def update_article(sessions: SessionFactory, article_id: int, data: ArticleInput, *,
                         actor: str, source: str | None = None,
                         web_session: str | None = None) -> None:
    data = data.checked()
    async with sessions() as session, session.begin():
        article = await session.get(KnowledgeArticle, article_id,
                                    options=[selectinload(KnowledgeArticle.answers)])
        if article is None:
            raise ArticleNotFound(Phrase("no knowledge article {id}", {"id": article_id}))
        department_id = await _department_id(session, data.department_code)
        _apply(article, data, department_id, actor)
        await session.flush()
        await _index(session, article, data)
        audit.record(session, actor=actor, action="knowledge.update",
                     object_type="knowledge_article", object_id=article.id,
                     detail={"title": data.title}, source=source, web_session=web_session)


async def _views(session: AsyncSession, ids: list[int] | None, today: date
                 ) -> dict[int, ArticleView]:
    query = (select(KnowledgeArticle, Department)
             .outerjoin(Department, Department.id == KnowledgeArticle.department_id)
             .options(selectinload(KnowledgeArticle.answers)))
    if ids is not None:
        query = query.where(KnowledgeArticle.id.in_(ids))
    rows = (await session.execute(query.order_by(KnowledgeArticle.id))).all()
    return {a.id: _view(a, d, today) for a, d in rows}


async def get_article(sessions: SessionFactory, article_id: int, *,
                      today: date | None = None) -> ArticleView:
    async with sessions() as session:
        found = (await _views(session, [article_id], today or _today())).get(article_id)
    if found is None:
        raise ArticleNotFound(Phrase("no knowledge article {id}", {"id": article_id}))
    return found


async def list_articles(sessions: SessionFactory, *, today: date | None = None
                        ) -> list[ArticleView]:
    """Every article, the expired ones (review date passed) first."""
    async with sessions() as session:
        views = list((await _views(session, None, today or _today())).values())
    return sorted(views, key=lambda v: (not v.expired, v.category_code or "", v.id))


async def search(sessions: SessionFactory, text: str, *, limit: int = 5,
                 min_score: float = MIN_SCORE, today: date | None = None) -> list[Match]:
    """The best articles for the words of ``text`` (a transcript, a case description or
    what an agent typed), best first; none when nothing matches well enough."""
    words = await asyncio.to_thread(query_terms, text[:MAX_QUERY])
    if not words:
        return []
    async with sessions() as session:
        rows = (await session.execute(
            select(KnowledgeTerm.term, KnowledgeTerm.article_id, KnowledgeTerm.count)
            .where(KnowledgeTerm.term.in_(words)))).all()
        if not rows:
            return []
        postings: dict[str, dict[int, int]] = {}
        for term, article_id, count in rows:
            postings.setdefault(term, {})[article_id] = count
        candidates = sorted({r.article_id for r in rows})
        lengths = {a: int(n) for a, n in (await session.execute(
            select(KnowledgeTerm.article_id, func.sum(KnowledgeTerm.count))
            .where(KnowledgeTerm.article_id.in_(candidates))
            .group_by(KnowledgeTerm.article_id))).all()}
        articles = await session.scalar(select(func.count(KnowledgeArticle.id))) or 0
        total = await session.scalar(select(func.sum(KnowledgeTerm.count))) or 0
        ranked = bm25(words, postings, lengths,
                      articles=articles, average_length=total / articles if articles else 0,
                      min_score=min_score, limit=limit)
        views = await _views(session, [r.article_id for r in ranked], today or _today())
    return [Match(views[r.article_id], r.score, r.matched) for r in ranked
            if r.article_id in views]


async def search_each(sessions: SessionFactory, texts: list[str], *, limit: int = 5,
                      today: date | None = None) -> list[Match]:
    """The best articles for any of ``texts`` (what the caller said, a case's description,
    what the agent is typing), each searched on its own so a long transcript does not drown
    a short description; an article found by several keeps its best score."""
    best: dict[int, Match] = {}
    for text in texts:
        for match in await search(sessions, text, limit=limit, today=today):
            if match.article.id not in best or best[match.article.id].score < match.score:
                best[match.article.id] = match
    return sorted(best.values(), key=lambda m: (-m.score, m.article.id))[:limit]


async def mark_answered(sessions: SessionFactory, consultation_id: int, article_id: int, *,
                        agent_id: int | None, actor: str, source: str | None = None,
                        web_session: str | None = None) -> None:
    """"Answered from article N" on a consultation (marking it twice changes nothing)."""
    async with sessions() as session, session.begin():
        if await session.get(Consultation, consultation_id) is None:
            raise ConsultationNotFound(Phrase("no consultation {id}", {"id": consultation_id}))
        if await session.get(KnowledgeArticle, article_id) is None:
            raise ArticleNotFound(Phrase("no knowledge article {id}", {"id": article_id}))
        if await session.get(ConsultationArticle, (consultation_id, article_id)) is None:
            session.add(ConsultationArticle(consultation_id=consultation_id,
                                            article_id=article_id, agent_id=agent_id,
                                            marked_at=utcnow()))
            audit.record(session, actor=actor, action="knowledge.answered",
                         object_type="consultation", object_id=consultation_id,
                         detail={"article": article_id}, source=source,
                         web_session=web_session)


async def answered_articles(sessions: SessionFactory, consultation_id: int) -> list[int]:
    async with sessions() as session:
        return list((await session.scalars(
            select(ConsultationArticle.article_id)
            .where(ConsultationArticle.consultation_id == consultation_id)
            .order_by(ConsultationArticle.article_id))).all())


@dataclass(frozen=True)
class AnsweredShare:
    calls: int
    answered: int
    """Calls answered from the knowledge base: an agent's "answered from article" mark, or
    an article's spoken answer the IVR read (an ``article_read`` step)."""
    by_agents: int = 0
    by_ivr: int = 0

    @property
    def share(self) -> float | None:
        return self.answered / self.calls if self.calls else None


async def answered_share(sessions: SessionFactory, since: datetime, until: datetime
                         ) -> AnsweredShare:
    """Of the calls that started in [since, until), how many were answered from the
    knowledge base, by an agent or by the IVR."""
    in_period = (Consultation.started_at >= since) & (Consultation.started_at < until)
    marked = (select(ConsultationArticle.consultation_id)
              .where(ConsultationArticle.consultation_id == Consultation.id).exists())
    read = (select(ConsultationStep.id)
            .where(ConsultationStep.consultation_id == Consultation.id,
                   ConsultationStep.kind == ArticleRead.KIND).exists())
    async with sessions() as session:
        calls, answered, by_agents, by_ivr = (await session.execute(
            select(func.count(Consultation.id),
                   func.count(Consultation.id).filter(marked | read),
                   func.count(Consultation.id).filter(marked),
                   func.count(Consultation.id).filter(read))
            .where(in_period))).one()
    return AnsweredShare(calls or 0, answered or 0, by_agents or 0, by_ivr or 0)
