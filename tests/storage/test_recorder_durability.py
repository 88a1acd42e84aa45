"""Nothing is lost when the database is down: events wait in the durable journal, are retried,
and a recorder started after a crash replays what was never written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from crm.call_events import CallEnded, CallStarted, CallStep
from crm.consultations import ConsultationRecorder, list_consultations
from crm.db import make_engine, make_session_factory
from crm.event_journal import EventJournal
from tests.integration.asterisk_fixtures import free_tcp_port

T0 = datetime(2026, 11, 22, 9, tzinfo=UTC)
EVENTS = [CallStarted("c-down", "13800138000", "张三", "PJSIP/x", at=T0),
          CallStep("c-down", "keys", {"keys": "1"}, at=T0 + timedelta(seconds=2)),
          CallEnded("c-down", "end", "16", at=T0 + timedelta(seconds=30))]


async def test_events_written_while_database_is_down_survive_a_restart(
        sessions, tmp_path: Path) -> None:
    dead = make_engine(f"postgresql+asyncpg://nobody:x@127.0.0.1:{free_tcp_port()}/none")
    journal = EventJournal(tmp_path)
    down = ConsultationRecorder(make_session_factory(dead), retry_delay=0.01, journal=journal)
    down.start()
    for event in EVENTS:
        await down.handle(event)
    await down.close(timeout=0.3)  # the process stops while the database is still down
    journal.close()
    await dead.dispose()
    assert down.written == 0

    journal = EventJournal(tmp_path)
    up = ConsultationRecorder(sessions, journal=journal)
    up.start()
    await up.drain()
    await up.close()
    [c] = await list_consultations(sessions)
    assert (c.call_id, c.caller_name, c.outcome, c.duration_s) == ("c-down", "张三",
                                                                   "ivr_completed", 30.0)
    assert [s["kind"] for s in c.steps] == ["keys"]
    assert journal.pending() == []


class FlakyDatabase:
    """Refuses the first ``failures`` sessions, like a database that comes back later."""

    def __init__(self, sessions, failures: int) -> None:
        self._sessions = sessions
        self.failures = failures

    def __call__(self):
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionRefusedError("database unavailable")
        return self._sessions()


async def test_writes_are_retried_until_the_database_is_back(sessions, tmp_path: Path) -> None:
    flaky = FlakyDatabase(sessions, failures=5)
    recorder = ConsultationRecorder(flaky, retry_delay=0.01, journal=EventJournal(tmp_path))
    recorder.start()
    for event in EVENTS:
        await recorder.handle(event)
    await recorder.drain()
    await recorder.close()
    assert flaky.failures == 0 and recorder.written == 3
    [c] = await list_consultations(sessions)
    assert c.ended_at is not None and c.steps
