"""The call tracker against a recorded-style AMI server: user events become call events, and
after a reconnect the tracker resynchronises from CoreShowChannels."""

from __future__ import annotations

import asyncio

from crm.telephony.events import CallEnded, CallEventBus, CallStarted
from ivr.ami.client import AmiClient
from ivr.asterisk.bus_calls import BusCallDirectory
from ivr.asterisk.call_tracker import CallTracker, node_lookup
from ivr.settings import AmiSettings
from tests.ami_replay import FakeAmiServer, format_message


class Collected:
    def __init__(self) -> None:
        self.events: list = []
        self.changed = asyncio.Event()

    async def __call__(self, event) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait(self, count: int) -> list:
        async with asyncio.timeout(5):
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.events


def caller_channel(call_id: str, number: str, name: str) -> dict[str, str]:
    return {"Channel": "PJSIP/pstn-gateway-00000007", "CallerIDNum": number,
            "CallerIDName": name, "Uniqueid": "1700.7", "Linkedid": "1700.7",
            "Duration": "00:01:05", "ChanVariable": f"CALL_ID={call_id}"}


async def test_user_events_then_resynchronisation_after_reconnect() -> None:
    async with FakeAmiServer() as server:
        settings = AmiSettings(port=server.port, secret="secret", ping_interval=0.2,
                               ping_timeout=0.5, reconnect_min=0.05, reconnect_max=0.1)
        ami = AmiClient(settings)
        bus = CallEventBus()
        seen = Collected()
        bus.subscribe(seen)
        tracker = CallTracker(ami, bus)
        await ami.start()
        try:
            await ami.wait_ready(5)
            await server.send_event("UserEvent", {
                "Channel": "PJSIP/pstn-gateway-00000001", "CallerIDNum": "13800138000",
                "CallerIDName": "张三", "UserEvent": "HotlineCallStart", "CallId": "a-1"})
            [started] = await seen.wait(1)
            assert isinstance(started, CallStarted) and started.caller_name == "张三"

            # While AMI is down, call a-1 ends and call b-2 starts: both events are lost.
            server.channels = [caller_channel("b-2", "13900139000", "李秀英")]
            server.drop_connections()
            events = await seen.wait(3)
        finally:
            await ami.close()
    ended = [e for e in events if isinstance(e, CallEnded)]
    assert [(e.call_id, e.cause) for e in ended] == [("a-1", "resynchronised")]
    found = [e for e in events[1:] if isinstance(e, CallStarted)]
    assert [(e.call_id, e.caller_name) for e in found] == [("b-2", "李秀英")]
    assert set(tracker.active_calls) == {"b-2"}


async def test_identity_comes_from_the_channel_snapshot_not_from_user_fields() -> None:
    """A UserEvent as the old dialplan sent it for a caller from 13900139000 whose display
    name was ``x,CallerNum: 13800138000,CallerIDNum: 13800138000``: every field after the
    snapshot is caller-controlled, and none of them may become the caller's identity."""
    forged = format_message([
        ("Event", "UserEvent"), ("Privilege", "user,all"),
        ("Channel", "PJSIP/pstn-gateway-00000002"), ("CallerIDNum", "13900139000"),
        ("CallerIDName", "x,CallerNum: 13800138000,CallerIDNum: 13800138000"),
        ("Uniqueid", "1700.2"), ("Linkedid", "1700.2"),
        ("UserEvent", "HotlineCallStart"), ("CallId", "c-3"), ("CallerNum", "13800138000"),
        ("CallerIDNum", "13800138000"), ("CallerIDName", "张三"),
        ("Channel", "PJSIP/forged-1"),
    ])
    async with FakeAmiServer() as server:
        ami = AmiClient(AmiSettings(port=server.port, secret="secret"))
        bus = CallEventBus()
        seen = Collected()
        bus.subscribe(seen)
        tracker = CallTracker(ami, bus)
        await ami.start()
        try:
            await ami.wait_ready(5)
            await server.send(forged)
            [started] = await seen.wait(1)
        finally:
            await ami.close()
    assert isinstance(started, CallStarted)
    assert started.caller_number == "13900139000"
    assert started.caller_name == "x,CallerNum: 13800138000,CallerIDNum: 13800138000"
    assert started.channel == "PJSIP/pstn-gateway-00000002"
    assert tracker.active_calls["c-3"].caller_number == "13900139000"


