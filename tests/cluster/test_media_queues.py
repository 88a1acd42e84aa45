"""Issue 16, a cluster without a queue node (the default ``make run-cluster`` plan): each
media node queues its own callers, and control's link to each media node runs a queue
tracker besides its call tracker (hotline.roles.node_links), so a caller waiting on the
second node has its ``queued`` step, its agent's ring (the desk's pop) and the answer.

Real SIPp callers through Kamailio land on two real media nodes (round robin), a SIPp agent
phone registered at each node and signed in to that node's queue; the consultation
recorder writes to PostgreSQL. Every wait is for a condition, bounded."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from crm.storage.db import SessionFactory
from crm.storage.models import Consultation, ConsultationStep
from crm.telephony.events import (
    AgentAnswered,
    AgentRinging,
    AgentStatusChanged,
    CallerQueued,
    CallStarted,
    QueueSnapshot,
)
from hotline.roles.node_links import linked_media
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone
from hotline.tools.sipp import CallResult, place_call
from ivr.asterisk.queue_control import QueueControl
from tests.cluster.edge_bed import at_edge, running_cluster
from tests.cluster.queue_bed import Control, on_node, running_control

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]

EDGE = "127.0.23.1"
MEDIA = {"media-1": "127.0.23.2", "media-2": "127.0.23.3"}
AGENTS = {"media-1": "2001", "media-2": "2002"}
CALL_S = 30.0
"""Bound for a caller's whole call (IVR fallback, the queue, the agent's short talk)."""


@pytest.fixture(scope="module")
def media_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with running_cluster(tmp_path_factory, edge=EDGE, media=MEDIA) as settings:
        edge = settings.edge.model_copy(update={"control_links": True})
        yield settings.model_copy(update={"edge": edge})


@pytest.fixture
async def control(media_cluster: Settings, pg_sessions: SessionFactory,
                  tmp_path: Path) -> AsyncIterator[Control]:
    async with running_control(media_cluster, pg_sessions, tmp_path / "journal") as running:
        yield running


async def caller(settings: Settings, number: str) -> CallResult:
    return await place_call(at_edge(settings), caller_number=number, wait_for_bye=True,
                            hold_ms=int(CALL_S * 1000), max_seconds=CALL_S + 5)


async def steps_of(sessions: SessionFactory, call_id: str) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(
            select(ConsultationStep.kind).join(Consultation)
            .where(Consultation.call_id == call_id, Consultation.ended_at.is_not(None))
            .order_by(ConsultationStep.at, ConsultationStep.id))).scalars())


async def test_callers_queued_on_each_media_node_are_seen_by_control(
        media_cluster: Settings, control: Control, pg_sessions: SessionFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert sorted(control.links) == sorted(MEDIA)
    assert all(link.queue is not None for link in control.links.values())
    async with AgentPhone(on_node(media_cluster, "media-1"), AGENTS["media-1"], hold_ms=700), \
            AgentPhone(on_node(media_cluster, "media-2"), AGENTS["media-2"], hold_ms=700):
        for node, extension in AGENTS.items():
            await QueueControl(control.links[node].ami, media_cluster.asterisk.queue_name
                               ).join(f"PJSIP/{extension}", f"agent {extension}")
        results = await asyncio.gather(*(caller(media_cluster, f"1392300000{i}")
                                         for i in range(2)))
    assert all(r.answered and r.hung_up_by == "remote" for r in results), \
        [r.stderr for r in results]

    on_node_of = {e.call_id: e.node for e in control.events if isinstance(e, CallStarted)}
    assert sorted(on_node_of.values()) == sorted(MEDIA), on_node_of
    queued = Counter(e.call_id for e in control.events if isinstance(e, CallerQueued))
    rung = [(e.call_id, e.extension) for e in control.events if isinstance(e, AgentRinging)]
    answered = [(e.call_id, e.extension) for e in control.events
                if isinstance(e, AgentAnswered)]
    assert queued == Counter(list(on_node_of)), queued  # each caller queued once
    expected = sorted((call_id, AGENTS[node]) for call_id, node in on_node_of.items())
    assert sorted(rung) == expected, rung
    assert sorted(answered) == expected, answered
    # Members and snapshots stay with control's [ami] link (none here): the nodes' queues
    # share one name and would contradict each other.
    assert not [e for e in control.events if isinstance(e, AgentStatusChanged | QueueSnapshot)]

    for call_id in on_node_of:
        deadline = time.monotonic() + 20
        while not {"queued", "agent_ringing"} <= set(kinds := await steps_of(pg_sessions,
                                                                             call_id)):
            assert time.monotonic() < deadline, (call_id, kinds)
            await asyncio.sleep(0.2)
    with capsys.disabled():
        print(f"\n2 callers, one queued on each media node, answered by its agent; control "
              f"published queued/ringing/answered for both: {time.monotonic() - started:.1f} s")


def test_the_ami_node_gets_no_second_link(media_cluster: Settings) -> None:
    """Control's [ami] node keeps its own trackers (the call and the queue tracker of
    ``hotline serve --role control``): no link of node_links publishes for it again."""
    first = on_node(media_cluster, "media-1").ami
    settings = media_cluster.model_copy(update={"ami": first})
    assert [m.name for m in linked_media(settings)] == ["media-2"]
