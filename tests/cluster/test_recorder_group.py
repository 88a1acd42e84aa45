"""The consultation recorder as competing consumers across a cluster (hotline/roles/
recorder_member.py) with a real redis-server and the test PostgreSQL: two members share the
stream; one is killed (-9) holding events it read and did not acknowledge, one of them
already written; the other takes them over. Every call ends with one complete
consultation, no step twice; a second delivery of an event is written once; one call's
events written out of order give the same record."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from crm.consultations.recorded_events import RecordedEvent
from crm.consultations.recorder import ConsultationRecorder, recorder_journal
from crm.storage.db import SessionFactory
from crm.storage.models import Consultation, ConsultationStep
from crm.telephony.events import CallEnded, CallerAbandoned, CallStarted, CallStep
from crm.telephony.steps import KeysEntered
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.redis_server import RedisServer
from hotline.bus.settings import BusSettings
from hotline.bus.stream_entries import redis_client
from hotline.roles.recorded_mark import recorded_up_to
from hotline.roles.recorder_member import GROUP, RecorderMember, unwritten_key
from tests.cluster.test_redis_bus import calls, eventually

WAIT = 20.0
CALLS = 30
PER_CALL = 4
pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


@contextlib.asynccontextmanager
async def member_process(redis: RedisServer, stream: str, db_url: str, journal: Path,
                         name: str, die_at: int) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.cluster.recorder_member_process", redis.url, stream,
        db_url, str(journal), name, str(die_at), stdout=asyncio.subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def line_with(proc: asyncio.subprocess.Process, prefix: str) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(WAIT):
        while True:
            line = (await proc.stdout.readline()).decode()
            assert line, f"the member exited before {prefix!r}"
            if line.startswith(prefix):
                return line.split()[-1]


async def group_members(client: Redis, stream: str) -> set[str]:
    try:
        consumers = await client.xinfo_consumers(stream, GROUP)
    except Exception:  # the group is not there yet
        return set()
    return {c["name"].decode() for c in consumers}


async def test_a_killed_member_s_events_are_taken_over_and_each_written_once(
        sessions: SessionFactory, db_url: str, redis_server: RedisServer,
        tmp_path: Path) -> None:
    stream = f"test:{uuid.uuid4().hex[:8]}"
    settings = BusSettings(kind="redis", redis_url=redis_server.url, stream=stream,
                           claim_idle_s=0.5, read_block_s=0.2)
    client = redis_client(redis_server.url)
    publisher = RedisStreamBus(settings, journal_dir=tmp_path / "publisher")
    member_bus = RedisStreamBus(settings, journal_dir=None)
    journal = recorder_journal(tmp_path / "journal-b")
    survivor: list[RecorderMember] = []
    recorder = ConsultationRecorder(sessions, journal=journal,
                                    on_written=lambda done: survivor[0].written(done))
    survivor.append(RecorderMember(client, member_bus, recorder, "member-b"))
    b = survivor[0]
    keeper = asyncio.create_task(b.run())
    started = time.monotonic()
    async with member_process(redis_server, stream, db_url, tmp_path / "journal-a",
                              "member-a", die_at=12) as member_a:
        await line_with(member_a, "MEMBER UP")
        recorder.start()
        await member_bus.start()
        await publisher.start()
        worker = member_bus.consume(GROUP, "member-b", b.handle)
        await eventually(lambda: _has(client, stream, {"member-a", "member-b"}),
                         "both members joined the group")
        events = calls(CALLS, PER_CALL)
        for event in events:
            await publisher.publish(event)
            await asyncio.sleep(0)  # let the sender add them one by one, as calls do
        unacked = await line_with(member_a, "WRITTEN-UNACKED")
        os.kill(member_a.pid, signal.SIGKILL)  # no acknowledgement, no goodbye
        await member_a.wait()

        async def all_written() -> bool:
            async with sessions() as s:
                return await s.scalar(select(func.count()).select_from(RecordedEvent)) \
                    == len(events)
        await eventually(all_written, "every event written", WAIT)
        last = (await client.xrevrange(stream, count=1))[0][0].decode()
        await eventually(lambda: recorded_up_to(client, stream, last),
                         "the group shows everything written")
    elapsed = time.monotonic() - started
    assert worker.reclaimed >= 1, "member b took nothing over"
    assert recorder.duplicates >= 1, f"{unacked} (written by a) was not delivered again to b"
    assert not await client.xpending_range(stream, GROUP, min="-", max="+", count=10)
    assert await client.zcard(unwritten_key(stream)) == 0
    async with sessions() as s:
        rows = (await s.scalars(select(Consultation).options(
            selectinload(Consultation.steps)).order_by(Consultation.call_id))).all()
        steps = await s.scalar(select(func.count()).select_from(ConsultationStep))
    assert [c.call_id for c in rows] == sorted(f"call-{i}" for i in range(CALLS))
    for c in rows:
        assert c.caller_number == "13800000000" and c.started_at and c.ended_at, c.call_id
        assert c.outcome == "to_agent" and c.duration_s is not None, c.call_id
        assert kinds_in_time(c) == ["keys", "prompt"], c.call_id
    assert steps == CALLS * (PER_CALL - 2)
    print(f"\n{len(events)} events, member b took over {worker.reclaimed}, skipped "
          f"{recorder.duplicates} written by a; {elapsed:.1f} s")
    await publisher.close(timeout=1.0)
    await member_bus.stop_consuming(worker)
    await recorder.close()
    keeper.cancel()
    await member_bus.close(timeout=1.0)
    journal.close()
    await client.aclose()


def kinds_in_time(c: Consultation) -> list[str]:
    """Steps as they happened (stored in the order written: after a takeover, a member may
    write an early step after a later one)."""
    return [s.kind for s in sorted(c.steps, key=lambda s: (s.at, s.id))]


async def _has(client: Redis, stream: str, names: set[str]) -> bool:
    return names <= await group_members(client, stream)


async def test_a_second_delivery_is_written_once_and_order_does_not_matter(
        sessions: SessionFactory, tmp_path: Path) -> None:
    """Two members' recorders each get events of one call, out of order, and the same
    event twice (redelivered after a reclaim)."""
    t0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    started = CallStarted("c1", "13800138000", "张三", at=t0)
    step = CallStep("c1", KeysEntered("1"), at=t0 + timedelta(seconds=5))
    abandoned = CallerAbandoned("c1", "hotline", position=1, hold_time_s=40,
                                at=t0 + timedelta(seconds=50))
    ended = CallEnded("c1", "agent", "16 Normal Clearing", party="caller",
                      at=t0 + timedelta(seconds=51))
    one, two = (ConsultationRecorder(sessions, journal=recorder_journal(tmp_path / n))
                for n in ("one", "two"))
    for recorder in (one, two):
        recorder.start()
    two.handle_keyed(ended, "p-4", "4-0")
    two.handle_keyed(step, "p-2", "2-0")
    await two.drain()
    one.handle_keyed(step, "p-2", "2-0")  # the second delivery of step
    one.handle_keyed(abandoned, "p-3", "3-0")
    two.handle_keyed(started, "p-1", "1-0")
    one.handle_keyed(started, "p-1", "1-0")  # at the same time on both
    await asyncio.gather(one.drain(), two.drain())
    async with sessions() as s:
        [c] = (await s.scalars(select(Consultation).options(
            selectinload(Consultation.steps)))).all()
        ids = (await s.scalars(select(RecordedEvent.event_id))).all()
    assert sorted(ids) == ["p-1", "p-2", "p-3", "p-4"]
    assert one.duplicates + two.duplicates == 2
    assert (c.caller_number, c.started_at, c.ended_at) == ("13800138000", t0, ended.at)
    assert c.duration_s == 51.0 and c.outcome == "abandoned"
    assert kinds_in_time(c) == ["keys", "abandoned"]
    for recorder in (one, two):
        await recorder.close()
