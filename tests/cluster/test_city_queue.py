"""Issue 16, one city-wide queue: real SIPp callers through Kamailio land on two real media
nodes, which hand them over SIP (X-Hotline-Call-Id, X-Hotline-Queue) to a real queue node
where one SIPp agent phone is registered; control holds one AMI link per node
(hotline.roles.node_links) and the consultation recorder writes to PostgreSQL.

The standby: the queue node's Asterisk killed (-9) while one caller talks to an agent there
and another waits; the media nodes hear the legs' RTP stop and hand both callers to the
standby (X-Hotline-Requeue), where an agent answers them. Nothing is dropped. Every wait
is for a condition, bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm.storage.db import SessionFactory
from crm.storage.models import Consultation
from crm.telephony.events import (
    AgentAnswered,
    AgentCallEnded,
    AgentRinging,
    CallerAbandoned,
    CallerQueued,
    CallStarted,
    IvrLegAnnounced,
)
from hotline.edge import nodes
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone
from hotline.tools.sipp import CallResult, place_call
from ivr.asterisk.queue_control import QueueControl
from tests.cluster.edge_bed import at_edge, counts, node_cli, wait_for
from tests.cluster.queue_bed import (
    MEDIA,
    QUEUE,
    STANDBY,
    STRANGER,
    Control,
    on_node,
    running_control,
    running_queue_cluster,
)

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(150)]

EXTENSION, OTHER_EXTENSION = "2001", "2002"
CALL_S = 40.0
"""Bound for a caller's whole call (IVR fallback, the queue, the agent's short talk)."""


@pytest.fixture(scope="module")
def queue_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Kamailio, media-a and media-b, queue-1 and its standby queue-2 (127.0.17.x)."""
    with running_queue_cluster(tmp_path_factory) as settings:
        yield settings


@pytest.fixture
async def control(queue_cluster: Settings, pg_sessions: SessionFactory,
                  tmp_path: Path) -> AsyncIterator[Control]:
    async with running_control(queue_cluster, pg_sessions, tmp_path / "journal") as running:
        yield running


def queue_control(control: Control, node: str, settings: Settings) -> QueueControl:
    return QueueControl(control.links[node].ami, settings.asterisk.queue_name)


async def caller(settings: Settings, number: str) -> CallResult:
    """A caller who stays until the hotline hangs up (after the agent's short talk)."""
    return await place_call(at_edge(settings), caller_number=number, wait_for_bye=True,
                            hold_ms=int(CALL_S * 1000), max_seconds=CALL_S + 5)


async def one_complete_consultation_each(sessions: SessionFactory,
                                         call_ids: set[str]) -> None:
    async def written() -> bool:
        async with sessions() as session:
            rows = (await session.execute(
                select(Consultation.call_id, func.count(), func.count(Consultation.ended_at))
                .where(Consultation.call_id.in_(call_ids))
                .group_by(Consultation.call_id))).all()
        return len(rows) == len(call_ids) and all(n == 1 and e == 1 for _, n, e in rows)

    started = time.monotonic()
    while not await written():
        assert time.monotonic() - started < 20, "consultations not all written and ended"
        await asyncio.sleep(0.2)


def mirrored(settings: Settings, node: str, extension: str) -> bool:
    return f"PJSIP/{extension}" in node_cli(settings, node, "queue show")


def never_rung_twice(events: list[object], extension: str) -> list[str]:
    """The calls ``extension`` talked on, in order; fails if it was rung for, or answered, a
    caller while on another call.

    app_queue rings the next caller as soon as the agent's device is free, and may publish
    that AgentCalled just before the AgentComplete of the call that freed it (one thread
    hangs up, another rings): a ring for a new call while talking is a violation only when
    the current call has not ended before the new one is answered."""
    mine = [e for e in events if getattr(e, "extension", None) == extension]
    talking: str | None = None
    answered: list[str] = []
    for index, event in enumerate(mine):
        if isinstance(event, AgentRinging | AgentAnswered) and talking not in (
                None, event.call_id):
            later = mine[index:]
            ended = next((i for i, e in enumerate(later) if isinstance(e, AgentCallEnded)
                          and e.call_id == talking), None)
            taken = next((i for i, e in enumerate(later) if isinstance(e, AgentAnswered)
                          and e.call_id == event.call_id), len(later))
            assert isinstance(event, AgentRinging) and ended is not None and ended < taken, (
                f"{extension} rung while on {talking}")
        if isinstance(event, AgentAnswered):
            talking = event.call_id
            answered.append(event.call_id)
        elif isinstance(event, AgentCallEnded) and event.call_id == talking:
            talking = None
    return answered


