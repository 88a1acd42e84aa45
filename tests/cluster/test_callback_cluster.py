"""A callback in a cluster with the city-wide queue: control's callback dialer
(ivr/asterisk/callback_dialer.py, reading the queue on the queue node) originates the
placeholder on a media node; it waits on the queue node, where an agent signed in there
answers it; only then does the media node dial the resident, out through the edge to the
carrier. resident_first: the resident is dialled first and, answered, waits on the queue
node. An assigned callback rings its agent only, on the queue node. Real Kamailio, two media
nodes, the queue node and its standby, SIPp agent phones and a SIPp UAS standing for the
carrier's resident; the callback scheduler (crm.callbacks.dialing) records the outcome in
PostgreSQL as on one box."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from crm.agents import accounts
from crm.callbacks import service as callbacks
from crm.callbacks.dialing import CallbackScheduler
from crm.consultations.service import find_consultations
from crm.settings import CallbackSettings, assigned_queue
from crm.storage.db import SessionFactory
from crm.storage.models import utcnow
from crm.telephony.callbacks import CallbackJob
from crm.telephony.events import AgentAnswered, AgentRinging, CallEnded, CallerQueued, CallStep
from crm.telephony.steps import CallbackDialling
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone, ResidentPhone
from hotline.tools.sipp import LOCAL_IP, free_udp_port, place_call
from ivr.ami.codec import AmiEvent
from ivr.asterisk.callback_dialer import AmiCallbackDialer
from ivr.asterisk.queue_control import QueueControl
from tests.cluster.edge_bed import at_edge, wait_for
from tests.cluster.queue_bed import (
    QUEUE,
    STANDBY,
    Control,
    on_node,
    running_control,
    running_queue_cluster,
)

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]

CARRIER_PORT = free_udp_port()
MEDIA = "media-a"


@pytest.fixture(scope="module")
def callback_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with running_queue_cluster(tmp_path_factory,
                               carrier=f"{LOCAL_IP}:{CARRIER_PORT}") as settings:
        yield settings


@pytest.fixture
async def control(callback_cluster: Settings, pg_sessions: SessionFactory,
                  tmp_path: Path) -> AsyncIterator[Control]:
    async with running_control(callback_cluster, pg_sessions, tmp_path / "journal") as running:
        yield running


async def test_a_callback_waits_on_the_queue_node_and_rings_the_resident_once_answered(
        callback_cluster: Settings, control: Control) -> None:
    settings = callback_cluster
    call_id = str(uuid.uuid4())
    edge = f"{settings.edge.address}:{settings.edge.port}"
    dialled: list[AmiEvent] = []
    media = control.links[MEDIA].ami
    media.subscribe("UserEvent", lambda e: dialled.append(e) if e.get(
        "UserEvent") == "HotlineCallbackDialled" else None)
    dialer = AmiCallbackDialer(media, CallbackSettings(
        dial=f"PJSIP/pstn-gateway/sip:{{number}}@{edge}", queue_timeout=25),
        hotline_number=settings.asterisk.hotline_number)
    dialer.use_queue_nodes([control.links[QUEUE].ami])
    positions: list[int | None] = []

    async def placed(position: int | None) -> None:
        positions.append(position)

    def queued(call: str | None = None) -> bool:
        return any(isinstance(e, CallerQueued) and e.node == QUEUE
                   and (call is None or e.call_id == call) for e in control.events)

    # A caller waits on the queue node first (nobody signed in yet): the callback, asked for
    # later, is placed behind them, which only the queue node's status shows.
    waiting = asyncio.create_task(place_call(
        at_edge(settings), caller_number="13950000009", wait_for_bye=True, hold_ms=40_000,
        max_seconds=45))
    calls: list[asyncio.Task[Any]] = [waiting]
    try:
        await wait_for(queued, 15, f"a caller waiting on {QUEUE}")
        job = CallbackJob(7, call_id, "13800138000", "hotline", utcnow(), 1)
        async with AgentPhone(on_node(settings, QUEUE), "2001", hold_ms=3000), \
                ResidentPhone(settings, mode="answer", hold_ms=1000,
                              port=CARRIER_PORT) as resident:
            calls.append(asyncio.create_task(dialer.call_back(job, placed)))
            await wait_for(lambda: queued(call_id), 15, f"the placeholder queued on {QUEUE}")
            await QueueControl(control.links[QUEUE].ami, settings.asterisk.queue_name).join(
                "PJSIP/2001", "agent1")
            await resident.wait_event("answered", within=30)
            result = await asyncio.wait_for(calls[1], 30)
            assert (await asyncio.wait_for(waiting, 30)).answered
            # The resident's call is over (their BYE answered) before the next test's phone
            # takes the carrier's port.
            await resident.wait_event("local_bye", within=15)
    finally:
        dialer.close()
        for call in calls:
            call.cancel()
    assert positions == [2]  # read on the queue node: one caller waiting ahead
    assert result.outcome == "reached", result
    assert dialled and dialled[0].get("DialStatus") == "ANSWER", dialled
    assert any(isinstance(e, AgentAnswered) and e.call_id == call_id
               for e in control.events)


# -- the callback scheduler over the cluster, as control runs it -------------------------------
def _dial(settings: Settings) -> str:
    return f"PJSIP/pstn-gateway/sip:{{number}}@{settings.edge.address}:{settings.edge.port}"


@contextlib.asynccontextmanager
async def scheduling(control: Control, settings: Settings, sessions: SessionFactory, *,
                     media: str = MEDIA, start: bool = True,
                     **options: Any) -> AsyncIterator[CallbackScheduler]:
    """Control's callback part (hotline.roles.split): the dialer on ``media``'s AMI reading
    the queue on the queue node and hearing the other media nodes' reports, the scheduler
    publishing to control's bus (the recorder). ``start`` False: the test runs its passes."""
    cb = CallbackSettings(**{
        "dial": _dial(settings), "queue_timeout": 25, "ring_timeout": 10, "min_wait_s": 0,
        "calling_hours": "00:00-24:00", "poll_interval": 1, **options})
    dialer = AmiCallbackDialer(control.links[media].ami, cb,
                               hotline_number=settings.asterisk.hotline_number)
    dialer.use_queue_nodes([control.links[QUEUE].ami, control.links[STANDBY].ami])
    dialer.use_media_nodes([link.ami for name, link in control.links.items()
                            if link.kind == "media" and name != media])
    scheduler = CallbackScheduler(dialer, sessions, control.bus, cb,
                                  queue=settings.asterisk.queue_name)
    if start:
        scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.close()
        dialer.close()


