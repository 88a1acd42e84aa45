"""Issue 16, cluster fault tests under a steady call load (one module-scoped bed: Kamailio,
two media nodes, the queue node and its standby, control's AMI link per node, the
consultation recorder and the callbacks watcher on PostgreSQL).

A media node's Asterisk killed (-9) with callers on it: new callers go to the other node;
control sees the dead node's AMI link go and stay down and ends its calls as ``lost``
(hotline.roles.node_loss); each of their callers gets a callback request, except a
withheld number; afterwards every call has exactly one complete consultation and nothing
is left half-written (no open consultation, nothing pending in the recorder's journal).
Every wait is for a condition, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm.callbacks.watcher import MissedCallWatcher
from crm.consultations.recorder import ConsultationRecorder
from crm.storage.db import SessionFactory, make_engine, make_session_factory
from crm.storage.journal import EventJournal
from crm.storage.migrate import upgrade
from crm.storage.models import CallbackRequest, Consultation, ConsultationStep
from crm.telephony.events import (
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallEventBus,
    CallStarted,
)
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.redis_server import RedisServer
from hotline.bus.settings import BusSettings
from hotline.bus.stream_entries import redis_client
from hotline.edge import nodes
from hotline.roles.node_links import NodeLink, start_node_links
from hotline.roles.node_loss import LOST_ROUTE, lost_cause
from hotline.roles.recorder_member import start_recorder_member
from hotline.settings import Settings
from hotline.tools.sipp import CallResult, place_call
from tests.cluster.edge_bed import at_edge, counts, wait_for
from tests.cluster.private_postgres import PrivatePostgres, private_postgres
from tests.cluster.queue_bed import (
    LINK_S,
    QUEUE,
    ivr_that_ends_at_once,
    running_queue_cluster,
)

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]

DEAD, ALIVE = "media-a", "media-b"
HOLD_S = 9.0
"""How long each caller waits in the queue (no agent signed in) before hanging up."""
WITHHELD = "anonymous"


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with running_queue_cluster(tmp_path_factory) as settings:
        yield settings


@dataclass
class Control:
    links: dict[str, NodeLink]
    recorder: ConsultationRecorder
    journal: EventJournal
    watcher: MissedCallWatcher
    events: list[object] = field(default_factory=list)

    def started(self) -> set[str]:
        return {e.call_id for e in self.events if isinstance(e, CallStarted)}

    def queued(self) -> set[str]:
        return {e.call_id for e in self.events if isinstance(e, CallerQueued)}


@contextlib.asynccontextmanager
async def running_control(settings: Settings, sessions: SessionFactory,
                          journal_dir: Path) -> AsyncIterator[Control]:
    """Control as the core runs it: the links, the recorder, the callbacks watcher."""
    async with contextlib.AsyncExitStack() as stack:
        bus = CallEventBus()
        journal = EventJournal(journal_dir)
        stack.callback(journal.close)
        recorder = ConsultationRecorder(sessions, journal=journal)
        bus.subscribe(recorder.handle)
        recorder.start()
        stack.push_async_callback(recorder.close)
        watcher = MissedCallWatcher(sessions, bus, settings.callbacks, settle=recorder.drain)
        bus.subscribe(watcher.handle)
        stack.push_async_callback(watcher.close)
        running = Control({}, recorder, journal, watcher)

        async def keep(event: object) -> None:
            running.events.append(event)

        bus.subscribe(keep)
        await stack.enter_async_context(ivr_that_ends_at_once(settings))
        links = await start_node_links(stack, settings, bus)
        running.links.update({link.name: link for link in links})
        for link in links:
            await link.ami.wait_ready(LINK_S)
        yield running


@pytest.fixture
async def control(fault_cluster: Settings, pg_sessions: SessionFactory,
                  tmp_path: Path) -> AsyncIterator[Control]:
    async with running_control(fault_cluster, pg_sessions, tmp_path / "journal") as running:
        yield running


def caller(settings: Settings, number: str, hold_s: float = HOLD_S) -> asyncio.Task[CallResult]:
    """A caller who waits in the queue ``hold_s`` and hangs up (SIPp is killed a little
    after, when its BYE goes to a dead node and is never answered)."""
    return asyncio.create_task(place_call(
        at_edge(settings), caller_number=number, hold_ms=int(hold_s * 1000),
        answer_timeout_ms=8000, max_seconds=hold_s + 12))


async def complete(sessions: SessionFactory, call_ids: set[str], within: float) -> float:
    """Seconds until every call has exactly one consultation with a start and an end."""
    async def written() -> bool:
        async with sessions() as session:
            rows = (await session.execute(
                select(Consultation.call_id, func.count(), func.count(Consultation.ended_at),
                       func.count(Consultation.started_at))
                .group_by(Consultation.call_id))).all()
        return {r[0] for r in rows} == call_ids and all(r[1:] == (1, 1, 1) for r in rows)

    started = time.monotonic()
    while not await written():
        assert time.monotonic() - started < within, "consultations not all complete"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def test_redis_restarted_under_load_loses_no_event(
        fault_cluster: Settings, pg_sessions: SessionFactory, redis_server: RedisServer,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Control publishes on the Redis bus, the recorder is a member of the group; Redis is
    stopped while calls go on and new ones start, then started again: the events produced
    meanwhile wait in control's journal and every consultation completes."""
    settings = fault_cluster.model_copy(update={
        "state_dir": tmp_path / "state",
        "bus": BusSettings(kind="redis", redis_url=redis_server.url,
                           stream=f"faults:{os.getpid()}", claim_idle_s=1.0,
                           read_block_s=0.2)})
    started = time.monotonic()
    seen: set[str] = set()
    tasks: list[asyncio.Task[CallResult]] = []
    async with contextlib.AsyncExitStack() as stack:
        bus = RedisStreamBus(settings.bus, journal_dir=tmp_path / "bus-journal")
        await bus.start()
        stack.push_async_callback(bus.close, 2.0)
        client = redis_client(redis_server.url, read_block_s=0.2)
        stack.push_async_callback(client.aclose)
        await start_recorder_member(stack, settings, pg_sessions, bus, client, role="core")
        await stack.enter_async_context(ivr_that_ends_at_once(settings))
        links = await start_node_links(stack, settings, bus)
        for link in links:
            await link.ami.wait_ready(LINK_S)

        def live(count: int) -> bool:  # the calls control's trackers have seen so far
            for link in links:
                if link.calls is not None:
                    seen.update(link.calls.active_calls)
            return len(seen) >= count

        try:
            tasks += [caller(settings, f"1396000000{i}", hold_s=6) for i in range(3)]
            await wait_for(lambda: live(3), 15, "three callers in")
            await asyncio.to_thread(redis_server.stop)
            tasks += [caller(settings, f"1396000001{i}", hold_s=4) for i in range(2)]
            await wait_for(lambda: live(5), 15, "two callers in while Redis is down")
            await asyncio.to_thread(redis_server.start)
            results = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        assert all(r.answered for r in results), [r.stderr for r in results]
        after = await complete(pg_sessions, seen, 20)
    with capsys.disabled():
        print(f"\nRedis stopped with 3 calls on and 2 starting, started again: "
              f"{len(seen)} consultations complete {after:.1f} s after the last caller left; "
              f"{time.monotonic() - started:.1f} s in all")


