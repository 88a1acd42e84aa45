"""A callback in a cluster with the city-wide queue: control's callback dialer
(ivr/asterisk/callback_dialer.py, reading the queue on the queue node) originates the
placeholder on a media node; it waits on the queue node, where an agent signed in there
answers it; only then does the media node dial the resident, out through the edge to the
carrier. Real Kamailio, two media nodes, the queue node and its standby, a SIPp agent phone
and a SIPp UAS standing for the carrier's resident."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from crm.settings import CallbackSettings
from crm.storage.db import SessionFactory
from crm.storage.models import utcnow
from crm.telephony.callbacks import CallbackJob
from crm.telephony.events import AgentAnswered, CallerQueued
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone, ResidentPhone
from hotline.tools.sipp import LOCAL_IP, free_udp_port, place_call
from ivr.ami.codec import AmiEvent
from ivr.asterisk.callback_dialer import AmiCallbackDialer
from ivr.asterisk.queue_control import QueueControl
from tests.cluster.edge_bed import at_edge, wait_for
from tests.cluster.queue_bed import (
    QUEUE,
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
        async with AgentPhone(on_node(settings, QUEUE), "2001", hold_ms=1500), \
                ResidentPhone(settings, mode="answer", hold_ms=4000,
                              port=CARRIER_PORT) as resident:
            calls.append(asyncio.create_task(dialer.call_back(job, placed)))
            await wait_for(lambda: queued(call_id), 15, f"the placeholder queued on {QUEUE}")
            await QueueControl(control.links[QUEUE].ami, settings.asterisk.queue_name).join(
                "PJSIP/2001", "agent1")
            await resident.wait_event("answered", within=30)
            result = await asyncio.wait_for(calls[1], 30)
            assert (await asyncio.wait_for(waiting, 30)).answered
    finally:
        dialer.close()
        for call in calls:
            call.cancel()
    assert positions == [2]  # read on the queue node: one caller waiting ahead
    assert result.outcome == "reached", result
    assert dialled and dialled[0].get("DialStatus") == "ANSWER", dialled
    assert any(isinstance(e, AgentAnswered) and e.call_id == call_id
               for e in control.events)
