"""ORM models of satisfaction surveys, their follow-up items and return visits.

A survey is offered after an agent call (``after_call``) or on a return-visit call to a
resident whose case was resolved (``return_visit``). Timestamps are UTC.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.storage.models import Agent, Base, Case, Consultation, Department, UtcDateTime, utcnow

SURVEY_KINDS = ("after_call", "return_visit")
SURVEY_OUTCOMES = ("in_progress", "rated", "no_answer")
"""in_progress: the survey is running; rated: a score was given; no_answer: the caller hung
up (or gave no usable rating) before scoring."""
FOLLOW_UP_STATUSES = ("open", "closed")
RETURN_VISIT_STATUSES = ("pending", "calling", "answered", "completed", "failed")
"""pending: waiting for its next attempt; calling: an attempt is ringing; answered: the
resident picked up and the survey runs; completed: rated; failed: out of attempts."""
ATTEMPT_OUTCOMES = ("answered", "no_answer", "busy", "failed", "no_rating", "lost")


class SurveyResult(Base):
    """One survey offered to one person on one call, and what they said."""

    __tablename__ = "survey_results"
    # The fatigue check: surveys of one phone, newest first.
    __table_args__ = (Index("ix_survey_results_phone_started", "phone", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    survey_call_id: Mapped[str] = mapped_column(String(64), unique=True)
    """The AudioSocket id of the survey leg."""
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    """The hotline call surveyed (after_call): the consultation's call id."""
    phone: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(String(16), default="in_progress")
    score: Mapped[int | None] = mapped_column(Integer)
    rated_by: Mapped[str | None] = mapped_column(String(8))
    """keys or speech"""
    comment_path: Mapped[str | None] = mapped_column(String(512))
    comment_seconds: Mapped[float | None]
    comment_text: Mapped[str | None] = mapped_column(String(4000))
    consultation_id: Mapped[int | None] = mapped_column(
        ForeignKey("consultations.id", ondelete="SET NULL"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    agent_interface: Mapped[str | None] = mapped_column(String(128))
    """The queue member that talked to the caller (e.g. PJSIP/2001), from the dialplan."""
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
    return_visit_id: Mapped[int | None] = mapped_column(
        ForeignKey("return_visits.id", ondelete="SET NULL"), index=True)

    consultation: Mapped[Consultation | None] = relationship()
    agent: Mapped[Agent | None] = relationship()
    department: Mapped[Department | None] = relationship()
    cases: Mapped[list[Case]] = relationship(
        secondary="survey_result_cases", order_by="Case.id", viewonly=True)
    follow_up: Mapped[SurveyFollowUp | None] = relationship(back_populates="survey")


class SurveyResultCase(Base):
    """A case the surveyed call was about (linked at the consultation, or the visited case)."""

    __tablename__ = "survey_result_cases"

    survey_id: Mapped[int] = mapped_column(
        ForeignKey("survey_results.id", ondelete="CASCADE"), primary_key=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True, index=True)


class SurveyFollowUp(Base):
    """A low score (<= 2) someone must look into: assignable, closed with a note."""

    __tablename__ = "survey_follow_ups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    survey_id: Mapped[int] = mapped_column(
        ForeignKey("survey_results.id", ondelete="CASCADE"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    assigned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    assigned_by: Mapped[str | None] = mapped_column(String(128))
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(String(2000))

    survey: Mapped[SurveyResult] = relationship(back_populates="follow_up")
    assignee: Mapped[Agent | None] = relationship()


class ReturnVisit(Base):
    """An outbound survey call to the resident of a resolved case, with its attempts."""

    __tablename__ = "return_visits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    phone: Mapped[str] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_outcome: Mapped[str | None] = mapped_column(String(16))
    survey_call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    """The survey call id of the current (or last) attempt."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    case: Mapped[Case] = relationship()
    attempt_log: Mapped[list[ReturnVisitAttempt]] = relationship(
        back_populates="visit", order_by="ReturnVisitAttempt.id", cascade="all, delete-orphan")


class ReturnVisitAttempt(Base):
    """One call placed for a return visit and how it ended."""

    __tablename__ = "return_visit_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    return_visit_id: Mapped[int] = mapped_column(
        ForeignKey("return_visits.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    survey_call_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(256))

    visit: Mapped[ReturnVisit] = relationship(back_populates="attempt_log")
