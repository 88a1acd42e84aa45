"""Issue 14, the media socket, against the real stack: a raw TCP client that reuses the
CALL_ID of a live SIPp call into the real Asterisk is refused, and the honest call goes on
through its IVR to the agent queue with its consultation recorded as usual. A stranger's id
and a stranger's address get nothing either."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid

import pytest

from crm.consultations.recorder import list_consultations
from crm.telephony.events import CallEnded, CallEvent, CallStarted, CallStep
from hotline.service import HotlineService
from hotline.tools.sipp import place_call
from ivr.audiosocket.protocol import AudioSocketParser, Hangup, Message, encode_uuid
from tests.integration.service_fixtures import CallWatcher

pytestmark = pytest.mark.asterisk

CALLER = "13900139000"


async def raw_client(service: HotlineService, call_id: uuid.UUID, *,
                     source: str = "127.0.0.1", within: float = 10.0) -> list[Message]:
    """Connect to the service's AudioSocket port from ``source`` as if we were Asterisk, send
    ``call_id`` and return every message received until the server closes the connection."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(
        sock, (service.settings.audiosocket.host, service.media.bound_port))
    reader, writer = await asyncio.open_connection(sock=sock)
    parser = AudioSocketParser(expect_uuid_first=False)
    received: list[Message] = []
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(encode_uuid(call_id))
            await writer.drain()
        try:
            async with asyncio.timeout(within):
                with contextlib.suppress(ConnectionError):
                    while data := await reader.read(4096):
                        received += parser.feed(data)
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open for {within} s and "
                                 f"sent {len(received)} messages") from None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return received


def of_call(call_id: str, kind: str):  # type: ignore[no-untyped-def]
    def match(event: CallEvent) -> bool:
        return isinstance(event, CallStep) and event.call_id == call_id and event.kind == kind
    return match


async def test_a_raw_client_reusing_a_live_call_id_is_refused_and_the_call_completes(
        hotline: HotlineService, watcher: CallWatcher) -> None:
    joined = asyncio.Event()
    hotline.ami.subscribe("QueueCallerJoin", lambda _: joined.set())
    # '#' at the greeting (no case number) = an agent; the key comes 3 s after the answer,
    # during the greeting, so the intruder connects while the caller is still in the IVR.
    call = asyncio.create_task(place_call(
        hotline.settings, caller_number=CALLER, caller_name="李秀英", keys="#",
        pause_before_keys_ms=3000, hold_ms=30000))
    try:
        started = await watcher.wait_for(
            lambda e: isinstance(e, CallStarted) and e.caller_number == CALLER, 20)
        call_id = started.call_id
        await watcher.wait_for(of_call(call_id, "ivr_connected"), 20)
        [live] = [s for s in hotline.media.active_sessions if str(s.call_id) == call_id]

        received = await raw_client(hotline, uuid.UUID(call_id))
        assert received == [Hangup()]  # not one frame of the caller's IVR
        assert hotline.health().audiosocket_refused["id_in_use"] == 1
        assert not live.closed, "the live call was disturbed"
        assert live in hotline.media.active_sessions

        # The honest caller's keys still drive its IVR: it asks for an agent and is queued.
        await watcher.wait_for(of_call(call_id, "keys"), 20)
        await asyncio.wait_for(joined.wait(), 20)
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
    ended = await watcher.wait_for(
        lambda e: isinstance(e, CallEnded) and e.call_id == call_id, 20)
    assert isinstance(ended, CallEnded) and ended.route == "agent"
    await hotline.recorder.drain()
    [consultation] = [c for c in await list_consultations(hotline.sessions, limit=100)
                      if c.call_id == call_id]
    assert (consultation.caller_number, consultation.caller_name) == (CALLER, "李秀英")
    assert consultation.ended_at is not None
    kinds = [s["kind"] for s in consultation.steps]
    assert kinds.count("ivr_connected") == 1  # the intruder never became a second IVR leg
    assert "keys" in kinds
    health = hotline.health()
    assert health.calls_refused_overload == 0
    assert {k: v for k, v in health.audiosocket_refused.items() if v} == {"id_in_use": 1}


async def test_a_stranger_id_or_address_gets_nothing(hotline: HotlineService) -> None:
    """An id AMI never announced is closed once ``announce_timeout`` has passed, and a
    connection from outside ``audiosocket.allowed_peers`` (default loopback 127.0.0.1, ::1)
    is closed at once; neither reaches the IVR."""
    assert await raw_client(hotline, uuid.uuid4()) == [Hangup()]
    assert await raw_client(hotline, uuid.uuid4(), source="127.0.0.2") == []
    refused = hotline.health().audiosocket_refused
    assert (refused["unannounced"], refused["peer_not_allowed"]) == (1, 1)
    assert hotline.media.handler_count == 0 and not hotline.media.active_sessions
