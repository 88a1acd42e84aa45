"""Who hung up and why, on SQLite and PostgreSQL: the recorder stores the party and the real
cause; migration 0008 adds the column to existing data and removes it again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import text

from crm.consultations.recorder import ConsultationRecorder, list_consultations
from crm.consultations.service import get_consultation
from crm.storage.db import SessionFactory
from crm.storage.migrate import alembic_config, upgrade
from crm.telephony.events import CallEnded, CallEventBus, CallStarted

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


async def _record(sessions: SessionFactory, *events: object) -> None:
    bus = CallEventBus()
    recorder = ConsultationRecorder(sessions)
    bus.subscribe(recorder.handle)
    recorder.start()
    try:
        for event in events:
            await bus.publish(event)  # type: ignore[arg-type]
        await recorder.drain()
    finally:
        await recorder.close()


async def test_the_party_and_the_cause_are_recorded(sessions: SessionFactory) -> None:
    await _record(
        sessions,
        CallStarted("c-1", "13800138000", None, "PJSIP/gw-1", at=T0),
        CallEnded("c-1", "fallback", "16 Normal Clearing", at=T0 + timedelta(seconds=30),
                  party="agent"),
        CallStarted("c-2", "13800138001", None, "PJSIP/gw-2", at=T0),
        CallEnded("c-2", None, "resynchronised", at=T0 + timedelta(seconds=5)),
    )
    views = {v.call_id: v for v in await list_consultations(sessions)}
    assert (views["c-1"].hangup_party, views["c-1"].hangup_cause) == ("agent",
                                                                      "16 Normal Clearing")
    assert (views["c-2"].hangup_party, views["c-2"].hangup_cause) == (None, "resynchronised")
    detail = await get_consultation(sessions, views["c-1"].id)
    data = detail.to_json(viewer_role="supervisor")
    assert (data["hangup_party"], data["hangup_cause"]) == ("agent", "16 Normal Clearing")


async def test_migration_0008_adds_and_removes_the_column(db_url: str,
                                                          sessions: SessionFactory) -> None:
    await _record(sessions, CallStarted("c-1", "13800138000", None, None, at=T0),
                  CallEnded("c-1", "end", "16 Normal Clearing", party="ivr"))
    config = alembic_config(db_url)
    await asyncio.to_thread(command.downgrade, config, "0007")
    async with sessions() as session:
        columns = await session.execute(text("SELECT * FROM consultations"))
        assert "hangup_party" not in columns.keys()
        assert len(columns.all()) == 1  # the call itself is kept
    await upgrade(db_url)
    [view] = await list_consultations(sessions)
    assert (view.call_id, view.hangup_party) == ("c-1", None)
