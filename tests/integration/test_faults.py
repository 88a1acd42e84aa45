"""Faults against the real stack ("Prove it holds"): the AMI link cut mid-call, Asterisk
restarted with callers in the queue, the IVR/web process killed and started again, and the
database gone for a while. Each time every call ends with exactly one complete consultation
and no caller is dropped by our software."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm.agents.accounts import get_agent
from crm.consultations.recorder import ConsultationView, list_consultations
from crm.demo_data import seed_demo
from crm.storage.db import SessionFactory, make_engine, make_session_factory
from crm.storage.models import Consultation
from crm.telephony.events import CallEnded, CallerQueued, CallStarted, CallStep
from hotline.asterisk import down, up
from hotline.service import HotlineService, running_service
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone
from ivr.ami.client import AmiClient, AmiEvent
from tests.conftest import _postgres_url
from tests.integration.fault_tools import (
    HeldCaller,
    LogWatcher,
    ScratchPostgres,
    ServeProcess,
    asterisk_channels,
    cut_tcp,
    fault_settings,
    kill_asterisk,
    local_ports_to,
    no_bye_from_asterisk,
    wait_until,
)
from tests.integration.service_fixtures import CallWatcher, hang_up_leftover_calls

pytestmark = pytest.mark.asterisk

OUTAGE = 30.0
"""Seconds the database stays away in the outage test."""

ZHANG_SAN = "13800138000"
"""The demo resident 张三 (Mandarin): no language menu, 1 checks a case, 2 asks for an agent."""


@contextlib.asynccontextmanager
async def service(settings: Settings, bed: Settings) -> AsyncIterator[
        tuple[HotlineService, CallWatcher]]:
    await hang_up_leftover_calls(bed)
    async with running_service(settings) as hotline:
        watcher = CallWatcher()
        hotline.bus.subscribe(watcher.handle)
        await hotline.ami.wait_ready(10)
        yield hotline, watcher


def step(call_id: str, kind: str, **detail: object):
    def match(event: object) -> bool:
        return (isinstance(event, CallStep) and event.call_id == call_id
                and event.kind == kind
                and all(event.detail.get(k) == v for k, v in detail.items()))
    return match


def started_from(number: str):
    return lambda e: isinstance(e, CallStarted) and e.caller_number == number


def ended(call_id: str):
    return lambda e: isinstance(e, CallEnded) and e.call_id == call_id


async def consultations_of(sessions: SessionFactory, call_id: str) -> list[ConsultationView]:
    return [c for c in await list_consultations(sessions, limit=1000) if c.call_id == call_id]


async def test_ami_link_cut_mid_call(asterisk_bed: Settings, tmp_path: Path) -> None:
    """The service's AMI socket is destroyed while a caller is in the IVR, and the caller
    hangs up before the link is back: the HotlineCallEnd event is lost, so the consultation
    is closed by the resynchronisation after the re-login."""
    settings = fault_settings(asterisk_bed, tmp_path)
    # After a lost connection the client waits 2-4 s before reconnecting (default 0.25-0.5):
    # room for the caller to hang up while the link is down.
    settings.ami.reconnect_min = 4.0

    async def no_channels() -> bool:
        return await asterisk_channels(asterisk_bed) == 0

    async with service(settings, asterisk_bed) as (hotline, watcher):
        await seed_demo(settings.database_url)
        async with HeldCaller(settings, number=ZHANG_SAN, name="张三", keys="1") as caller:
            call_id = (await watcher.wait_for(started_from(ZHANG_SAN), 20)).call_id
            await watcher.wait_for(step(call_id, "keys", keys="1"), 20)
            await watcher.wait_for(step(call_id, "prompt", prompt="ask_case_number"), 20)

            [port] = local_ports_to(settings.ami.port)
            cut_tcp(port, settings.ami.port)
            await wait_until(lambda: hotline.ami.state != "logged_in", 5, "AMI link noticed down")

            hung_up_at = datetime.now(UTC)
            result = await caller.hang_up()
            assert no_bye_from_asterisk(result), result.events
            await wait_until(no_channels, 10, "Asterisk has no channel left")
            assert hotline.ami.state != "logged_in", "reconnected before the call ended"
            assert call_id in hotline.tracker.active_calls
            assert not any(ended(call_id)(e) for e in watcher.events)

            await hotline.ami.wait_ready(15)
            end = await watcher.wait_for(ended(call_id), 10)
        # How it ended comes from Asterisk's channel event record, not the re-login.
        assert isinstance(end, CallEnded) and end.cause == "16 Normal Clearing"
        assert end.party == "caller" and abs((end.at - hung_up_at).total_seconds()) < 1
        assert call_id not in hotline.tracker.active_calls
        await hotline.recorder.drain()
        [consultation] = await consultations_of(hotline.sessions, call_id)
        assert consultation.ended_at is not None and consultation.started_at is not None
        assert consultation.caller_name == "张三"
        kinds = [s["kind"] for s in consultation.steps]
        assert kinds.count("ivr_connected") == 1 and kinds.count("keys") == 1
        assert kinds.count("reconciled") == 1


async def test_a_call_answered_while_the_ami_link_is_down_pops_after_the_relogin(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    """The AMI link is cut; 张三 asks for an agent and agent1's phone answers while no AMI
    event reaches us. After the re-login the queue tracker finds the bridge in
    CoreShowChannels: agent1's desk pops the call as connected, and the consultation names
    the answer once."""
    settings = fault_settings(asterisk_bed, tmp_path)
    settings.ami.reconnect_min = settings.ami.reconnect_max = 600.0  # down until answered
    extension = settings.asterisk.agent_extensions[0]  # agent1's desk phone (demo data)
    async with service(settings, asterisk_bed) as (hotline, watcher):
        await seed_demo(settings.database_url)
        hub = hotline.desk_hub
        assert hub is not None
        desk = hub.sign_in(await get_agent(hotline.sessions, "agent1"))
        queue = settings.asterisk.queue_name
        bridged = asyncio.Event()
        observer = AmiClient(settings.ami, name="fault-observer")
        observer.subscribe("AgentConnect", lambda _: bridged.set())
        async with contextlib.AsyncExitStack() as cleanup:
            phone = await cleanup.enter_async_context(
                AgentPhone(settings, extension, ring_ms=200))
            added = await hotline.ami.action("QueueAdd", Queue=queue,
                                             Interface=f"PJSIP/{extension}", MemberName="agent1")
            assert added.get("Response") == "Success", added.headers
            [port] = local_ports_to(settings.ami.port)  # the service's link, the only one
            # The test's own AMI login sees the answer the service misses.
            cleanup.push_async_callback(observer.close)
            await observer.start()
            await observer.wait_ready(10)
            cut_tcp(port, settings.ami.port)
            await wait_until(lambda: hotline.ami.state != "logged_in", 5, "AMI link noticed down")
            # Without AMI the call is never announced, so the media socket refuses it as
            # unannounced and the dialplan queues 张三 for an agent (the keys are not needed).
            async with HeldCaller(settings, number=ZHANG_SAN, name="张三", keys="12") as caller:
                await phone.wait_answered(30)
                await asyncio.wait_for(bridged.wait(), 10)  # Asterisk bridged the call
                assert hotline.ami.state != "logged_in", "reconnected before the answer"
                assert desk.call is None

                hotline.ami.reconnect_now()  # the link is back
                await hotline.ami.wait_ready(30)
                await hub.wait_for(lambda: desk.call is not None
                                   and desk.call.phase == "connected", 10)
                assert desk.call is not None
                call_id = desk.call.call_id
                assert call_id in hotline.tracker.active_calls
                assert desk.call.pop.caller_name == "张三"
                result = await caller.hang_up()
            assert no_bye_from_asterisk(result), result.events
            await watcher.wait_for(ended(call_id), 15)
            await hub.wait_for(lambda: desk.call is not None and desk.call.phase == "ended", 10)
            await hotline.ami.action("QueueRemove", Queue=queue, Interface=f"PJSIP/{extension}")
        await hotline.recorder.drain()
        [consultation] = await consultations_of(hotline.sessions, call_id)
        answers = [s["detail"] for s in consultation.steps if s["kind"] == "agent_answered"]
        assert [(a["agent"], a.get("resynchronised")) for a in answers] == [(extension, True)]
        assert consultation.ended_at is not None and consultation.caller_name == "张三"


@pytest.mark.parametrize("how", ["stopped", "crashed"])
async def test_asterisk_restarted_with_callers_queued(asterisk_bed: Settings, tmp_path: Path,
                                                     how: str) -> None:
    """Asterisk goes away with two callers waiting in the queue and starts again: the service
    logs in again, the wallboard and the call tracker rebuild from Asterisk's state, and each
    killed call is closed exactly once.

    ``stopped`` (down, up): Asterisk hangs its calls up and runs their hang-up handlers before
    it goes, so their HotlineCallEnd usually still arrives. ``crashed`` (SIGKILL, then down
    and up): nothing is said, so only the resynchronisation after the re-login closes them."""
    settings = fault_settings(asterisk_bed, tmp_path)
    # Backoff capped at 2 s (default 30 s) so the re-login follows the restart quickly.
    settings.ami.reconnect_max = 2.0
    async with service(settings, asterisk_bed) as (hotline, watcher), \
            contextlib.AsyncExitStack() as stack:
        await seed_demo(settings.database_url)
        assert hotline.wallboard is not None
        wallboard = hotline.wallboard
        callers: dict[str, HeldCaller] = {}
        for number, name in ((ZHANG_SAN, "张三"), ("13900139000", "李秀英")):
            caller = await stack.enter_async_context(
                HeldCaller(settings, number=number, name=name, keys="#"))
            callers[(await watcher.wait_for(started_from(number), 20)).call_id] = caller
        for call_id in callers:
            await watcher.wait_for(
                lambda e, c=call_id: isinstance(e, CallerQueued) and e.call_id == c, 30)
        await wallboard.wait_for(lambda: wallboard.waiting_count == 2, 10)
        resyncs = wallboard.resyncs

        restarted = False
        try:
            if how == "crashed":
                kill_asterisk(asterisk_bed)
            await asyncio.to_thread(down, asterisk_bed)
            await wait_until(lambda: hotline.ami.state != "logged_in", 10, "AMI noticed down")
            await asyncio.to_thread(up, asterisk_bed, lambda message: None)
            restarted = True
        finally:
            if not restarted:  # later tests need the bed, with the same settings
                await asyncio.to_thread(up, asterisk_bed, lambda message: None)

        await hotline.ami.wait_ready(20)
        ends = {c: await watcher.wait_for(ended(c), 15) for c in callers}
        await wallboard.wait_for(lambda: wallboard.resyncs > resyncs, 10)
        await wallboard.wait_for(lambda: wallboard.waiting_count == 0, 10)
        assert not set(callers) & set(hotline.tracker.active_calls)
        if how == "crashed":
            assert {e.cause for e in ends.values() if isinstance(e, CallEnded)} == {
                "resynchronised"}
            for caller in callers.values():
                result = await caller.hang_up()
                assert no_bye_from_asterisk(result), result.events
        await hotline.recorder.drain()
        for call_id, end in ends.items():
            assert sum(map(ended(call_id), watcher.events)) == 1
            [consultation] = await consultations_of(hotline.sessions, call_id)
            assert consultation.ended_at is not None, consultation
            assert isinstance(end, CallEnded) and consultation.hangup_cause == end.cause
            assert [s["kind"] for s in consultation.steps].count("queued") == 1


async def test_ivr_process_killed_and_restarted(asterisk_bed: Settings, tmp_path: Path) -> None:
    """``hotline serve`` is SIGKILLed mid-call: the dialplan takes the caller to the queue,
    the caller hangs up while no service runs, and the next ``hotline serve`` (same state
    directory, same database) replays its journal and closes that call's consultation, once:
    nothing written twice."""
    settings = fault_settings(asterisk_bed, tmp_path)
    await hang_up_leftover_calls(asterisk_bed)
    observer = AmiClient(settings.ami, name="fault-observer")
    queued: asyncio.Queue[AmiEvent] = asyncio.Queue()
    call_ends: dict[str, AmiEvent] = {}
    observer.subscribe("QueueCallerJoin", queued.put_nowait)
    observer.subscribe("UserEvent", lambda e: call_ends.setdefault(e.get("CallId") or "", e)
                       if e.get("UserEvent") == "HotlineCallEnd" else None)
    await observer.start()
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    first = await ServeProcess.start(settings)
    second: ServeProcess | None = None

    async def steps_written() -> list[tuple[str, str]]:
        [consultation] = await list_consultations(sessions)
        return [(s["kind"], s["at"]) for s in consultation.steps]

    async def ivr_has_written() -> bool:
        with contextlib.suppress(ValueError):  # no consultation yet
            return len(await steps_written()) >= 2
        return False

    try:
        await first.wait_line("hotline service up", 60)
        await observer.wait_ready(10)
        async with HeldCaller(settings, number="13711112222", name="赵六") as caller:
            await first.wait_line("AudioSocket connected", 20)
            await wait_until(ivr_has_written, 10, "the IVR's first steps written")
            first.kill()
            await first.stop()
            before = await steps_written()
            joined = await asyncio.wait_for(queued.get(), 20)
            call_id = joined.chan_variables()["CALL_ID"]
            assert not caller.done, "the caller was dropped"
            result = await caller.hang_up()
        assert no_bye_from_asterisk(result), result.events
        await wait_until(lambda: call_id in call_ends, 10, "HotlineCallEnd from Asterisk")
        # As if the kill came between each database write and its acknowledgement in the
        # journal: the next start replays every event of the call, written or not.
        (settings.state_dir / "journal" / "call-events.ack").write_text("0")

        second = await ServeProcess.start(settings)
        await second.wait_line("hotline service up", 60)

        async def closed() -> bool:
            async with sessions() as session:
                return bool(await session.scalar(
                    select(func.count()).select_from(Consultation).where(
                        Consultation.call_id == call_id, Consultation.ended_at.is_not(None))))
        try:
            await second.wait_line("replaying", 5)
            await wait_until(closed, 20, f"consultation of {call_id} closed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; second service:\n{''.join(second.lines)}") from None
        [consultation] = await consultations_of(sessions, call_id)
        assert consultation.caller_name == "赵六" and consultation.started_at is not None
        # Closed from Asterisk's channel event record (tests/integration/test_crash_truth.py).
        assert consultation.hangup_cause == "16 Normal Clearing"
        assert consultation.hangup_party == "caller" and consultation.outcome == "abandoned"
        added = {"queued", "abandoned", "reconciled"}
        assert [s for s in await steps_written() if s[0] not in added] == before, \
            "a replayed step was written twice"
    finally:
        for proc in (first, second):
            if proc is not None:
                await proc.stop()
        await observer.close()
        await engine.dispose()


async def test_database_unavailable_during_a_call(asterisk_bed: Settings,
                                                 tmp_path: Path) -> None:
    """PostgreSQL refuses every connection for at least 30 s, from before a call starts
    until well after it ended: the IVR serves the caller, the recorder keeps the call's
    events in its journal and retries (1 s, 2 s, 3 s... apart); once the database is back
    every event is written, once.

    The outage ends at the first failed write attempt 30 s or more after it began: a
    measured length, waited for as an event."""
    base_url = _postgres_url()
    if base_url is None:
        pytest.skip("PostgreSQL not prepared: run scripts/postgres-test.sh (make test does)")
    scratch = ScratchPostgres(base_url)
    async with scratch.created():
        settings = fault_settings(asterisk_bed, tmp_path)
        settings.database.url = scratch.url
        async with service(settings, asterisk_bed) as (hotline, watcher):
            await seed_demo(scratch.url)
            await hotline.recorder.drain()
            written = hotline.recorder.written
            with LogWatcher("crm.consultations.recorder") as recorder_log:
                await scratch.make_unavailable()
                outage_began, wall_start = time.monotonic(), time.time()
                try:
                    # With the database down the IVR cannot recognize 张三, so it serves him
                    # as an unknown caller: '#' at the greeting (no case number), an agent.
                    async with HeldCaller(settings, number=ZHANG_SAN, name="张三",
                                          keys="#") as caller:
                        call_id = (await watcher.wait_for(started_from(ZHANG_SAN), 20)).call_id
                        await watcher.wait_for(
                            lambda e: isinstance(e, CallerQueued) and e.call_id == call_id, 30)
                        result = await caller.hang_up()
                    assert no_bye_from_asterisk(result), result.events
                    await watcher.wait_for(ended(call_id), 10)
                    await recorder_log.wait_for(
                        lambda r: (r.levelno == logging.ERROR and "failed (attempt" in
                                   r.getMessage() and r.created - wall_start >= OUTAGE),
                        OUTAGE + 20, f"a failed write {OUTAGE:.0f} s into the outage")
                    assert hotline.recorder.written == written
                finally:
                    await scratch.make_available()
                outage = time.monotonic() - outage_began
            assert outage >= OUTAGE, outage
            await asyncio.wait_for(hotline.recorder.drain(), 30)
            events = [e for e in watcher.events if e.call_id == call_id]
            assert hotline.recorder.written == written + len(events)
            [consultation] = await consultations_of(hotline.sessions, call_id)
            assert consultation.ended_at is not None and consultation.started_at is not None
            assert consultation.caller_name == "张三"
            assert consultation.outcome == "abandoned"
            # Every event but the start and the end is one step.
            assert len(consultation.steps) == len(events) - 2, (consultation.steps, events)
