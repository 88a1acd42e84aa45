"""An IVR worker (``--role ivr``) learns its calls, survey legs and callback offers from the
bus: the control process's call tracker turns the dialplan's AMI user events into call
events on a real redis-server, and the worker's :class:`BusCallDirectory` answers the IVR's
questions from them; the route goes back over the worker's own AMI link. (AMI is the
recorded-style server of tests/ami_replay.py; the cluster test with real Asterisk is
tests/cluster/test_ivr_workers.py.)"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from crm.telephony.events import CallerQueued, CallStep
from crm.telephony.steps import LanguageChosen
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.redis_server import RedisServer
from hotline.bus.settings import BusSettings
from ivr.ami.client import AmiClient
from ivr.asterisk.bus_calls import BusCallDirectory
from ivr.asterisk.call_tracker import ActiveCall, CallTracker, OfferLeg, SurveyLeg
from ivr.settings import AmiSettings
from tests.ami_replay import FakeAmiServer
from tests.integration.fault_tools import wait_until

CHANNEL = "PJSIP/pstn-gateway-00000001"


async def test_a_worker_knows_calls_and_legs_from_the_bus(redis_server: RedisServer,
                                                          tmp_path: Path) -> None:
    settings = BusSettings(kind="redis", redis_url=redis_server.url,
                           stream=f"test:{uuid.uuid4().hex[:8]}", read_block_s=0.2)
    async with FakeAmiServer() as server:
        # Live in Asterisk: control's resynchronisation after its login keeps the call open.
        server.channels = [{"Channel": CHANNEL, "CallerIDNum": "13800138000",
                            "CallerIDName": "张三", "Uniqueid": "1700.1", "Linkedid": "1700.1",
                            "Duration": "00:00:05", "ChanVariable": "CALL_ID=c-1"}]
        ami = AmiSettings(port=server.port, secret="secret")
        control_bus = RedisStreamBus(settings, journal_dir=tmp_path / "control")
        worker_bus = RedisStreamBus(settings, journal_dir=tmp_path / "ivr")
        control_ami = AmiClient(ami)
        worker_ami = AmiClient(ami, name="hotline-ivr", events=False)
        CallTracker(control_ami, control_bus)
        calls = BusCallDirectory(worker_ami)
        worker_bus.subscribe(calls.handle)
        for part in (control_bus, worker_bus, control_ami, worker_ami):
            await part.start()
        try:
            await control_ami.wait_ready(5)
            await worker_ami.wait_ready(5)
            # The AudioSocket may connect before the call's event has come through the bus.
            waiting = asyncio.create_task(calls.wait_for_call("c-1", timeout=10))
            await server.send_event("UserEvent", {
                "Channel": CHANNEL, "CallerIDNum": "13800138000", "CallerIDName": "张三",
                "UserEvent": "HotlineCallStart", "CallId": "c-1"})
            assert await waiting == ActiveCall("c-1", CHANNEL, "13800138000", "张三")

            await server.send_event("UserEvent", {
                "Channel": CHANNEL, "CallerIDNum": "13800138000",
                "UserEvent": "HotlineSurveyStart", "SurveyCallId": "s-1", "Kind": "after_call",
                "CallId": "c-1", "Member": "PJSIP/2001", "ReturnVisitId": ""})
            await server.send_event("UserEvent", {
                "Channel": CHANNEL, "CallerIDNum": "13800138000",
                "UserEvent": "HotlineCallbackOffer", "OfferCallId": "o-1", "CallId": "c-1",
                "Reason": "max_wait"})
            assert await calls.wait_for_session("s-1", timeout=10) == SurveyLeg(
                "s-1", "after_call", "c-1", CHANNEL, "13800138000", "PJSIP/2001", None)
            assert await calls.wait_for_session("o-1", timeout=10) == OfferLeg(
                "o-1", "c-1", "max_wait", CHANNEL, "13800138000")
            assert calls.take_survey_leg("s-1") is not None
            assert calls.session_of("s-1") is None  # taken: a second socket is refused

            server.variables[CHANNEL] = {}
            await calls.set_route(calls.channel_of("c-1") or "", "agent", "hotline-en", "en")
            assert server.variables[CHANNEL] == {
                "HOTLINE_QUEUE": "hotline-en", "HOTLINE_LANGUAGE": "en", "IVR_ROUTE": "agent"}

            # What a callback offer asks: the caller's language (the IVR's step) and first
            # place in a queue (the queue tracker's event), both from other processes.
            joined = CallerQueued("c-1", "hotline", 1)
            await control_bus.publish(CallStep("c-1", LanguageChosen("en", "key")))
            await control_bus.publish(joined)
            await wait_until(lambda: calls.first_queued("c-1") is not None, 10, "queued")
            assert calls.language_of("c-1") == "en"
            assert calls.first_queued("c-1") == ("hotline", joined.at)

            await server.send_event("UserEvent", {
                "Channel": CHANNEL, "UserEvent": "HotlineCallEnd", "CallId": "c-1",
                "Route": "agent", "Cause": "16"})
            await wait_until(lambda: calls.session_of("c-1") is None, 10, "the call ended")
            assert calls.language_of("c-1") is None and calls.first_queued("c-1") is None
        finally:
            for part in (worker_ami, control_ami):
                await part.close()
            for bus in (worker_bus, control_bus):
                await bus.close(timeout=1.0)


async def test_a_worker_sets_the_route_on_the_node_the_call_is_on(redis_server: RedisServer,
                                                                  tmp_path: Path) -> None:
    """Two media nodes, each with a call on a channel of the same name (each Asterisk counts
    its channels from 0): control's tracker on each node names the node (the events'
    SystemName) in CallStarted, and the worker sets each call's route over its link to that
    node: its ``[ami]`` link for media-1, its node link for media-2."""
    settings = BusSettings(kind="redis", redis_url=redis_server.url,
                           stream=f"test:{uuid.uuid4().hex[:8]}", read_block_s=0.2)
    async with FakeAmiServer() as one, FakeAmiServer() as two:
        for server, node, call_id in ((one, "media-1", "c-1"), (two, "media-2", "c-2")):
            # Live there: control's resynchronisation after its login keeps the call open.
            server.channels = [{"Channel": CHANNEL, "CallerIDNum": "13800138000",
                                "Uniqueid": f"{node}-1700.1", "Linkedid": f"{node}-1700.1",
                                "Duration": "00:00:05", "ChanVariable": f"CALL_ID={call_id}",
                                "SystemName": node}]
        control_bus = RedisStreamBus(settings, journal_dir=tmp_path / "control")
        worker_bus = RedisStreamBus(settings, journal_dir=tmp_path / "ivr")
        control = [AmiClient(AmiSettings(port=s.port, secret="secret")) for s in (one, two)]
        worker = [AmiClient(AmiSettings(port=s.port, secret="secret"), name="hotline-ivr",
                            events=False) for s in (one, two)]
        for ami in control:
            CallTracker(ami, control_bus)
        calls = BusCallDirectory(worker[0], {"media-2": worker[1]})
        worker_bus.subscribe(calls.handle)
        parts = (control_bus, worker_bus, *control, *worker)
        for part in parts:
            await part.start()
        try:
            for ami in (*control, *worker):
                await ami.wait_ready(5)
            for server, node, call_id in ((one, "media-1", "c-1"), (two, "media-2", "c-2")):
                server.variables[CHANNEL] = {}
                await server.send_event("UserEvent", {
                    "Channel": CHANNEL, "CallerIDNum": "13800138000", "SystemName": node,
                    "UserEvent": "HotlineCallStart", "CallId": call_id})
            for call_id, node in (("c-1", "media-1"), ("c-2", "media-2")):
                assert await calls.wait_for_call(call_id, timeout=10) is not None
                assert calls.node_of(call_id) == node
            await calls.set_route(CHANNEL, "agent", "hotline-en", call_id="c-2")
            assert one.variables[CHANNEL] == {}
            assert two.variables[CHANNEL] == {"HOTLINE_QUEUE": "hotline-en",
                                              "IVR_ROUTE": "agent"}
            await calls.set_route(CHANNEL, "end", call_id="c-1")  # [ami]'s own node
            assert one.variables[CHANNEL] == {"IVR_ROUTE": "end"}
            await calls.set_variable(CHANNEL, "CALLBACK_ANSWER", "yes", call_id="c-2")
            assert two.variables[CHANNEL]["CALLBACK_ANSWER"] == "yes"
        finally:
            for ami in (*worker, *control):
                await ami.close()
            for bus in (worker_bus, control_bus):
                await bus.close(timeout=1.0)
