"""ORM models of the hotline's domain.

Timestamps are stored in UTC. Each table is small and named for what it is at the front desk.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, TypeDecorator
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

    steps: Mapped[list[ConsultationStep]] = relationship(
        back_populates="consultation", order_by="ConsultationStep.id", cascade="all, delete-orphan"
    )


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
