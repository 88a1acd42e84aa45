"""ORM models of dispatch and supervision (派单、督办): a department's requests that a
supervisor rules on (returns, extensions), residents' urges (催办), reminders to departments,
and which department an API token or a console account acts for. Timestamps are UTC."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.storage.models import Base, Case, Department, UtcDateTime, utcnow

REQUEST_KINDS = ("return", "extension")
REQUEST_STATUSES = ("pending", "granted", "refused")
"""return granted: re-dispatched elsewhere; refused: the dispatch is upheld. extension
granted: the deadline moved to ``requested_deadline``."""
REMINDER_KINDS = ("due_soon", "overdue")


class DispatchRequest(Base):
    """A department's return (with its reason) or extension request, and the ruling."""

    __tablename__ = "dispatch_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(1000))
    requested_deadline: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decision_note: Mapped[str | None] = mapped_column(String(1000))

    case: Mapped[Case] = relationship()
    department: Mapped[Department] = relationship()


class CaseUrge(Base):
    """A resident asked for their case to be hurried (催办)."""

    __tablename__ = "case_urges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    channel: Mapped[str] = mapped_column(String(16))
    """ivr_keys, ivr_speech, desk, api."""
    consultation_id: Mapped[int | None] = mapped_column(
        ForeignKey("consultations.id", ondelete="SET NULL"))


class CaseReminder(Base):
    """A reminder to a case's department that it is due soon or overdue (on the API's feed
    and marked in the console)."""

    __tablename__ = "case_reminders"
    __table_args__ = (UniqueConstraint("case_id", "kind", "deadline",
                                       name="uq_case_reminders_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    deadline: Mapped[datetime] = mapped_column(UtcDateTime)
    """The deadline it reminds of (a moved deadline earns a new reminder)."""
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class TokenDepartment(Base):
    """An API token that acts for one department: it sees and changes only its cases."""

    __tablename__ = "api_token_departments"

    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"),
                                          primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))


class AgentDepartment(Base):
    """A console account that acts for one department."""

    __tablename__ = "agent_departments"

    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"),
                                          primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
