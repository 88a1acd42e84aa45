"""Which bus events the consultation recorder has written, by the publisher's event id: the
key that makes its writes idempotent when several processes record the one stream of a
cluster (a consumer group delivers an event at least once; a second delivery after a member
died, or was slow, before its acknowledgement must not add a step twice).

The id is claimed in the transaction that writes the event: a copy of it finds the id taken
and is skipped, whichever member it reaches. Ids are kept ``KEEP`` (a redelivery comes within
seconds, a member's journal replay after its restart within hours) and pruned by the recorder
at most once per ``PRUNE_EVERY``."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Insert, String, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from crm.storage.models import Base, UtcDateTime, utcnow

KEEP = timedelta(days=2)
PRUNE_EVERY = timedelta(hours=1)


class RecordedEvent(Base):
    """One bus event written into its consultation."""

    __tablename__ = "recorded_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


def insert_ignoring_duplicates(session: AsyncSession,
                               table: type[Base]) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` on either backend."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing()


async def claim(session: AsyncSession, event_id: str) -> bool:
    """Claim the event for this transaction: False when it was written before (skip it)."""
    result = await session.execute(
        insert_ignoring_duplicates(session, RecordedEvent).values(event_id=event_id,
                                                                   recorded_at=utcnow()))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def prune(session: AsyncSession, now: datetime) -> int:
    """Forget the ids of events written longer than ``KEEP`` ago."""
    result = await session.execute(delete(RecordedEvent).where(
        RecordedEvent.recorded_at < now - KEEP))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
