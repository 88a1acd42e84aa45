"""A cluster with the city-wide queue: Kamailio, two media nodes, a queue node and its
standby, all Asterisks from the one root on 127.0.17.x with free ports; and control's AMI
links to every node (hotline.roles.node_links) feeding the consultation recorder.

HOTLINE_TEST_QUEUE_NET (three octets, 127.x.y) moves the bed to another loopback block, so
two checkouts can run it at the same moment."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from crm.consultations.recorder import ConsultationRecorder
from crm.storage.db import SessionFactory
from crm.storage.journal import EventJournal
from crm.telephony.events import CallEventBus
from hotline.edge import cluster, nodes
from hotline.edge.settings import MediaNode
from hotline.roles.node_links import NodeLink, start_node_links
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings, free_tcp_port
from hotline.tools.sipp import free_udp_port
from tests.cluster.edge_bed import _skip_unless_possible

NET = os.environ.get("HOTLINE_TEST_QUEUE_NET", "127.0.17")
if not NET.startswith("127.") or NET.count(".") != 2:
    raise ValueError(f"HOTLINE_TEST_QUEUE_NET must be three loopback octets, not {NET!r}")
EDGE = f"{NET}.1"
MEDIA = {"media-a": f"{NET}.2", "media-b": f"{NET}.3"}
QUEUE, STANDBY = "queue-1", "queue-2"
QUEUE_NODES = {QUEUE: f"{NET}.4", STANDBY: f"{NET}.5"}
STRANGER = f"{NET}.9"
"""A loopback address that is no node's."""
LINK_S = 20.0
"""Bound for every AMI link to log in."""


def _node(name: str, address: str) -> MediaNode:
    return MediaNode(name=name, address=address, sip_port=free_udp_port(host=address),
                     ami_port=free_tcp_port(address), rtp_start=20000, rtp_end=20099)


@contextlib.contextmanager
def running_queue_cluster(tmp_path_factory: pytest.TempPathFactory,
                          agent_expiry: int = 60, max_wait: int | None = None,
                          carrier: str | None = None) -> Iterator[Settings]:
    base = asterisk_test_settings(tmp_path_factory.mktemp("queue-cluster"))
    if max_wait is not None:
        base = base.model_copy(update={"queue_wait": base.queue_wait.model_copy(
            update={"max_wait": max_wait})})
    edge = base.edge.model_copy(update={
        "address": EDGE, "port": free_udp_port(host=EDGE), "sources": ["127.0.0.1"],
        "phone_port": free_udp_port(host=EDGE), "phone_sources": ["127.0.0.1"],
        "nodes": [_node(n, a) for n, a in MEDIA.items()],
        "queue_nodes": [_node(n, a) for n, a in QUEUE_NODES.items()],
        "probe_interval": 1, "reply_timeout": 1.0, "control_links": True,
        "agent_expiry": agent_expiry, "carrier": carrier})
    settings = base.model_copy(update={"edge": edge})
    _skip_unless_possible(settings)
    try:
        cluster.up(settings, progress=lambda message: None)
        yield settings
    finally:
        cluster.down(settings, progress=lambda message: None)


def on_node(settings: Settings, name: str) -> Settings:
    """The settings node ``name`` runs with (its SIP address: where its phones register)."""
    return nodes.node_settings(settings, nodes.node(settings, name))


@dataclass
class Control:
    """Control's links to every node and what they published, recorded in the database."""

    links: dict[str, NodeLink]
    recorder: ConsultationRecorder
    events: list[object] = field(default_factory=list)
    bus: CallEventBus = field(default_factory=CallEventBus)
    """Where the links publish (the recorder and ``events`` read it; a callback scheduler
    publishes its steps here too)."""


@contextlib.asynccontextmanager
async def ivr_that_ends_at_once(settings: Settings) -> AsyncIterator[None]:
    """An AudioSocket peer that accepts and closes at once: the IVR's fallback (no route:
    the queue). Without one, AudioSocket's refused connect leaves the channel's timer broken
    on Asterisk 22.10 ("timerfd_gettime ... Invalid argument"), and the following Dial
    fails at once with CHANUNAVAIL."""
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close, settings.audiosocket.host,
                                        settings.audiosocket.port)
    async with server:
        yield


@contextlib.asynccontextmanager
async def running_control(settings: Settings, sessions: SessionFactory,
                          journal_dir: Path) -> AsyncIterator[Control]:
    async with contextlib.AsyncExitStack() as stack:
        bus = CallEventBus()
        journal = EventJournal(journal_dir)
        stack.callback(journal.close)
        recorder = ConsultationRecorder(sessions, journal=journal)
        bus.subscribe(recorder.handle)
        recorder.start()
        stack.push_async_callback(recorder.close)
        control = Control({}, recorder, bus=bus)

        async def keep(event: object) -> None:
            control.events.append(event)

        bus.subscribe(keep)
        await stack.enter_async_context(ivr_that_ends_at_once(settings))
        links = await start_node_links(stack, settings, bus)
        control.links.update({link.name: link for link in links})
        for link in links:
            await link.ami.wait_ready(LINK_S)
        yield control