@contextlib.asynccontextmanager
async def signed_in_on_queue_node(control: Control, settings: Settings, extension: str,
                                  agent_id: int | None = None,
                                  **phone: int) -> AsyncIterator[AgentPhone]:
    """An agent phone registered on the queue node and signed in there as the desk does it
    (every queue; the assigned-callbacks queue with the agent's id as penalty)."""
    queue = settings.asterisk.queue_name
    desk = QueueControl(control.links[QUEUE].ami, queue, assigned=assigned_queue(queue))
    async with AgentPhone(on_node(settings, QUEUE), extension, **phone) as handset:
        await desk.join(f"PJSIP/{extension}", f"agent{extension}", agent_id=agent_id)
        try:
            yield handset
        finally:
            await desk.leave(f"PJSIP/{extension}")


def dialling_of(control: Control, request_id: int) -> list[CallStep]:
    return [e for e in control.events if isinstance(e, CallStep)
            and isinstance(e.step, CallbackDialling) and e.step.request_id == request_id]


async def recorded_callback(control: Control, sessions: SessionFactory, number: str,
                            call_id: str) -> list[str]:
    """The kinds of the steps of the callback call's one consultation, once it ended."""
    await wait_for(lambda: any(isinstance(e, CallEnded) and e.call_id == call_id
                               for e in control.events), 20, "the callback call's end")
    await control.recorder.drain()
    [record] = [c for c in await find_consultations(sessions, phone=number)
                if c.call_id == call_id]
    assert (record.ivr_route, record.outcome) == ("callback", "callback"), record
    return [s["kind"] for s in record.steps]


