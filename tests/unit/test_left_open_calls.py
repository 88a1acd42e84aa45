"""Calls left open when a cluster's control starts (hotline/roles/left_open.py), against two
fake AMI servers on real sockets standing for two media nodes and the real database: a call
live on either node is adopted by that node's tracker, whose first resynchronisation then
neither ends it nor opens it again; a call live on neither is closed; a node whose AMI does
not answer holds none of them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crm.consultations.recorder import apply_event, open_calls
from crm.storage.db import SessionFactory
from crm.telephony.events import BusEvent, CallEnded, CallEventBus, CallStarted
from hotline.edge.settings import MediaNode
from hotline.roles.left_open import LeftOpenPlacement
from hotline.roles.node_links import linked_media, start_node_links
from hotline.settings import Settings
from ivr.ami.client import AmiClient
from ivr.asterisk.call_tracker import ActiveCall, CallTracker
from tests.ami_replay import FakeAmiServer

WAIT = 10.0


def channel(call_id: str, n: int) -> dict[str, str]:
    return {"Channel": f"PJSIP/pstn-gateway-0000000{n}", "CallerIDNum": f"1380013800{n}",
            "CallerIDName": "", "Uniqueid": f"1700.{n}", "Linkedid": f"1700.{n}",
            "Duration": "00:00:30", "ChanVariable": f"CALL_ID={call_id}"}


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[FakeAmiServer, FakeAmiServer]]:
    async with FakeAmiServer() as one, FakeAmiServer() as two:
        one.channels = [channel("on-one", 1)]
        two.channels = [channel("on-two", 2), channel("not-ours", 3) | {"ChanVariable": ""}]
        yield one, two


def cluster(tmp_path: Path, one: FakeAmiServer, two: FakeAmiServer) -> Settings:
    settings = Settings(state_dir=tmp_path)
    settings.ami = settings.ami.model_copy(update={
        "host": "127.0.0.1", "port": one.port, "secret": "secret", "reconnect_min": 0.05,
        "reconnect_max": 0.1})
    settings.asterisk.call_record_file = tmp_path / "no-record.json"
    settings.edge = settings.edge.model_copy(update={"control_links": True, "nodes": [
        MediaNode(name="media-1", address="127.0.0.1", ami_port=one.port),
        MediaNode(name="media-2", address="127.0.0.1", ami_port=two.port)],
        "queue_nodes": []})  # the media nodes alone: their trackers are what is tested
    return settings


async def left_open(sessions: SessionFactory, *call_ids: str) -> None:
    async with sessions() as session, session.begin():
        for n, call_id in enumerate(call_ids):
            await apply_event(session, CallStarted(call_id, f"1390013900{n}", "", "PJSIP/x"))


async def test_each_call_left_open_goes_to_the_tracker_of_its_node(
        sessions: SessionFactory, nodes: tuple[FakeAmiServer, FakeAmiServer],
        tmp_path: Path) -> None:
    one, two = nodes
    settings = cluster(tmp_path, one, two)
    assert [m.name for m in linked_media(settings)] == ["media-2"]  # media-1 is [ami]
    await left_open(sessions, "on-one", "on-two", "ended-meanwhile")
    bus = CallEventBus()
    published: list[BusEvent] = []

    async def keep(event: BusEvent) -> None:
        published.append(event)

    bus.subscribe(keep)
    placement = LeftOpenPlacement(settings, sessions, bus, "media-1", ["media-2"])
    mine = await placement.place(await open_calls(sessions))
    assert [c.call_id for c in mine] == ["on-one"]
    assert {k: [c.call_id for c in v] for k, v in placement.by_node.items()} == {
        "media-2": ["on-two"]}
    assert [(e.call_id, e.cause) for e in published if isinstance(e, CallEnded)] == [
        ("ended-meanwhile", "resynchronised")]

    # Control starts as start_control and start_node_links do: each tracker adopts its
    # share before its link logs in; its first resynchronisation keeps the call.
    async with contextlib.AsyncExitStack() as stack:
        ami = AmiClient(settings.ami, name="hotline-control")
        own = CallTracker(ami, bus)
        own.adopt(ActiveCall(c.call_id, c.channel, c.caller_number, c.caller_name)
                  for c in mine)
        resynchronised = [asyncio.Event()]
        ami.on_ready(resynchronised[0].set)  # runs after the tracker's resynchronisation
        await ami.start()
        stack.push_async_callback(ami.close)
        links = await start_node_links(stack, settings, bus, adopt=placement.by_node)
        [link] = links
        assert link.calls is not None and set(link.calls.active_calls) == {"on-two"}
        resynchronised.append(asyncio.Event())
        # Registered after the tracker's, on a link still logging in: runs after its
        # first resynchronisation.
        link.ami.on_ready(resynchronised[1].set)
        async with asyncio.timeout(WAIT):
            for done in resynchronised:
                await done.wait()
        assert set(own.active_calls) == {"on-one"}
        assert set(link.calls.active_calls) == {"on-two"}
    ends = [e.call_id for e in published if isinstance(e, CallEnded)]
    starts = [e.call_id for e in published if isinstance(e, CallStarted)]
    assert ends == ["ended-meanwhile"] and starts == []  # nothing ended or opened again


async def test_a_node_that_does_not_answer_holds_none_of_them(
        sessions: SessionFactory, nodes: tuple[FakeAmiServer, FakeAmiServer],
        tmp_path: Path) -> None:
    one, two = nodes
    settings = cluster(tmp_path, one, two)
    await two.stop()
    await left_open(sessions, "on-one", "on-two")
    bus = CallEventBus()
    published: list[BusEvent] = []

    async def keep(event: BusEvent) -> None:
        published.append(event)

    bus.subscribe(keep)
    placement = LeftOpenPlacement(settings, sessions, bus, "media-1", ["media-2"],
                                  scan_s=0.5)
    mine = await placement.place(await open_calls(sessions))
    assert [c.call_id for c in mine] == ["on-one"] and placement.by_node == {}
    assert [(e.call_id, e.cause) for e in published if isinstance(e, CallEnded)] == [
        ("on-two", "resynchronised")]
