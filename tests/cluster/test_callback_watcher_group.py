"""The callbacks watcher across a control takeover (hotline/roles/callback_watcher_member.py)
with a real redis-server and the test PostgreSQL, the recorders as a real group member
beside it: the first control's watcher handles a call's first events (acknowledged) and
stops; the caller hangs up in the queue while no control runs, and the old holder's
connection had already read one of those events without handling it (pending). A new
control's watcher, fresh, learns the call from the acknowledged events and handles the rest
from the first unacknowledged one: exactly one callback request, linked to the call's
consultation. A second call whose request the old holder wrote without acknowledging its
event gets no second request when the new one handles it again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from crm.callbacks import service
from crm.callbacks.watcher import MissedCallWatcher
from crm.consultations.recorder import ConsultationRecorder, recorder_journal
from crm.settings import CallbackSettings
from crm.storage.db import SessionFactory
from crm.storage.models import CallbackRequest, Consultation
from crm.telephony.events import (
    BusEvent,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallStarted,
    CallStep,
)
from crm.telephony.steps import LanguageChosen
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.redis_server import RedisServer
from hotline.bus.settings import BusSettings
from hotline.bus.stream_entries import redis_client
from hotline.roles.callback_watcher_member import CONSUMER, GROUP, CallbackWatcherMember
from hotline.roles.recorder_member import GROUP as RECORDERS
from hotline.roles.recorder_member import RecorderMember
from tests.cluster.test_redis_bus import eventually

WAIT = 20.0
SETTINGS = CallbackSettings(min_wait_s=10.0, calling_hours="00:00-24:00")
pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


def missed_call(call_id: str, number: str, start: datetime) -> list[BusEvent]:
    left = start + timedelta(seconds=25)
    return [CallStarted(call_id, number, None, at=start),
            CallStep(call_id, LanguageChosen("ko", "key"), at=start),
            CallerQueued(call_id, "hotline", 1, number, at=start),
            CallerAbandoned(call_id, "hotline", 1, 1, 25, at=left),
            CallEnded(call_id, "agent", "16", at=left)]


@contextlib.asynccontextmanager
async def recorders(sessions: SessionFactory, settings: BusSettings, client: Redis,
                    tmp_path: Path) -> AsyncIterator[None]:
    """The cluster's recorders: one member, in this process."""
    bus = RedisStreamBus(settings, journal_dir=None)
    journal = recorder_journal(tmp_path / "recorder")
    held: list[RecorderMember] = []
    recorder = ConsultationRecorder(sessions, journal=journal,
                                    on_written=lambda done: held[0].written(done))
    held.append(RecorderMember(client, bus, recorder, "recorder-1"))
    keeper = asyncio.create_task(held[0].run())
    recorder.start()
    await bus.start()
    worker = bus.consume(RECORDERS, "recorder-1", held[0].handle)
    try:
        yield
    finally:
        await bus.stop_consuming(worker)
        await recorder.close()
        keeper.cancel()
        await asyncio.wait([keeper])
        await bus.close(timeout=1.0)
        journal.close()


@contextlib.asynccontextmanager
async def control_watcher(sessions: SessionFactory, settings: BusSettings
                          ) -> AsyncIterator[CallbackWatcherMember]:
    """What ``--role control`` runs of the watcher (hotline/roles/split.py), on its own bus."""
    bus = RedisStreamBus(settings, journal_dir=None)
    client = redis_client(settings.redis_url)
    await bus.start()
    member = CallbackWatcherMember(client, bus)
    await member.open()
    async with contextlib.AsyncExitStack() as stack:
        watcher = MissedCallWatcher(sessions, bus, SETTINGS, settle=member.settle)
        stack.push_async_callback(watcher.close)
        await member.join(stack, watcher)
        try:
            yield member
        finally:
            await stack.aclose()
            await bus.close(timeout=1.0)
            await client.aclose()


