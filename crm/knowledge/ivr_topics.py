"""What the IVR's service information asks of the knowledge base, in one object the
composition root hands to the menu call (as it hands crm.cases.directory.CaseDirectory):
the topics offered by key, and the spoken answer for a key or for the words a caller said.
The IVR never sees the database behind it. Expired articles (review date passed) are not
read to callers: a person answers instead."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from crm.knowledge.models import KnowledgeArticle
from crm.knowledge.service import search
from crm.storage.db import SessionFactory
from crm.storage.models import utcnow


@dataclass(frozen=True)
class SpokenAnswer:
    article_id: int
    title: str
    text: str


class KnowledgeDirectory:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def _today(self) -> date:
        return utcnow().date()

    async def _keyed(self, language: str) -> dict[str, SpokenAnswer]:
        """key -> the answer it picks in ``language`` (the oldest article with that key)."""
        async with self._sessions() as session:
            articles = (await session.scalars(
                select(KnowledgeArticle).where(KnowledgeArticle.ivr_key.is_not(None),
                                               KnowledgeArticle.review_date >= self._today())
                .options(selectinload(KnowledgeArticle.answers))
                .order_by(KnowledgeArticle.ivr_key, KnowledgeArticle.id))).all()
        keyed: dict[str, SpokenAnswer] = {}
        for article in articles:
            text = next((a.text for a in article.answers if a.language == language), None)
            if text and article.ivr_key and article.ivr_key not in keyed:
                keyed[article.ivr_key] = SpokenAnswer(article.id, article.title, text)
        return keyed

    async def topics(self, language: str) -> list[tuple[str, str]]:
        """(key, title) of the topics a caller of ``language`` may key, by key."""
        return [(key, answer.title) for key, answer in (await self._keyed(language)).items()]

    async def answer_for_key(self, key: str, language: str) -> SpokenAnswer | None:
        return (await self._keyed(language)).get(key)

    async def answer_for_words(self, words: str, language: str) -> SpokenAnswer | None:
        """The best article for what the caller said, if it has a current answer in their
        language; None: a person answers."""
        for match in await search(self._sessions, words, limit=3, today=self._today()):
            text = match.article.answers.get(language)
            if text and not match.article.expired:
                return SpokenAnswer(match.article.id, match.article.title, text)
            return None  # the best match is not one to read: no guessing from the others
        return None
