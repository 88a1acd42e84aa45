"""Nothing is lost when the database is down: events wait in the durable journal, are retried,
and a recorder started after a crash replays what was never written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crm.consultations.recorder import ConsultationRecorder, list_consultations
from crm.storage.db import make_engine, make_session_factory
from crm.storage.journal import EventJournal
from crm.telephony.events import CallEnded, CallStarted, CallStep
from crm.telephony.steps import KeysEntered
from hotline.tools.bed import free_tcp_port

T0 = datetime(2026, 11, 22, 9, tzinfo=UTC)
EVENTS = [CallStarted("c-down", "13800138000", "张三", "PJSIP/x", at=T0),
          CallStep("c-down", KeysEntered("1"), at=T0 + timedelta(seconds=2)),
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


class CountingDatabase:
    """Counts transactions; ``gate`` (a semaphore) holds each until a permit is released."""

    def __init__(self, sessions, gate: asyncio.Semaphore | None = None) -> None:
        self._sessions = sessions
        self.gate = gate
        self.at_gate = asyncio.Event()
        self.opened = 0

    def __call__(self):
        self.opened += 1
        return _Gated(self._sessions(), self)


class _Gated:
    def __init__(self, session, db: CountingDatabase) -> None:
        self._session, self._db = session, db

    async def __aenter__(self):
        if self._db.gate is not None:
            self._db.at_gate.set()
            await self._db.gate.acquire()
        return await self._session.__aenter__()

    async def __aexit__(self, *exc):
        return await self._session.__aexit__(*exc)


def _call(call_id: str) -> list:
    return [CallStarted(call_id, "13800138000", "张三", "PJSIP/x", at=T0),
            CallStep(call_id, KeysEntered("1"), at=T0 + timedelta(seconds=2)),
            CallEnded(call_id, "end", "16", at=T0 + timedelta(seconds=30))]


async def test_a_burst_of_events_is_written_in_a_few_transactions(sessions,
                                                                  tmp_path: Path) -> None:
    counting = CountingDatabase(sessions)
    journal = EventJournal(tmp_path)
    recorder = ConsultationRecorder(counting, journal=journal)
    recorder.start()
    for n in range(40):  # queued before the writer runs: a busy hotline's backlog
        for event in _call(f"burst-{n}"):
            await recorder.handle(event)
    await recorder.drain()
    await recorder.close()
    assert recorder.written == 120 and counting.opened <= 2
    found = await list_consultations(sessions, limit=100)
    assert sorted(c.call_id for c in found) == sorted(f"burst-{n}" for n in range(40))
    assert all(c.ended_at is not None and [s["kind"] for s in c.steps] == ["keys"]
               for c in found)
    assert journal.pending() == []


async def test_drain_waits_for_earlier_events_only(sessions, tmp_path: Path) -> None:
    gate = asyncio.Semaphore(0)
    db = CountingDatabase(sessions, gate)
    recorder = ConsultationRecorder(db)
    recorder.start()
    [started, *_] = _call("first")
    await recorder.handle(started)
    await db.at_gate.wait()  # the writer took it alone and waits at the gate
    settled = asyncio.create_task(recorder.drain())
    [later, *_] = _call("second")
    await recorder.handle(later)  # arrives while the first is being written
    gate.release()  # the first event's transaction only
    await asyncio.wait_for(settled, 10)
    assert [c.call_id for c in await list_consultations(sessions)] == ["first"]
    gate.release()
    await recorder.drain()
    await recorder.close()
    assert sorted(c.call_id for c in await list_consultations(sessions)) == ["first", "second"]