async def test_resident_first_dials_the_resident_then_queues_them_on_the_queue_node(
        callback_cluster: Settings, control: Control, pg_sessions: SessionFactory) -> None:
    settings = callback_cluster
    number = "13800138011"
    async with ResidentPhone(settings, mode="answer", hold_ms=1500,
                             port=CARRIER_PORT) as resident:
        made = (await callbacks.request_callback(pg_sessions, number=number,
                                                 reason="abandoned")).request
        async with (scheduling(control, settings, pg_sessions,
                               order="resident_first") as scheduler,
                    signed_in_on_queue_node(control, settings, "2001", ring_ms=200,
                                            hold_ms=8000) as phone):
            # A free member on the queue node (the media node's queue has none): dialled.
            await wait_for(lambda: dialling_of(control, made.id), 20, "the callback dialled")
            [dialling] = dialling_of(control, made.id)
            assert dialling.step.order == "resident_first" and dialling.step.position == 1
            call_id = dialling.call_id
            await resident.wait_event("answered", within=20)
            await wait_for(lambda: any(isinstance(e, AgentAnswered) and e.call_id == call_id
                                       for e in control.events), 20,
                           f"the agent answering the resident on {QUEUE}")
            await phone.wait_answered(10)
            done = await scheduler.wait_finished(lambda v: v.id == made.id, 20)
            await resident.wait_event("local_bye", within=15)
        assert (done.status, done.outcome, done.attempts) == ("completed", "reached", 1)
        joined = [e for e in control.events if isinstance(e, CallerQueued)
                  and e.call_id == call_id]
        assert [e.node for e in joined] == [QUEUE], joined  # not on the media node
        kinds = await recorded_callback(control, pg_sessions, number, call_id)
        assert kinds[0] == "callback_dialling" and "agent_answered" in kinds, kinds
        assert kinds.count("callback_outcome") == 1, kinds


async def test_an_assigned_callback_rings_its_agent_only_on_the_queue_node(
        callback_cluster: Settings, control: Control, pg_sessions: SessionFactory) -> None:
    settings = callback_cluster
    number = "13800138012"
    other, chosen = [await accounts.create_agent(
        pg_sessions, login=f"agent{e}", display_name=f"Agent {e}", extension=e)
        for e in ("2001", "2002")]
    assert other.id < chosen.id  # without the penalty limit, 2001 would be rung first
    made = (await callbacks.request_callback(pg_sessions, number=number,
                                             reason="abandoned")).request
    await callbacks.reassign_callback(pg_sessions, made.id, "agent2002",
                                      actor="supervisor:supervisor1")
    assigned = assigned_queue(settings.asterisk.queue_name)
    async with (ResidentPhone(settings, mode="answer", hold_ms=1500,
                              port=CARRIER_PORT) as resident,
                signed_in_on_queue_node(control, settings, "2001", other.id, ring_ms=200,
                                        hold_ms=8000),
                signed_in_on_queue_node(control, settings, "2002", chosen.id, ring_ms=200,
                                        hold_ms=8000) as phone,
                scheduling(control, settings, pg_sessions) as scheduler):
        call_id = await queued_on_queue_node(control, made.id)
        await phone.wait_answered(15)
        await resident.wait_event("answered", within=20)
        done = await scheduler.wait_finished(lambda v: v.id == made.id, 30)
        await resident.wait_event("local_bye", within=15)
    assert (done.status, done.outcome, done.attempts) == ("completed", "reached", 1)
    rung = [e for e in control.events if isinstance(e, AgentRinging) and e.call_id == call_id]
    assert rung and {(e.extension, e.queue) for e in rung} == {("2002", assigned)}, rung
    joined = [e for e in control.events if isinstance(e, CallerQueued)
              and e.call_id == call_id]
    assert [(e.node, e.queue) for e in joined] == [(QUEUE, assigned)], joined