@pytest.fixture
async def own_postgres() -> AsyncIterator[tuple[PrivatePostgres, SessionFactory]]:
    """A PostgreSQL of this test's own (the shared test server is never restarted)."""
    servers = private_postgres()
    server = next(servers)
    engine = make_engine(server.url)
    try:
        await upgrade(server.url)
        yield server, make_session_factory(engine)
    finally:
        await engine.dispose()
        servers.close()


async def test_postgresql_restarted_under_load_loses_no_write(
        fault_cluster: Settings, own_postgres: tuple[PrivatePostgres, SessionFactory],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL stopped while calls go on and new ones start, then started again: the
    recorder's writes wait in its journal and land; every consultation completes."""
    server, sessions = own_postgres
    started = time.monotonic()
    tasks: list[asyncio.Task[CallResult]] = []
    async with running_control(fault_cluster, sessions, tmp_path / "journal") as control:
        try:
            tasks += [caller(fault_cluster, f"1397000000{i}", hold_s=6) for i in range(3)]
            await wait_for(lambda: len(control.started()) >= 3, 15, "three callers in")
            await asyncio.to_thread(server.stop)
            tasks += [caller(fault_cluster, f"1397000001{i}", hold_s=4) for i in range(2)]
            await wait_for(lambda: len(control.started()) >= 5, 15,
                           "two callers in while PostgreSQL is down")
            await wait_for(lambda: any(isinstance(e, CallEnded) for e in control.events), 15,
                           "a call ended while PostgreSQL is down")
            await asyncio.to_thread(server.start)
            results = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        assert all(r.answered for r in results), [r.stderr for r in results]
        after = await complete(sessions, control.started(), 30)
        await control.recorder.drain()
        assert control.journal.pending() == []
    with capsys.disabled():
        print(f"\nPostgreSQL stopped with 3 calls on and 2 starting, started again: 5 "
              f"consultations complete {after:.1f} s after the last caller left; "
              f"{time.monotonic() - started:.1f} s in all")


async def test_a_media_node_killed_under_load_loses_no_call_record(
        fault_cluster: Settings, control: Control, pg_sessions: SessionFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    # Six callers, one at a time so the edge's round robin alternates: each node gets a
    # withheld number among its three.
    numbers = ["13950000001", "13950000002", WITHHELD, WITHHELD, "13950000005",
               "13950000006"]
    tasks: list[asyncio.Task[CallResult]] = []
    try:
        for n, number in enumerate(numbers, start=1):
            tasks.append(caller(fault_cluster, number))
            await wait_for(lambda n=n: len(control.queued()) >= n, 15, f"caller {n} queued")
        on_dead = dict(control.links[DEAD].calls.active_calls)  # type: ignore[union-attr]
        assert len(on_dead) == 3, on_dead
        before = counts(fault_cluster, [ALIVE])[ALIVE]
        pid = nodes.pid(fault_cluster, DEAD)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        # The load goes on: two new callers right after the kill.
        queued_before = len(control.queued())
        tasks += [caller(fault_cluster, "13950000007"), caller(fault_cluster, "13950000008")]

        def lost() -> set[str]:
            return {e.call_id for e in control.events
                    if isinstance(e, CallEnded) and e.route == LOST_ROUTE}

        lost_after = await wait_for(lambda: lost() == set(on_dead), 20,
                                    f"the calls on {DEAD} ended as lost")
        await wait_for(lambda: len(control.queued()) >= queued_before + 2, 20,
                       f"two new callers queued through {ALIVE}")
        new_after = time.monotonic() - killed
        # Their legs on the queue node go too (no agent is rung for a caller who is gone).
        await wait_for(
            lambda: set(on_dead) <= {e.call_id for e in control.events
                                     if isinstance(e, CallerAbandoned)}, 15,
            f"the dead node's callers gone from {QUEUE}")
        left_queue_after = time.monotonic() - killed
        results = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    assert counts(fault_cluster, [ALIVE])[ALIVE] - before == 2
    assert all(r.answered for r in results), [r.stderr for r in results]

    call_ids = control.started()
    assert len(call_ids) == 8 and set(on_dead) <= call_ids
    # The callers' SIPp has ended; the living node's hang-ups may still be on their way to
    # control (its AMI link): wait for every call's end before draining the writers.
    await wait_for(lambda: call_ids <= {e.call_id for e in control.events
                                        if isinstance(e, CallEnded)}, 20,
                   "every call's end reached control")
    await control.watcher.drain()
    await control.recorder.drain()
    async with pg_sessions() as session:
        rows = {c.call_id: c for c in (await session.scalars(select(Consultation))).all()}
        per_call = dict((await session.execute(
            select(Consultation.call_id, func.count()).group_by(Consultation.call_id))).all())
        requests = (await session.scalars(select(CallbackRequest))).all()
        not_possible = set((await session.scalars(
            select(Consultation.call_id).join(ConsultationStep).where(
                ConsultationStep.kind == "callback_not_possible"))).all())
    # Every call exactly one complete consultation; nothing half-written.
    assert set(rows) == call_ids and all(n == 1 for n in per_call.values()), per_call
    assert all(c.ended_at is not None and c.started_at is not None and c.outcome
               for c in rows.values()), [(c.call_id, c.outcome) for c in rows.values()]
    assert control.journal.pending() == []
    # The dead node's calls: lost, with that reason; a callback for each numbered caller.
    for call_id, call in on_dead.items():
        row = rows[call_id]
        assert (row.outcome, row.ivr_route, row.hangup_cause, row.hangup_party) == \
            ("lost", "lost", lost_cause(DEAD), "system")
        # One request per caller: reason lost, or abandoned when the queue node dropped
        # the dead leg first after a wait past min_wait_s (the lost end merges into it).
        asked = [r for r in requests if r.caller_number == call.caller_number]
        if call.caller_number in (None, WITHHELD):
            assert not asked and call_id in not_possible
        else:
            assert len(asked) == 1 and asked[0].consultation_id == row.id, asked
            assert asked[0].reason in ("lost", "abandoned")
    assert any(call.caller_number in (None, WITHHELD) for call in on_dead.values())
    assert all(c.outcome != "lost" for i, c in rows.items() if i not in on_dead)
    with capsys.disabled():
        print(f"\n{DEAD} killed -9 with 3 of 6 callers on it: its calls ended as lost "
              f"{lost_after:.1f} s after the kill; 2 new callers queued through {ALIVE} "
              f"{new_after:.1f} s after it; their legs left {QUEUE} {left_queue_after:.1f} s "
              f"after it; 8 consultations complete, "
              f"{sum(r.reason == 'lost' for r in requests)} lost-call callbacks; "
              f"{time.monotonic() - started:.1f} s in all")
