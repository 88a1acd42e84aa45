"""An IVR worker started mid-call knows the calls announced shortly before it started
(hotline/roles/worker_replay.py): its bus reader starts ``[bus] replay_s`` back, on a real
redis-server. A call announced longer ago than that is not read; one that ended within it
is forgotten again; with ``replay_s`` 0 the worker reads from the stream's end, as before.
(The worker process itself, replay included: tests/cluster/test_worker_health.py.)"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from crm.telephony import wire
from crm.telephony.events import CallEnded, CallStarted, IvrLegAnnounced
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.redis_server import RedisServer
from hotline.bus.stream_entries import redis_client
from hotline.bus.stream_publisher import Outgoing
from hotline.roles.worker_replay import begin_replay, finish_replay
from hotline.settings import Settings
from ivr.ami.client import AmiClient
from ivr.asterisk.bus_calls import BusCallDirectory
from ivr.asterisk.call_tracker import ActiveCall, SurveyLeg
from ivr.settings import AmiSettings

CHANNEL = "PJSIP/pstn-gateway-00000001"
REPLAY_S = 60.0


async def add_old_call(settings: Settings, call_id: str, seconds_ago: float) -> None:
    """A CallStarted entry as the control process would have added it ``seconds_ago``."""
    client = redis_client(settings.bus.redis_url)
    event = CallStarted(call_id, "13900000000", None, CHANNEL)
    past = int((time.time() - seconds_ago) * 1000)
    try:
        await client.xadd(settings.bus.stream, Outgoing(  # type: ignore[arg-type]
            f"old-{call_id}", "CallStarted", call_id, wire.dumps(event)).fields(),
            id=f"{past}-0")
    finally:
        await client.aclose()


async def worker_directory(settings: Settings, journal: Path) -> tuple[BusCallDirectory,
                                                                      RedisStreamBus, int]:
    """As running_ivr starts it: the bus started, its reader set back, the directory
    subscribed, the replay waited for."""
    bus = RedisStreamBus(settings.bus, journal_dir=journal)
    await bus.start()
    calls = BusCallDirectory(AmiClient(AmiSettings(secret="x"), events=False))
    start = begin_replay(bus, settings)
    bus.subscribe(calls.handle)
    return calls, bus, await finish_replay(bus, start)


@pytest.mark.parametrize("replay_s", [REPLAY_S, 0.0])
async def test_a_worker_started_mid_call_knows_the_calls_announced_before_it(
        redis_server: RedisServer, tmp_path: Path, replay_s: float) -> None:
    settings = Settings(bus={"kind": "redis", "redis_url": redis_server.url,
                             "stream": f"test:{uuid.uuid4().hex[:8]}", "read_block_s": 0.2,
                             "replay_s": replay_s})
    await add_old_call(settings, "c-old", seconds_ago=REPLAY_S * 2)  # before the window
    control = RedisStreamBus(settings.bus, journal_dir=tmp_path / "control")
    await control.start()
    try:
        for event in (CallStarted("c-1", "13800138000", "张三", CHANNEL),
                      IvrLegAnnounced("s-1", "survey", "c-1", CHANNEL, "13800138000",
                                      "after_call", "PJSIP/2001"),
                      CallStarted("c-2", "13700000000", None, CHANNEL),
                      CallEnded("c-2", "agent", "16 Normal Clearing")):
            await control.publish(event)
        await control.flushed()  # in the stream before the worker starts

        calls, bus, replayed = await worker_directory(settings, tmp_path / "ivr")
        try:
            if replay_s:
                assert replayed == 4
                assert calls.session_of("c-1") == ActiveCall("c-1", CHANNEL, "13800138000",
                                                             "张三")
                assert calls.session_of("s-1") == SurveyLeg(
                    "s-1", "after_call", "c-1", CHANNEL, "13800138000", "PJSIP/2001", None)
            else:  # from the stream's end: none of it
                assert replayed == 0
                assert calls.session_of("c-1") is None and calls.session_of("s-1") is None
            assert calls.session_of("c-old") is None  # older than replay_s
            assert calls.session_of("c-2") is None  # ended before the worker started
            assert list(calls.active_calls) == (["c-1"] if replay_s else [])

            # And it goes on live: a call announced now is known at once.
            await control.publish(CallStarted("c-3", "13600000000", None, CHANNEL))
            assert await calls.wait_for_call("c-3", timeout=10) is not None
        finally:
            await bus.close()
    finally:
        await control.close()
