"""Tables of the knowledge base, registered on the one metadata (crm.storage.models.Base).

The search index is a table of terms per article (``knowledge_terms``): the article's text
segmented into words once, when it is saved, so every process (web nodes and the core) ranks
from the same index on SQLite and PostgreSQL, neither of which has a Chinese parser here.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.storage.models import Base, UtcDateTime, utcnow


class KnowledgeArticle(Base):
    __tablename__ = "knowledge_articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category_code: Mapped[str | None] = mapped_column(String(32), index=True)
    """The case category (crm.storage.models.CaseCategory.code) it answers questions of."""
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    """The longer text the agent reads."""
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL",
                   name="fk_knowledge_articles_department_id_departments"), index=True)
    """The owner department: who keeps it true."""
    review_date: Mapped[date] = mapped_column(Date)
    """Past this day the article is flagged as expired until someone reviews it."""
    ivr_key: Mapped[str | None] = mapped_column(String(1))
    """The key that picks it in the IVR's service information (None: not offered by key)."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(64))

    answers: Mapped[list[KnowledgeAnswer]] = relationship(
        cascade="all, delete-orphan", order_by="KnowledgeAnswer.language")


class KnowledgeAnswer(Base):
    """The short spoken answer of an article in one language (read by the IVR)."""

    __tablename__ = "knowledge_answers"

    article_id: Mapped[int] = mapped_column(
        ForeignKey("knowledge_articles.id", ondelete="CASCADE"), primary_key=True)
    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    text: Mapped[str] = mapped_column(String(1000))


class KnowledgeTerm(Base):
    """One word of an article and how often it occurs there (its title counts double)."""

    __tablename__ = "knowledge_terms"
    __table_args__ = (Index("ix_knowledge_terms_term", "term"),)

    article_id: Mapped[int] = mapped_column(
        ForeignKey("knowledge_articles.id", ondelete="CASCADE"), primary_key=True)
    term: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class ConsultationArticle(Base):
    """"Answered from article N": an agent's mark on a consultation."""

    __tablename__ = "consultation_articles"

    consultation_id: Mapped[int] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), primary_key=True)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("knowledge_articles.id", ondelete="CASCADE"), primary_key=True, index=True)
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL",
                   name="fk_consultation_articles_agent_id_agents"))
    marked_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