async def test_callers_on_both_media_nodes_meet_one_agent_on_the_queue_node(
        queue_cluster: Settings, control: Control, pg_sessions: SessionFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    before = counts(queue_cluster, list(MEDIA))
    async with AgentPhone(on_node(queue_cluster, QUEUE), EXTENSION, hold_ms=700) as phone:
        await queue_control(control, QUEUE, queue_cluster).join(f"PJSIP/{EXTENSION}", "agent1")
        results = await asyncio.gather(*(caller(queue_cluster, f"1391000{i:04d}")
                                         for i in range(4)))
        assert phone.port
    assert all(r.answered and r.ok and r.hung_up_by == "remote" for r in results), \
        [r.stderr for r in results]
    after = counts(queue_cluster, list(MEDIA))
    landed = {name: after[name] - before[name] for name in MEDIA}
    assert sum(landed.values()) == 4 and all(landed.values()), landed

    call_ids = {e.call_id for e in control.events if isinstance(e, CallStarted)}
    assert len(call_ids) == 4, call_ids
    answered = never_rung_twice(control.events, EXTENSION)
    assert sorted(answered) == sorted(call_ids), (answered, call_ids)
    # The agent hung up first, so each caller's media node ran the after-call survey: the
    # queue node's BYE said so (its Q.850 cause, dialplans/hotline.conf.j2).
    surveyed = {e.for_call for e in control.events
                if isinstance(e, IvrLegAnnounced) and e.kind == "survey"}
    assert surveyed == call_ids, (surveyed, call_ids)
    await one_complete_consultation_each(pg_sessions, call_ids)
    with capsys.disabled():
        print(f"\n4 callers over {landed} answered one at a time by {EXTENSION} on {QUEUE}: "
              f"{time.monotonic() - started:.1f} s")


async def test_the_queue_node_takes_handoff_headers_from_media_nodes_only(
        queue_cluster: Settings, control: Control) -> None:
    """The same headers from a stranger's address are not served (unidentified: a challenge
    it cannot answer); from a media node's address a call id that is not one is refused;
    a good handoff is queued under the call id and language queue it names."""
    queue_node = on_node(queue_cluster, QUEUE)
    call_id = str(uuid.uuid4())
    headers = (f"X-Hotline-Call-Id: {call_id}", "X-Hotline-Queue: hotline-en")

    async def hand_over(local_ip: str, *lines: str) -> CallResult:
        return await place_call(queue_node, caller_number="13930000001", local_ip=local_ip,
                                headers=lines, hold_ms=1500, answer_timeout_ms=5000,
                                max_seconds=15)

    assert not (await hand_over(STRANGER, *headers)).answered
    assert not (await hand_over(MEDIA["media-a"], "X-Hotline-Call-Id: 1;drop")).answered
    handed = await hand_over(MEDIA["media-a"], *headers)
    assert handed.answered, handed.stderr
    await wait_for(lambda: any(isinstance(e, CallerQueued) for e in control.events), 10,
                   "the handed-over caller queued")
    queued = [(e.call_id, e.queue) for e in control.events if isinstance(e, CallerQueued)]
    assert queued == [(call_id, "hotline-en")]


@pytest.mark.timeout(240)
async def test_callers_on_a_queue_node_that_dies_are_answered_on_the_standby(
        queue_cluster: Settings, control: Control, pg_sessions: SessionFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Last in the module: it kills the queue node while one caller talks to an agent there
    and another waits. Both are queued again on the standby, and so is a caller who arrives
    afterwards; all are answered there by an agent who signed in on the queue node only
    (control mirrored the membership). A fourth caller then waits on the standby, where no
    phone is left. The queue node restarts and gets the membership back from the standby;
    once an agent's phone registers there, the waiting caller is handed back to it
    (hotline.roles.queue_return) and answered there; their standby leg's end is no
    abandon."""
    def queued(count: int) -> Callable[[], bool]:
        return lambda: sum(isinstance(e, CallerQueued) for e in control.events) >= count

    talking_agent = AgentPhone(on_node(queue_cluster, QUEUE), OTHER_EXTENSION,
                               hold_ms=int(CALL_S * 1000))
    calls: list[asyncio.Task[CallResult]] = []
    try:
        async with talking_agent:
            signing_in = queue_control(control, QUEUE, queue_cluster)  # the queue node only
            await signing_in.join(f"PJSIP/{OTHER_EXTENSION}", "agent2")
            await signing_in.join(f"PJSIP/{EXTENSION}", "agent1")  # phone not registered yet
            await wait_for(lambda: mirrored(queue_cluster, STANDBY, EXTENSION), 10,
                           f"agent1's membership on {STANDBY}")
            calls.append(asyncio.create_task(caller(queue_cluster, "13920000001")))
            await talking_agent.wait_answered(CALL_S)
            calls.append(asyncio.create_task(caller(queue_cluster, "13920000002")))
            await wait_for(queued(2), CALL_S, f"a second caller waiting on {QUEUE}")
            call_ids = {e.call_id for e in control.events if isinstance(e, CallStarted)}
            pid = nodes.pid(queue_cluster, QUEUE)
            assert pid is not None and len(call_ids) == 2
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            requeued_after = await wait_for(queued(4), 20, f"both callers queued on {STANDBY}")
            calls.append(asyncio.create_task(caller(queue_cluster, "13920000003")))
            new_caller_after = await wait_for(queued(5), 20, f"a new caller queued on {STANDBY}")
        # agent1's phone registers at the standby; its sign-in there was mirrored already.
        async with AgentPhone(on_node(queue_cluster, STANDBY), EXTENSION, hold_ms=700):
            results = await asyncio.gather(*calls)
        answered_after = time.monotonic() - killed
    finally:
        for call in calls:
            call.cancel()
    assert all(r.answered and r.ok and r.hung_up_by == "remote" for r in results), \
        [r.stderr for r in results]
    call_ids = {e.call_id for e in control.events if isinstance(e, CallStarted)}
    assert len(call_ids) == 3
    assert sorted(never_rung_twice(control.events, EXTENSION)) == sorted(call_ids)
    await one_complete_consultation_each(pg_sessions, call_ids)

    # A caller waits on the standby (the queue node is still down), no phone left there.
    waiting = asyncio.create_task(place_call(
        at_edge(queue_cluster), caller_number="13920000004", wait_for_bye=True,
        hold_ms=int(2 * CALL_S * 1000), max_seconds=2 * CALL_S + 5))
    try:
        await wait_for(queued(6), CALL_S, f"a fourth caller waiting on {STANDBY}")
        (fourth,) = {e.call_id for e in control.events if isinstance(e, CallStarted)} - call_ids

        # The queue node comes back with an Asterisk that has no members: control copies the
        # standby's membership back (both agents signed in on the queue node only, before).
        await asyncio.to_thread(nodes.up, queue_cluster, QUEUE, lambda message: None)
        control.links[QUEUE].ami.reconnect_now()  # its backoff grew while the node was dead
        copied_back = await wait_for(
            lambda: all(mirrored(queue_cluster, QUEUE, e)
                        for e in (EXTENSION, OTHER_EXTENSION)),
            20, f"both agents' membership copied back to {QUEUE}")
        back = time.monotonic()
        async with AgentPhone(on_node(queue_cluster, QUEUE), EXTENSION, hold_ms=700):
            handed_back = await wait_for(queued(7), 20, f"the fourth caller queued on {QUEUE}")
            fourth_result = await waiting
    finally:
        waiting.cancel()
    assert fourth_result.answered and fourth_result.ok, fourth_result.stderr
    joins = [e.node for e in control.events if isinstance(e, CallerQueued)
             and e.call_id == fourth]
    # Handed back once, or twice if the media node's probes had not yet seen the queue
    # node back (the first INVITE then went to the standby again).
    assert joins[0] == STANDBY and joins[-1] == QUEUE and len(joins) <= 3, joins
    answered_on = [e.node for e in control.events if isinstance(e, AgentAnswered)
                   and e.call_id == fourth]
    assert answered_on == [QUEUE], answered_on
    assert not [e for e in control.events if isinstance(e, CallerAbandoned)
                and e.call_id == fourth]
    await one_complete_consultation_each(pg_sessions, call_ids | {fourth})
    with capsys.disabled():
        print(f"\n{QUEUE} killed with a caller talking and one waiting: both queued on "
              f"{STANDBY} after {requeued_after:.1f} s; a new caller then queued there in "
              f"{new_caller_after:.1f} s; all three answered there "
              f"{answered_after:.1f} s after the kill; {QUEUE} restarted had its two "
              f"members back {copied_back:.1f} s after it was up; a caller waiting on "
              f"{STANDBY} was queued on {QUEUE} {handed_back:.1f} s after an agent's phone "
              f"registered there ({time.monotonic() - back:.1f} s to the call's end)")


def _agent_events(*spec: tuple[type, str]) -> list[object]:
    return [kind(call_id=call, queue="hotline", interface="PJSIP/2001", extension="2001")
            for kind, call in spec]


def test_a_ring_published_just_before_the_previous_calls_end_is_no_double_booking() -> None:
    events = _agent_events((AgentRinging, "a"), (AgentAnswered, "a"), (AgentRinging, "b"),
                           (AgentCallEnded, "a"), (AgentAnswered, "b"), (AgentCallEnded, "b"))
    assert never_rung_twice(events, "2001") == ["a", "b"]


def test_a_second_caller_answered_while_connected_is_a_double_booking() -> None:
    events = _agent_events((AgentRinging, "a"), (AgentAnswered, "a"), (AgentRinging, "b"),
                           (AgentAnswered, "b"), (AgentCallEnded, "a"))
    with pytest.raises(AssertionError, match="rung while on a"):
        never_rung_twice(events, "2001")