async def test_a_placeholder_left_by_a_control_restart_is_found_on_the_queue_node(
        callback_cluster: Settings, control: Control, pg_sessions: SessionFactory) -> None:
    """Control placed a callback through media-a and stopped; the control that starts next
    (its [ami] on media-b, as a standby's may be) finds the placeholder on the queue node,
    where its channel is the media-nodes endpoint's: not placed twice, its place kept,
    and its outcome, reported on media-a, recorded."""
    settings = callback_cluster
    number = "13800138013"
    queue = settings.asterisk.queue_name
    arrival = utcnow() - timedelta(minutes=10)
    made = (await callbacks.request_callback(pg_sessions, number=number, reason="abandoned",
                                             queued_at=arrival)).request
    async with ResidentPhone(settings, mode="answer", hold_ms=1500,
                             port=CARRIER_PORT) as resident:
        async with scheduling(control, settings, pg_sessions):
            await queued_on_queue_node(control, made.id)
        # Control stopped; the placeholder waits on. The next control, on media-b:
        async with scheduling(control, settings, pg_sessions, media="media-b",
                              start=False) as again:
            await again.recover()
            assert await again.run_once() == []  # nothing placed twice
            view = await callbacks.get_callback(pg_sessions, made.id)
            assert (view.status, view.attempts) == ("dialling", 0)
            # Its place is its request's arrival, not when it joined the queue node.
            later = await again.dialer.position(queue, arrival + timedelta(minutes=5))
            earlier = await again.dialer.position(queue, arrival - timedelta(minutes=5))
            assert (earlier, later) == (1, 2)
            async with signed_in_on_queue_node(control, settings, "2001", ring_ms=200,
                                               hold_ms=8000) as phone:
                await phone.wait_answered(15)
                await resident.wait_event("answered", within=20)
                done = await again.wait_finished(lambda v: v.id == made.id, 30)
                await resident.wait_event("local_bye", within=15)
    assert (done.status, done.outcome, done.attempts) == ("completed", "reached", 1)
    assert len(dialling_of(control, made.id)) == 1


async def queued_on_queue_node(control: Control, request_id: int) -> str:
    """Wait until the request's callback is placed and its placeholder queued on the queue
    node; its call id."""
    await wait_for(lambda: dialling_of(control, request_id), 20, "the callback placed")
    call_id = dialling_of(control, request_id)[0].call_id
    await wait_for(lambda: any(isinstance(e, CallerQueued) and e.call_id == call_id
                               and e.node == QUEUE for e in control.events), 20,
                   f"the placeholder queued on {QUEUE}")
    return call_id


async def queue_node_callers(control: Control, queue: str) -> list[str]:
    """The channels waiting in ``queue`` on the queue node."""
    items = await control.links[QUEUE].ami.action_list("QueueStatus", Queue=queue)
    return [i.get("Channel") for i in items if i.name.lower() == "queueentry"
            and i.get("Queue") == queue]


async def test_a_callback_cancelled_after_a_control_restart_leaves_the_queue_node(
        callback_cluster: Settings, control: Control, pg_sessions: SessionFactory) -> None:
    """A placeholder hands itself to the queue node with Dial (not Queue, as on one box),
    and the control that withdraws it may run on another media node than the one that
    placed it: cancelled, it leaves the queue node's queue."""
    settings = callback_cluster
    queue = settings.asterisk.queue_name
    made = (await callbacks.request_callback(pg_sessions, number="13800138014",
                                             reason="abandoned")).request
    async with scheduling(control, settings, pg_sessions):
        call_id = await queued_on_queue_node(control, made.id)
    async with scheduling(control, settings, pg_sessions, media="media-b",
                          start=False) as again:
        await again.recover()
        assert len(await queue_node_callers(control, queue)) == 1
        view = await again.cancel(made.id, actor="supervisor:supervisor1")
        assert view.status == "cancelled"
        await wait_for(lambda: any(isinstance(e, CallEnded) and e.call_id == call_id
                                   for e in control.events), 15,
                       "the withdrawn placeholder's end")
        await again.close()  # the withdrawal is let finish
    assert await queue_node_callers(control, queue) == []
    view = await callbacks.get_callback(pg_sessions, made.id)
    assert (view.status, view.attempts) == ("cancelled", 0)