async def test_calls_that_ended_while_ami_was_down_end_as_asterisk_recorded() -> None:
    """Two calls open when the link comes (back): the one Asterisk's record shows ended
    (tests/data/asterisk/cel_calls.jsonl) ends at its recorded time, by the recorded party,
    marked reconciled; the one it does not know is closed as "resynchronised"."""
    from datetime import timedelta

    from crm.telephony.events import CallStep
    from crm.telephony.steps import CallReconciled
    from ivr.asterisk.call_records import CallRecordReader
    from ivr.asterisk.call_tracker import ActiveCall
    from tests.unit.test_call_records import ANSWERED, SAMPLE, at

    async with FakeAmiServer() as server:
        ami = AmiClient(AmiSettings(port=server.port, secret="secret"))
        bus = CallEventBus()
        seen = Collected()
        bus.subscribe(seen)
        tracker = CallTracker(ami, bus, records=CallRecordReader(
            SAMPLE, look_back=timedelta(days=36500)))
        tracker.adopt([ActiveCall(ANSWERED, "PJSIP/pstn-gateway-00000000", None, None),
                       ActiveCall("unknown-1", None, None, None)])
        await ami.start()
        try:
            await ami.wait_ready(5)
            events = await seen.wait(3)
        finally:
            await ami.close()
    ends = {e.call_id: e for e in events if isinstance(e, CallEnded)}
    recorded = ends[ANSWERED]
    assert (recorded.at, recorded.party, recorded.cause, recorded.route) == (
        at("1796551300.800632"), "agent", "16 Normal Clearing", "fallback")
    [mark] = [e for e in events if isinstance(e, CallStep)]
    assert mark.call_id == ANSWERED and isinstance(mark.step, CallReconciled)
    assert ends["unknown-1"].cause == "resynchronised" and ends["unknown-1"].party is None
    assert tracker.active_calls == {}


async def test_a_node_tracker_names_its_node_on_the_call_end_and_for_the_ivr() -> None:
    """A media node's events carry its SystemName: the call's end names the node, and the
    IVR asks the tracker (or a worker's bus directory) which node a call's steps are on."""
    async with FakeAmiServer() as server:
        settings = AmiSettings(port=server.port, secret="secret", ping_interval=0.2,
                               ping_timeout=0.5, reconnect_min=0.05, reconnect_max=0.1)
        ami = AmiClient(settings)
        bus = CallEventBus()
        seen = Collected()
        bus.subscribe(seen)
        tracker = CallTracker(ami, bus)
        directory = BusCallDirectory(ami)
        bus.subscribe(directory.handle)
        await ami.start()
        try:
            await ami.wait_ready(5)
            for call_id in ("a-1", "b-2"):
                await server.send_event("UserEvent", {
                    "Channel": "PJSIP/edge-00000001", "CallerIDNum": "13800138000",
                    "UserEvent": "HotlineCallStart", "CallId": call_id,
                    "SystemName": "media-2"})
            await seen.wait(2)
            assert tracker.node_of("a-1") == directory.node_of("a-1") == "media-2"
            assert node_lookup(tracker, "leg-x", "a-1")() == "media-2"
            assert node_lookup(directory, "a-1")() == "media-2"
            assert node_lookup(None, "a-1")() is None  # a tracker that names no nodes
            await server.send_event("UserEvent", {
                "Channel": "PJSIP/edge-00000001", "UserEvent": "HotlineCallEnd",
                "CallId": "a-1", "Route": "agent", "SystemName": "media-2"})
            # b-2 ends while AMI is down: the resynchronisation's end names its node too.
            server.channels = []
            server.drop_connections()
            events = await seen.wait(4)
        finally:
            await ami.close()
    ended = {e.call_id: e.node for e in events if isinstance(e, CallEnded)}
    assert ended == {"a-1": "media-2", "b-2": "media-2"}
    assert tracker.node_of("a-1") is None  # over


async def test_one_box_names_no_node() -> None:
    async with FakeAmiServer() as server:
        ami = AmiClient(AmiSettings(port=server.port, secret="secret"))
        bus = CallEventBus()
        seen = Collected()
        bus.subscribe(seen)
        tracker = CallTracker(ami, bus)
        await ami.start()
        try:
            await ami.wait_ready(5)
            await server.send_event("UserEvent", {
                "Channel": "PJSIP/pstn-gateway-00000001", "UserEvent": "HotlineCallStart",
                "CallId": "a-1"})
            [started] = await seen.wait(1)
            assert started.node is None and tracker.node_of("a-1") is None
            assert node_lookup(tracker, "a-1")() is None
        finally:
            await ami.close()