async def requests_of(sessions: SessionFactory, number: str) -> list[CallbackRequest]:
    async with sessions() as session:
        return list((await session.scalars(select(CallbackRequest).where(
            CallbackRequest.caller_number == number))).all())


async def test_a_new_control_s_watcher_goes_on_from_the_last_acknowledged_event(
        sessions: SessionFactory, redis_server: RedisServer, tmp_path: Path) -> None:
    stream = f"test:{uuid.uuid4().hex[:8]}"
    settings = BusSettings(kind="redis", redis_url=redis_server.url, stream=stream,
                           claim_idle_s=0.5, read_block_s=0.2)
    client = redis_client(redis_server.url)
    publisher = RedisStreamBus(settings, journal_dir=None)
    await publisher.start()
    number, written_number = "13800138021", "13800138022"
    call, written = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC)
    events = missed_call(call, number, now)
    written_events = missed_call(written, written_number, now)
    async with recorders(sessions, settings, client, tmp_path):
        async with control_watcher(sessions, settings) as old:
            for event in events[:3]:
                await publisher.publish(event)

            async def first_handled() -> bool:
                return old.handled == 3
            await eventually(first_handled, "the first control handled the call's start")
        # The old holder is gone. While no control runs its last read comes back to the
        # group unacknowledged (it read the abandon, then died); the rest comes meanwhile.
        for event in [*events[3:], *written_events]:
            await publisher.publish(event)
        await publisher.flushed()
        taken = await client.xreadgroup(GROUP, CONSUMER, {stream: ">"}, count=1)
        assert len(taken[0][1]) == 1  # the abandon: read, never acknowledged
        # The second call's request was written by the old holder, its events never acked.
        more = await client.xreadgroup(GROUP, CONSUMER, {stream: ">"})
        assert len(more[0][1]) == 6
        await service.request_callback(sessions, number=written_number, reason="abandoned",
                                       call_id=written, waited_s=25.0)
        assert await requests_of(sessions, number) == []

        async with control_watcher(sessions, settings) as new:
            assert new.learnt == 3  # the call's start, from the acknowledged events

            async def all_acknowledged() -> bool:
                summary = await client.xpending(stream, GROUP)
                return new.handled >= 7 and not summary["pending"]
            await eventually(all_acknowledged, "the new control handled everything", WAIT)
    [request] = await requests_of(sessions, number)
    assert (request.reason, request.language, request.waited_s, request.note) == (
        "abandoned", "ko", 25.0, None)
    async with sessions() as session:
        linked = await session.scalar(select(Consultation.call_id).where(
            Consultation.id == request.consultation_id))
        total = await session.scalar(select(func.count()).select_from(CallbackRequest))
    assert linked == call
    [again] = await requests_of(sessions, written_number)
    assert again.note is None and total == 2
    await publisher.close(timeout=1.0)
    await client.aclose()


async def test_a_new_group_starts_at_the_stream_s_end(
        sessions: SessionFactory, redis_server: RedisServer) -> None:
    """The first control of an installation does not decide again on calls of the past
    (it learns them, for those still under way)."""
    stream = f"test:{uuid.uuid4().hex[:8]}"
    settings = BusSettings(kind="redis", redis_url=redis_server.url, stream=stream,
                           read_block_s=0.2)
    publisher = RedisStreamBus(settings, journal_dir=None)
    await publisher.start()
    for event in missed_call(str(uuid.uuid4()), "13800138023", datetime.now(UTC)):
        await publisher.publish(event)
    await publisher.flushed()
    async with control_watcher(sessions, settings) as member:
        assert member.learnt == 5

        client = redis_client(redis_server.url)

        async def reading() -> bool:
            consumers = await client.xinfo_consumers(stream, GROUP)
            return [c["name"] for c in consumers] == [CONSUMER.encode()]
        await eventually(reading, "the watcher reads the group")
        await client.aclose()
    assert await requests_of(sessions, "13800138023") == []
    await publisher.close(timeout=1.0)
