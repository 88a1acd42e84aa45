"""What ties a web process to the core over a real redis-server (hotline/roles/): how far
the recorders' group has written, which the web node's wallboard waits for, and the
callback actions taken on a web node, carried out by the core's scheduler."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from crm.callbacks import service
from crm.callbacks.dialing import CallbackScheduler
from crm.consultations.recorder import ConsultationRecorder, recorder_journal
from crm.demo_data import seed_demo
from crm.settings import CallbackSettings
from crm.storage.db import SessionFactory
from crm.storage.models import Consultation
from crm.telephony.events import BusEvent, CallEnded, CallEventBus, CallStarted, CallStep
from crm.telephony.steps import CallbackOutcome, KeysEntered
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.redis_server import RedisServer
from hotline.bus.settings import BusSettings
from hotline.bus.stream_entries import redis_client
from hotline.roles.callback_commands import RemoteCallbacks, commands_key, take_commands
from hotline.roles.recorded_mark import wait_recorded
from hotline.roles.recorder_member import GROUP, RecorderMember
from tests.storage.test_callbacks import RecordingDialer

WAIT = 10.0
"""Bound of every wait (these take milliseconds)."""


@contextlib.asynccontextmanager
async def started(bus: RedisStreamBus) -> AsyncIterator[RedisStreamBus]:
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


@contextlib.asynccontextmanager
async def running(work: asyncio.Future[None] | asyncio.Task[None]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work


class Received:
    def __init__(self) -> None:
        self.events: list[BusEvent] = []
        self.changed = asyncio.Event()

    async def handle(self, event: BusEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def bus_settings(redis_server: RedisServer) -> BusSettings:
    return BusSettings(kind="redis", redis_url=redis_server.url, read_block_s=0.5)


async def test_the_web_node_settles_once_the_core_recorder_wrote_what_it_read(
        sessions: SessionFactory, bus_settings: BusSettings, tmp_path: Path) -> None:
    core = RedisStreamBus(bus_settings, journal_dir=tmp_path / "core", journal_name="core")
    web = RedisStreamBus(bus_settings, journal_dir=tmp_path / "web", journal_name="web")
    client = redis_client(bus_settings.redis_url)
    journal = recorder_journal(tmp_path / "journal")
    members: list[RecorderMember] = []
    recorder = ConsultationRecorder(sessions, journal=journal,
                                    on_written=lambda done: members[0].written(done))
    member = RecorderMember(client, core, recorder, "core-1")
    members.append(member)
    seen = Received()
    web.subscribe(seen.handle)
    async with started(core), started(web):
        core.consume(GROUP, member.consumer, member.handle)
        events: list[BusEvent] = [
            CallStarted("c1", "13800138000", None), CallStep("c1", KeysEntered("1")),
            CallEnded("c1", "ivr_completed", "16 Normal Clearing")]
        for event in events:
            await core.publish(event)
        await seen.wait(len(events))
        # Journaled and acknowledged, not written (the recorder is not started): the web
        # node keeps waiting.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(wait_recorded(client, web), 0.5)
        assert member.delivered == len(events)
        recorder.start()
        async with running(asyncio.create_task(member.run())):
            await asyncio.wait_for(wait_recorded(client, web), WAIT)
            async with sessions() as s:
                [written] = (await s.scalars(select(Consultation))).all()
            assert written.call_id == "c1" and written.ended_at is not None
        await recorder.close()
    journal.close()
    await client.aclose()


async def test_callback_actions_on_a_web_node_reach_the_core_scheduler(
        sessions: SessionFactory, db_url: str, bus_settings: BusSettings,
        tmp_path: Path) -> None:
    await seed_demo(db_url)
    settings = CallbackSettings(calling_hours="00:00-24:00", max_concurrent=2)
    dialer = RecordingDialer()
    scheduler = CallbackScheduler(dialer, sessions, CallEventBus(), settings, queue="hotline")
    key = commands_key(bus_settings.stream)
    core_client, web_client = (redis_client(bus_settings.redis_url, read_block_s=0.5)
                               for _ in range(2))
    web_bus = RedisStreamBus(bus_settings, journal_dir=tmp_path / "web", journal_name="web")
    other = RedisStreamBus(bus_settings, journal_dir=None)
    seen = Received()
    other.subscribe(seen.handle)
    remote = RemoteCallbacks(web_client, key, sessions, web_bus, settings)
    cancelled = (await service.request_callback(sessions, number="13900000001",
                                                reason="abandoned")).request
    moved = (await service.request_callback(sessions, number="13900000002",
                                            reason="abandoned")).request
    async with started(web_bus), started(other), running(asyncio.create_task(
            take_commands(core_client, key, scheduler))):
        assert sorted(await scheduler.run_once()) == sorted([cancelled.id, moved.id])
        async with asyncio.timeout(WAIT):
            while len(dialer.jobs) < 2:
                dialer.placed.clear()
                await dialer.placed.wait()

        view = await remote.cancel(cancelled.id, actor="supervisor:supervisor1")
        assert view.status == "cancelled"  # at once, on the web node
        await scheduler.wait_finished(lambda v: v.id == cancelled.id, WAIT)
        assert dialer.withdrawn == [cancelled.id]
        assert (await service.get_callback(sessions, cancelled.id)).attempts == 0

        dialer.placed.clear()
        view = await remote.reassign(moved.id, "agent2", actor="supervisor:supervisor1")
        assert view.assigned_agent == "agent2"
        await scheduler.wait_finished(lambda v: v.id == moved.id, WAIT)
        assert dialer.withdrawn == [cancelled.id, moved.id]
        assert await scheduler.run_once() == [moved.id]  # due at once, for agent2
        await asyncio.wait_for(dialer.placed.wait(), WAIT)
        again = dialer.jobs[-1]
        assert again.request_id == moved.id and again.penalty == view.assigned_agent_id
        assert again.queue == scheduler.assigned_queue and again.attempt == 1

        # The agent's outcome: written on the web node, its step published on the stream.
        await remote.record_outcome(moved.id, "reached", actor="agent:agent2",
                                    call_id=again.call_id)
        await seen.wait(1)
        [step] = seen.events
        assert isinstance(step, CallStep) and isinstance(step.step, CallbackOutcome)
        assert (step.call_id, step.step.outcome) == (again.call_id, "reached")
    await scheduler.close()
    for client in (core_client, web_client):
        await client.aclose()
