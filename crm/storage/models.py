"""ORM models of the hotline's domain.

Timestamps are stored in UTC. Each table is small and named for what it is at the front desk.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Consultation(Base):
    """One call that reached the hotline, from answer to hang-up."""

    __tablename__ = "consultations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    caller_number: Mapped[str | None] = mapped_column(String(64), index=True)
    caller_name: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    duration_s: Mapped[float | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
    """How it ended: ivr_completed, to_agent, ivr_fallback, caller_hung_up, ..."""
    ivr_route: Mapped[str | None] = mapped_column(String(32))
    hangup_cause: Mapped[str | None] = mapped_column(String(32))
    """The Q.850 cause that ended the call, number and text: "16 Normal Clearing"."""
    hangup_party: Mapped[str | None] = mapped_column(String(16))
    """Who ended the call: caller, agent, ivr (the IVR's dialogue ended it) or system."""
    # Filled in at the agent desk:
    notes: Mapped[str | None] = mapped_column(String(4000))
    disposition: Mapped[str | None] = mapped_column(String(32))
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", name="fk_consultations_agent_id_agents"), index=True)
    resident_id: Mapped[int | None] = mapped_column(
        ForeignKey("residents.id", name="fk_consultations_resident_id_residents"), index=True)

    steps: Mapped[list[ConsultationStep]] = relationship(
        back_populates="consultation", order_by="ConsultationStep.id", cascade="all, delete-orphan"
    )
    agent: Mapped[Agent | None] = relationship()
    resident: Mapped[Resident | None] = relationship()
    cases: Mapped[list[Case]] = relationship(
        secondary="consultation_cases", order_by="Case.id", viewonly=True)


class ConsultationStep(Base):
    """One thing that happened during a call: a prompt, a key press, a transcript, ..."""

    __tablename__ = "consultation_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consultation_id: Mapped[int] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    consultation: Mapped[Consultation] = relationship(back_populates="steps")


class Department(Base):
    """A back-office department that handles cases; ``phone`` is where agents transfer to."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str | None] = mapped_column(String(128))
    name_ko: Mapped[str | None] = mapped_column(String(128))
    phone: Mapped[str | None] = mapped_column(String(32))


class CaseCategory(Base):
    __tablename__ = "case_categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    time_limit_days: Mapped[int]
    """The handling limit in days; with ``time_limit_hours`` those hours in whole days
    rounded up (for readers that know days only); 0 on a branch (no limit of its own)."""
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    # the tree (crm/categories/): level 1-3, branches have children, cases take leaves
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("case_categories.id"), index=True)
    level: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    time_limit_hours: Mapped[int | None]
    """The handling limit in hours (emergencies 2, utilities 24) instead of days."""


class Resident(Base):
    """A resident. The ID number is kept only as its last four digits plus a keyed hash, so
    it can be matched but never shown or leaked whole."""

    __tablename__ = "residents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    preferred_language: Mapped[str | None] = mapped_column(String(8))
    community: Mapped[str | None] = mapped_column(String(128))
    id_number_last4: Mapped[str | None] = mapped_column(String(4))
    id_number_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    phones: Mapped[list[ResidentPhone]] = relationship(
        back_populates="resident", cascade="all, delete-orphan")


class ResidentPhone(Base):
    __tablename__ = "resident_phones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(32), unique=True, index=True)

    resident: Mapped[Resident] = relationship(back_populates="phones")


class Case(Base):
    """A work order: one unique number that follows the matter through every department."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True, index=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("case_categories.id"))
    description: Mapped[str] = mapped_column(String(2000))
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(256))
    stage: Mapped[str] = mapped_column(String(16), default="accepted")
    deadline: Mapped[datetime] = mapped_column(UtcDateTime)
    latest_update: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    category: Mapped[CaseCategory] = relationship()
    department: Mapped[Department | None] = relationship()
    resident: Mapped[Resident | None] = relationship()
    history: Mapped[list[CaseHistory]] = relationship(
        back_populates="case", order_by="CaseHistory.id", cascade="all, delete-orphan")
    consultations: Mapped[list[Consultation]] = relationship(
        secondary="consultation_cases", order_by="Consultation.id", viewonly=True)


class CaseHistory(Base):
    """Every change to a case, with who made it and when."""

    __tablename__ = "case_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str | None] = mapped_column(String(16))
    from_department: Mapped[str | None] = mapped_column(String(32))
    """Department codes, when the change moved the case to another department."""
    to_department: Mapped[str | None] = mapped_column(String(32))
    latest_update: Mapped[str | None] = mapped_column(String(1000))
    """The progress message the IVR reads to the caller, when the change set one."""
    note: Mapped[str | None] = mapped_column(String(1000))

    case: Mapped[Case] = relationship(back_populates="history")