async def waiting_numbers(control: Control, queue: str) -> list[str]:
    """The numbers of the callers waiting in ``queue`` on the queue node, head first."""
    items = await control.links[QUEUE].ami.action_list("QueueStatus", Queue=queue)
    entries = sorted((i for i in items if i.name.lower() == "queueentry"
                      and i.get("Queue") == queue), key=lambda i: int(i.get("Position") or 0))
    return [e.get("CallerIDNum") for e in entries]


async def caller_leg(control: Control, number: str) -> tuple[Any, str]:
    """The AMI link of the media node a caller is on and their channel there."""
    for name in ("media-a", "media-b"):
        ami = control.links[name].ami
        for channel in await ami.action_list("CoreShowChannels"):
            if (channel.get("CallerIDNum") == number
                    and (channel.get("Channel") or "").startswith("PJSIP/")
                    and not channel.get("Channel").startswith("PJSIP/queue-node-")):
                return ami, channel.get("Channel")
    raise AssertionError(f"no channel of {number} on a media node")


async def test_a_caller_back_from_the_callback_offer_rejoins_the_queue_node_at_their_place(
        callback_cluster: Settings, control: Control) -> None:
    """A caller who heard the callback offer and goes back to the queue (a withheld number)
    rejoins at the place their first arrival gives them (REQUEUE_POSITION, as the offer
    sets it): carried to the queue node (X-Hotline-Position), not the end of its queue; and
    control's dialer counts them from that first arrival for the callbacks placed after."""
    settings = callback_cluster
    queue = settings.asterisk.queue_name
    numbers = ["13950000021", "13950000022"]
    dialer = AmiCallbackDialer(control.links[MEDIA].ami, CallbackSettings(),
                               hotline_number=settings.asterisk.hotline_number)
    dialer.use_queue_nodes([control.links[QUEUE].ami, control.links[STANDBY].ami])
    first_arrival = utcnow() - timedelta(minutes=10)

    def queued(number: str, times: int = 1) -> bool:
        return sum(1 for e in control.events if isinstance(e, CallerQueued)
                   and e.node == QUEUE and e.caller_number == number) >= times

    calls: list[asyncio.Task[Any]] = []
    try:
        for number in numbers:
            calls.append(asyncio.create_task(place_call(
                at_edge(settings), caller_number=number, wait_for_bye=True, hold_ms=40_000,
                max_seconds=45)))
            await wait_for(lambda n=number: queued(n), 15, f"{number} waiting on {QUEUE}")
        assert await waiting_numbers(control, queue) == numbers
        # What the callback offer does for a caller who keeps waiting: their place by first
        # arrival in REQUEUE_POSITION, then back to the queue (hotline-inbound, label queue).
        ami, channel = await caller_leg(control, numbers[0])
        [returning] = {e.call_id for e in control.events if isinstance(e, CallerQueued)
                       and e.caller_number == numbers[0]}
        position = await dialer.return_position(queue, channel, first_arrival, returning)
        assert position == 1
        await ami.action("Setvar", Channel=channel, Variable="REQUEUE_POSITION",
                         Value=str(position))
        moved = await ami.action("Redirect", Channel=channel, Context="hotline-inbound",
                                 Exten=settings.asterisk.hotline_number, Priority="queue")
        assert moved.get("Response") == "Success"
        await wait_for(lambda: queued(numbers[0], 2), 15, f"{numbers[0]} back on {QUEUE}")
        assert await waiting_numbers(control, queue) == numbers
        # A callback whose caller arrived 5 minutes after them goes behind them (their
        # channel on the queue node is another than the one the offer ran on).
        assert await dialer.position(queue, first_arrival + timedelta(minutes=5)) == 2
    finally:
        dialer.close()
        for number in numbers:
            with contextlib.suppress(Exception):
                ami, channel = await caller_leg(control, number)
                await ami.action("Hangup", Channel=channel)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