class LookupFailure(Base):
    """A failed case-number lookup or verification, for the IVR's anti-enumeration limit."""

    __tablename__ = "lookup_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class Agent(Base):
    """A person at the agent desk: their login, role, desk phone and the queues they answer.

    ``password_hash`` is argon2id (see crm.agents.auth); None means the account cannot log in
    yet."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    """agent, supervisor or admin"""
    extension: Mapped[str | None] = mapped_column(String(16), unique=True)
    queues: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["hotline"])
    languages: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["cmn"])
    """Language codes the agent speaks (cmn, en, ko): their calls are offered to them first."""
    locale: Mapped[str | None] = mapped_column(String(16))
    """The language of their desk and console pages (zh_CN, en); None: the hotline's
    default ([web] locale)."""
    password_hash: Mapped[str | None] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ConsultationCase(Base):
    """A case raised or discussed during a consultation (many cases per call, many calls per
    case)."""

    __tablename__ = "consultation_cases"

    consultation_id: Mapped[int] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), primary_key=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True, index=True)
    linked_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    linked_by: Mapped[str] = mapped_column(String(128))


class CaseNumberSequence(Base):
    """The last daily sequence handed out for case numbers of one day; the row lock on it
    serialises number allocation on PostgreSQL, the write lock does on SQLite."""

    __tablename__ = "case_number_sequences"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class AuditLog(Base):
    """Who looked at or changed residents' data, and when (reads through the API included)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    """token:<name>, agent:<login>, ..."""
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source_address: Mapped[str | None] = mapped_column(String(64))
    """The client's address as the web server saw it (None: the IVR, the CLI)."""
    web_session_id: Mapped[str | None] = mapped_column(String(64))
    """The public id of the desk or console session (WebSession.id) it happened in."""


class ApiToken(Base):
    """A bearer token for the open API. Only the SHA-256 of the token is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """None: the token lasts until revoked."""


class WebSession(Base):
    """A signed-in browser at the agent desk or the supervisor console. The cookie carries a
    random secret; only its SHA-256 is kept here. ``id`` is a separate random public name
    (what the audit log records), never enough to open the session."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    app: Mapped[str] = mapped_column(String(16))
    """desk or console"""
    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE", name="fk_web_sessions_agent_id_agents"),
        index=True)
    role: Mapped[str] = mapped_column(String(16))
    """The account's role when the session began: a session does not outlive a role change."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    """The absolute end, however active the session is."""
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    source_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))


class SignInFailure(Base):
    """Consecutive failed sign-ins of one account (``account:<login>``) or one source address
    (``address:<ip>``), shared by every web process on the database."""

    __tablename__ = "sign_in_failures"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class CallbackRequest(Base):
    """A missed caller to call back (crm.callbacks): one open request per number at a time.

    ``queued_at`` is when the caller first joined the queue: the callback keeps that place
    among the callers waiting when it is dialled (arrival order)."""

    __tablename__ = "callback_requests"
    __table_args__ = (
        # One request in flight per number, kept by the database itself: a second missed
        # call merges into the open one (crm.callbacks.service.request_callback).
        Index("uq_callback_requests_open_number", "caller_number", unique=True,
              sqlite_where=text("status IN ('pending', 'dialling')"),
              postgresql_where=text("status IN ('pending', 'dialling')")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    caller_number: Mapped[str] = mapped_column(String(64), index=True)
    language: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(32))
    """abandoned, chosen, closed, overload or no_answer"""
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    """pending, dialling, completed, failed, cancelled or closed_by_call_in (17 characters:
    the column is 20 wide, not the 16 first planned)"""
    outcome: Mapped[str | None] = mapped_column(String(16))
    """reached, no_answer, busy, wrong_number or declined (the last attempt's)"""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    waited_s: Mapped[float | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    consultation_id: Mapped[int | None] = mapped_column(
        ForeignKey("consultations.id", ondelete="SET NULL",
                   name="fk_callback_requests_consultation_id_consultations"), index=True)
    """The call that created the request."""
    last_consultation_id: Mapped[int | None] = mapped_column(
        ForeignKey("consultations.id", ondelete="SET NULL",
                   name="fk_callback_requests_last_consultation_id_consultations"))
    """The latest callback call (or the resident's own call that closed the request)."""
    assigned_agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL",
                   name="fk_callback_requests_assigned_agent_id_agents"), index=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(256))

    consultation: Mapped[Consultation | None] = relationship(foreign_keys=[consultation_id])
    last_consultation: Mapped[Consultation | None] = relationship(
        foreign_keys=[last_consultation_id])
    assigned_agent: Mapped[Agent | None] = relationship()
