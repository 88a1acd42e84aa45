"""Media server and sessions against a real loopback TCP client playing Asterisk's part."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from crm.telephony.events import CallEventBus
from ivr.ami.client import AmiClient
from ivr.asterisk.call_tracker import ActiveCall, CallTracker, SurveyLeg
from ivr.audiosocket.protocol import (
    Audio,
    AudioSocketParser,
    Dtmf,
    Error,
    Hangup,
    Message,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_hangup,
    encode_uuid,
)
from ivr.audiosocket.server import (
    FLOOD_SLACK,
    READ_CHUNK,
    REAL_TIME_BYTES_PER_SECOND,
    MediaServer,
    MediaServerError,
)
from ivr.audiosocket.session import (
    FRAME_BYTES,
    FRAME_SECONDS,
    MAX_MERGED_AUDIO,
    Closed,
    MediaSession,
    SessionEvent,
)
from ivr.settings import AmiSettings, AudioSocketSettings
from tests.ami_replay import FakeAmiServer

WAIT = 3.0  # upper bound on any wait; tests normally finish far sooner
CALL_A = uuid.UUID("11111111-2222-4333-8444-555555555555")
CALL_B = uuid.UUID("99999999-8888-4777-8666-555555555555")


def tone(frames: int, *, tail: int = 0) -> bytes:
    """Non-silent audio whose frame i is filled with sample value i + 1."""
    body = b"".join(bytes([i % 250 + 1, 0]) * (FRAME_BYTES // 2) for i in range(frames))
    return body + b"\x7f\x00" * (tail // 2)


def is_silence(message: Message) -> bool:
    return isinstance(message, Audio) and not any(message.pcm)


async def wait_idle(server: MediaServer) -> None:
    async with asyncio.timeout(WAIT):
        await server.wait_idle()


class FakeAsterisk:
    """The Asterisk side of one AudioSocket connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.received: list[tuple[float, Message]] = []
        self.eof = asyncio.Event()
        self._changed = asyncio.Event()
        self._parser = AudioSocketParser(expect_uuid_first=False)
        self._task = asyncio.create_task(self._read(reader))

    @classmethod
    async def connect(cls, port: int, call_id: uuid.UUID | None = None) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        if call_id is not None:
            await client.send(encode_uuid(call_id))
        return client

    async def _read(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(4096):
                now = loop.time()
                self.received += [(now, m) for m in self._parser.feed(data)]
                self._changed.set()
        except ConnectionError:
            pass
        finally:
            self.eof.set()
            self._changed.set()

    async def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.writer.write(chunk)
            await self.writer.drain()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not predicate():
                if self.eof.is_set():
                    raise AssertionError(f"connection closed; received {self.messages}")
                self._changed.clear()
                await self._changed.wait()

    async def wait_eof(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.eof.wait()

    @property
    def messages(self) -> list[Message]:
        return [m for _, m in self.received]

    def played(self) -> list[tuple[float, bytes]]:
        return [(t, m.pcm) for t, m in self.received if isinstance(m, Audio) and any(m.pcm)]

    def silence_count(self) -> int:
        return sum(is_silence(m) for m in self.messages)

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        await asyncio.wait({self._task}, timeout=WAIT)
        self._task.cancel()


class Recorder:
    """A call handler that records every event until the session closes."""

    def __init__(self) -> None:
        self.sessions: asyncio.Queue[MediaSession] = asyncio.Queue()
        self.events: dict[uuid.UUID, list[SessionEvent]] = {}
        self.finished: dict[uuid.UUID, asyncio.Event] = {}
        self.calls = 0
        self._changed = asyncio.Event()

    async def __call__(self, session: MediaSession) -> None:
        self.calls += 1
        events = self.events.setdefault(session.call_id, [])
        done = self.finished.setdefault(session.call_id, asyncio.Event())
        await self.sessions.put(session)
        async for event in session:
            events.append(event)
            self._changed.set()
        done.set()

    async def wait_for_event(self, call_id: uuid.UUID, event: SessionEvent) -> None:
        async with asyncio.timeout(WAIT):
            while event not in self.events.get(call_id, []):
                self._changed.clear()
                await self._changed.wait()

    async def session(self) -> MediaSession:
        async with asyncio.timeout(WAIT):
            return await self.sessions.get()

    async def wait_finished(self, call_id: uuid.UUID) -> list[SessionEvent]:
        async with asyncio.timeout(WAIT):
            await self.finished.setdefault(call_id, asyncio.Event()).wait()
        return self.events[call_id]


StartServer = Callable[..., Awaitable[MediaServer]]
Connect = Callable[..., Awaitable[FakeAsterisk]]


@pytest.fixture
async def serve() -> AsyncIterator[StartServer]:
    servers: list[MediaServer] = []

    async def start(handler: Callable[[MediaSession], Awaitable[None]], *,
                    config: dict[str, Any] | None = None, **kw: Any) -> MediaServer:
        """``config``: audiosocket settings, validated as from a config file."""
        settings = AudioSocketSettings(**(config or {})).model_copy(
            update={"host": "127.0.0.1", "port": 0})
        server = MediaServer(settings, handler, **kw)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    clients: list[FakeAsterisk] = []

    async def open_client(server: MediaServer, call_id: uuid.UUID | None = CALL_A) -> FakeAsterisk:
        client = await FakeAsterisk.connect(server.bound_port, call_id)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


# --- inbound ------------------------------------------------------------------------------


async def test_uuid_reaches_the_handler(serve: StartServer, connect: Connect) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    await connect(server, CALL_A)
    session = await recorder.session()
    assert session.call_id == CALL_A
    assert server.active_sessions == (session,)
    assert not session.closed


async def test_dtmf_and_audio_arrive_in_order(serve: StartServer, connect: Connect) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    client = await connect(server, None)
    stream = (
        encode_uuid(CALL_A)
        + encode_audio(b"\x01\x00" * 160)
        + encode_dtmf("1")
        + encode_audio(b"\x02\x00" * 320)  # a different packetisation
        + encode_error(0x02)
        + encode_dtmf("#")
        + encode_hangup()
    )
    for i in range(0, len(stream), 7):  # awkward TCP splits
        await client.send(stream[i : i + 7])
    events = await recorder.wait_finished(CALL_A)
    assert events == [
        Audio(b"\x01\x00" * 160),
        Dtmf("1"),
        Audio(b"\x02\x00" * 320),
        Error(code=2, payload=b"\x02"),
        Dtmf("#"),
        Hangup(),
        Closed("caller hung up"),
    ]
    session = (await recorder.session())
    stats = session.stats
    assert (stats.frames_in, stats.bytes_in, stats.dtmf_in) == (2, 960, 2)
    await client.wait_eof()
    await wait_idle(server)
    assert not server.active_sessions


async def test_next_event_times_out_with_none(serve: StartServer, connect: Connect) -> None:
    results: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def handler(session: MediaSession) -> None:
        results.set_result(await session.next_event(timeout=0.05))

    server = await serve(handler)
    client = await connect(server)
    async with asyncio.timeout(WAIT):
        assert await results is None
    await client.wait_eof()  # the handler returned: the server hung up
    assert isinstance(client.messages[-1], Hangup)


# --- outbound -----------------------------------------------------------------------------


async def test_playback_is_paced_at_20_ms_per_frame(serve: StartServer, connect: Connect) -> None:
    frames = 10
    pcm = tone(frames, tail=100)
    outcome: asyncio.Future[tuple[bool, float]] = asyncio.get_running_loop().create_future()

    async def handler(session: MediaSession) -> None:
        assert await session.next_event(timeout=WAIT) == Dtmf("1")  # the caller asks for it
        loop = asyncio.get_running_loop()
        started = loop.time()
        completed = await session.play(pcm)
        outcome.set_result((completed, loop.time() - started))
        await session.next_event()

    server = await serve(handler)
    client = await connect(server)
    requested_at = asyncio.get_running_loop().time()
    await client.send(encode_dtmf("1"))
    await client.wait_for(lambda: len(client.played()) == frames + 1)
    async with asyncio.timeout(WAIT):
        completed, elapsed = await outcome

    played = client.played()
    assert completed is True
    assert b"".join(p for _, p in played) == pcm
    assert [len(p) for _, p in played] == [FRAME_BYTES] * frames + [100]
    # Lower bounds only: never faster than real time. The first frame cannot leave before
    # it was requested, and the last is due `frames` periods after the first.
    assert elapsed >= frames * FRAME_SECONDS
    assert played[-1][0] - requested_at >= frames * FRAME_SECONDS
    # Not a burst: typical spacing is a frame period (loose, to tolerate a loaded machine).
    gaps = sorted(b[0] - a[0] for a, b in itertools.pairwise(played))
    assert gaps[len(gaps) // 2] >= FRAME_SECONDS / 2
    stats = server.active_sessions[0].stats
    assert stats.frames_out >= frames + 1
    assert stats.bytes_out >= len(pcm)


async def test_dtmf_barges_in_on_playback(serve: StartServer, connect: Connect) -> None:
    long_prompt = tone(250)  # 5 s
    outcome: asyncio.Future[tuple[bool, SessionEvent | None]] = (
        asyncio.get_running_loop().create_future()
    )

    async def handler(session: MediaSession) -> None:
        completed = await session.play(long_prompt)
        outcome.set_result((completed, await session.next_event(timeout=WAIT)))
        await session.next_event()

    server = await serve(handler)
    client = await connect(server)
    await client.wait_for(lambda: len(client.played()) >= 3)
    await client.send(encode_dtmf("2"))
    async with asyncio.timeout(WAIT):
        completed, event = await outcome
    assert completed is False
    assert event == Dtmf("2")  # the key press is still there for the call flow
    played_at_stop = len(client.played())
    silence_at_stop = client.silence_count()
    await client.wait_for(lambda: client.silence_count() >= silence_at_stop + 3)
    assert len(client.played()) == played_at_stop < 250


async def test_stop_playback_cancels_current_prompt(serve: StartServer, connect: Connect) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    client = await connect(server)
    session = await recorder.session()
    playback = asyncio.create_task(session.play(tone(250)))
    await client.wait_for(lambda: len(client.played()) >= 2)
    assert session.playing
    assert session.stop_playback() is True
    async with asyncio.timeout(WAIT):
        assert await playback is False
    assert session.stop_playback() is False  # nothing left to stop
    assert not session.playing


async def test_uninterruptible_playback_ignores_dtmf(serve: StartServer, connect: Connect) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    client = await connect(server)
    session = await recorder.session()
    playback = asyncio.create_task(session.play(tone(8), interruptible=False))
    await client.wait_for(lambda: len(client.played()) >= 1)
    assert session.stop_playback() is False
    await client.send(encode_dtmf("9"))
    async with asyncio.timeout(WAIT):
        assert await playback is True
    assert len(client.played()) == 8
    await recorder.wait_for_event(CALL_A, Dtmf("9"))


async def test_play_argument_and_state_errors(serve: StartServer, connect: Connect) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    client = await connect(server)
    session = await recorder.session()
    with pytest.raises(ValueError, match="16-bit"):
        await session.play(b"\x00" * 3)
    assert await session.play(b"") is True
    first = asyncio.create_task(session.play(tone(50)))
    await client.wait_for(lambda: len(client.played()) >= 1)
    assert session.playing
    with pytest.raises(RuntimeError, match="already in progress"):
        await session.play(tone(1))
    await session.hangup()
    async with asyncio.timeout(WAIT):
        assert await first is False  # hang-up ends the playback
    assert await session.play(tone(1)) is False  # nobody left to hear it


async def test_keepalive_silence_flows_when_idle(serve: StartServer, connect: Connect) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    client = await connect(server)
    await client.wait_for(lambda: client.silence_count() >= 3)
    assert all(len(m.pcm) == FRAME_BYTES for m in client.messages if isinstance(m, Audio))
    session = await recorder.session()
    assert session.stats.silence_frames_out >= 3


async def test_hangup_sends_0x00_and_closes(
    serve: StartServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ivr")
    after: asyncio.Future[SessionEvent | None] = asyncio.get_running_loop().create_future()

    async def handler(session: MediaSession) -> None:
        await session.hangup()
        after.set_result(await session.next_event(timeout=0))

    server = await serve(handler)
    client = await connect(server)
    await client.wait_eof()
    assert client.messages[-1] == Hangup()
    async with asyncio.timeout(WAIT):
        assert await after == Closed("hung up by the IVR")
    await wait_idle(server)
    assert not server.active_sessions
    session_lines = [r.getMessage() for r in caplog.records if r.name == "ivr.audiosocket.session"]
    assert session_lines
    assert all(str(CALL_A) in line for line in session_lines)


# --- failures -----------------------------------------------------------------------------


async def test_malformed_message_closes_only_that_session(
    serve: StartServer, connect: Connect
) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    bad = await connect(server, CALL_A)
    good = await connect(server, CALL_B)
    await bad.send(encode_dtmf("4"), b"\x03\x00\x01x")  # 'x' is not a key
    events = await recorder.wait_finished(CALL_A)
    assert events[0] == Dtmf("4")
    assert isinstance(events[-1], Closed)
    assert "protocol error" in events[-1].reason and "DTMF" in events[-1].reason
    await bad.wait_eof()
    assert bad.messages[-1] == Hangup()  # the dialplan can carry on

    await good.send(encode_dtmf("7"))
    await recorder.wait_for_event(CALL_B, Dtmf("7"))
    assert [s.call_id for s in server.active_sessions] == [CALL_B]


async def test_handler_exception_hangs_up(
    serve: StartServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(session: MediaSession) -> None:
        raise RuntimeError("flow bug")

    server = await serve(handler)
    client = await connect(server)
    await client.wait_eof()
    assert client.messages[-1] == Hangup()
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert str(CALL_A) in failures[0].getMessage()
    assert failures[0].exc_info is not None and "flow bug" in str(failures[0].exc_info[1])
    await wait_idle(server)
    assert server.handler_count == 0 and not server.active_sessions


async def test_peer_close_ends_the_session(serve: StartServer, connect: Connect) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    client = await connect(server)
    await recorder.session()
    await client.close()
    events = await recorder.wait_finished(CALL_A)
    assert len(events) == 1 and isinstance(events[0], Closed)
    assert events[0].reason.startswith("peer closed the connection")
    await wait_idle(server)
    assert server.connection_count == 0 and not server.active_sessions


@pytest.mark.timeout(20)  # a spinning accept path would starve the loop, not just fail
async def test_early_close_does_not_spin_or_leak(serve: StartServer, connect: Connect) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    partial_uuid = encode_uuid(CALL_A)[:9]
    for i in range(20):
        client = await connect(server, None)
        if i % 2:
            await client.send(partial_uuid)
        await client.close()
    await wait_idle(server)
    assert server.connection_count == 0
    assert server.active_sessions == ()
    assert recorder.calls == 0


async def test_silent_client_is_dropped_after_the_uuid_timeout(
    serve: StartServer, connect: Connect
) -> None:
    recorder = Recorder()
    server = await serve(recorder, first_message_timeout=0.1)
    client = await connect(server, None)
    await client.wait_eof()
    assert client.messages == [Hangup()]
    await wait_idle(server)
    assert server.connection_count == 0
    assert recorder.calls == 0
    assert server.refusals["no_call_id"] == 1


async def test_first_message_must_be_the_uuid(serve: StartServer, connect: Connect) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    client = await connect(server, None)
    await client.send(encode_audio(bytes(FRAME_BYTES)))
    await client.wait_eof()
    assert client.messages == [Hangup()]
    await wait_idle(server)
    assert server.connection_count == 0
    assert recorder.calls == 0


async def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MediaServer(AudioSocketSettings(host="127.0.0.1", port=port), Recorder())
        with pytest.raises(MediaServerError, match=f"127.0.0.1:{port} is already in use"):
            await server.start()
    with pytest.raises(RuntimeError):
        _ = server.bound_port


async def test_close_hangs_up_calls_and_bounds_stuck_handlers(connect: Connect) -> None:
    cancelled = asyncio.Event()
    entered = asyncio.Event()

    async def stuck(session: MediaSession) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()  # ignores its session entirely
        except asyncio.CancelledError:
            cancelled.set()
            raise

    settings = AudioSocketSettings.model_construct(host="127.0.0.1", port=0)
    server = MediaServer(settings, stuck, shutdown_timeout=0.2)
    async with server:
        client = await connect(server)
        async with asyncio.timeout(WAIT):
            await entered.wait()
    await client.wait_eof()
    assert client.messages[-1] == Hangup()
    assert cancelled.is_set()
    assert server.handler_count == 0 and server.connection_count == 0


async def test_close_lets_handlers_see_closed(serve: StartServer, connect: Connect) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    await connect(server)
    await recorder.session()
    await server.close()
    assert recorder.events[CALL_A] == [Closed("media server shutting down")]


async def test_unread_inbound_events_are_bounded() -> None:
    async def ignore(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    listener = await asyncio.start_server(ignore, "127.0.0.1", 0)
    async with listener:
        _, writer = await asyncio.open_connection(*listener.sockets[0].getsockname()[:2])
        session = MediaSession(CALL_A, writer, keepalive=False, max_pending_events=3)
        for i in range(5):
            session.deliver(Audio(bytes([i, 0])))
        assert session.stats.events_dropped == 2
        assert await session.next_event(0) == Audio(bytes([2, 0, 3, 0, 4, 0]))  # the newest
        assert await session.next_event(0) is None
        await session.hangup("test over")
        assert await session.next_event() == Closed("test over")


async def test_calls_beyond_max_calls_go_back_to_the_dialplan(
    serve: StartServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    settings = AudioSocketSettings.model_construct(host="127.0.0.1", port=0, max_calls=1)
    overflowed: list[uuid.UUID] = []
    told = asyncio.Event()

    async def on_overflow(call_id: uuid.UUID) -> None:
        overflowed.append(call_id)
        told.set()
    server = MediaServer(settings, recorder, on_overflow=on_overflow)
    await server.start()
    try:
        first = await connect(server, CALL_A)
        await recorder.session()
        second = await connect(server, CALL_B)
        await second.wait_eof()  # handed back at once: the dialplan queues the caller
        assert second.messages == [Hangup()]
        assert server.refused_overload == 1 and recorder.calls == 1
        await asyncio.wait_for(told.wait(), WAIT)
        assert overflowed == [CALL_B]
        assert "audiosocket.max_calls" in caplog.text

        await first.send(encode_hangup())  # the first call ends: room for the next one
        await recorder.wait_finished(CALL_A)
        await wait_idle(server)
        assert not server.active_sessions
        third = await connect(server, CALL_B)
        session = await recorder.session()
        assert session.call_id == CALL_B and not third.eof.is_set()
    finally:
        await server.close()


def test_the_call_limit_defaults_to_the_cores_and_zero_lifts_it() -> None:
    assert AudioSocketSettings().call_limit() == 40 * (os.cpu_count() or 1)
    assert AudioSocketSettings(max_calls=0).call_limit() is None
    assert AudioSocketSettings(max_calls=25).call_limit() == 25
    with pytest.raises(ValueError):
        AudioSocketSettings(max_calls=-1)


# --- the trust boundary: who may connect, with which call id, and how much ------------------


class WatchedTracker(CallTracker):
    """The real call tracker; tells the test when the media server starts waiting for AMI."""

    def __init__(self, ami: AmiClient, bus: CallEventBus) -> None:
        super().__init__(ami, bus)
        self.waiting: dict[str, asyncio.Event] = {}

    async def wait_for_session(self, session_id: str,
                               timeout: float) -> ActiveCall | SurveyLeg | None:
        self.waiting.setdefault(session_id, asyncio.Event()).set()
        return await super().wait_for_session(session_id, timeout)

    async def until_waiting(self, call_id: uuid.UUID) -> None:
        async with asyncio.timeout(WAIT):
            await self.waiting.setdefault(str(call_id), asyncio.Event()).wait()


class Announcer:
    """Asterisk's AMI side: announces calls to a real call tracker over a real AMI link."""

    def __init__(self, ami: FakeAmiServer, tracker: WatchedTracker, bus: CallEventBus) -> None:
        self.ami = ami
        self.tracker = tracker
        self._changed = asyncio.Event()
        bus.subscribe(self._on_call_event)

    async def _on_call_event(self, event: object) -> None:
        self._changed.set()

    async def _until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def start_call(self, call_id: uuid.UUID) -> None:
        await self.ami.send_event("UserEvent", {
            "Channel": "PJSIP/pstn-gateway-00000001", "CallerIDNum": "13800138000",
            "CallerIDName": "张三", "Uniqueid": "1700.1", "Linkedid": "1700.1",
            "UserEvent": "HotlineCallStart", "CallId": str(call_id)})
        await self._until(lambda: self.tracker.session_of(str(call_id)) is not None)

    async def end_call(self, call_id: uuid.UUID) -> None:
        await self.ami.send_event("UserEvent", {
            "Channel": "PJSIP/pstn-gateway-00000001", "UserEvent": "HotlineCallEnd",
            "CallId": str(call_id), "Route": "end", "Cause": "16"})
        await self._until(lambda: self.tracker.session_of(str(call_id)) is None)


@pytest.fixture
async def announcer() -> AsyncIterator[Announcer]:
    async with FakeAmiServer() as ami_server:
        ami = AmiClient(AmiSettings(port=ami_server.port, secret="secret"))
        bus = CallEventBus()
        tracker = WatchedTracker(ami, bus)
        announcer = Announcer(ami_server, tracker, bus)
        await ami.start()
        try:
            await ami.wait_ready(WAIT)
            yield announcer
        finally:
            await ami.close()


async def test_a_second_connection_with_a_live_call_id_is_closed_and_the_call_goes_on(
    serve: StartServer, connect: Connect, announcer: Announcer, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    server = await serve(recorder, announcements=announcer.tracker,
                         config={"announce_timeout": 0.2})
    await announcer.start_call(CALL_A)
    honest = await connect(server, CALL_A)
    session = await recorder.session()
    await honest.wait_for(lambda: honest.silence_count() >= 2)

    intruder = await connect(server, CALL_A)
    await intruder.wait_eof()
    assert intruder.messages == [Hangup()]  # not one frame of the call's audio
    assert server.refusals["id_in_use"] == 1
    refusal = next(r.getMessage() for r in caplog.records if "id_in_use" in r.getMessage())
    assert str(CALL_A) in refusal and "127.0.0.1:" in refusal

    # The live call is untouched: its audio still flows both ways, then it ends normally.
    assert not session.closed and server.active_sessions == (session,)
    heard = honest.silence_count()
    await honest.send(encode_audio(b"\x01\x00" * 160), encode_dtmf("3"))
    await recorder.wait_for_event(CALL_A, Dtmf("3"))
    await honest.wait_for(lambda: honest.silence_count() >= heard + 5)
    await honest.send(encode_hangup())
    events = await recorder.wait_finished(CALL_A)
    assert events == [Audio(b"\x01\x00" * 160), Dtmf("3"), Hangup(), Closed("caller hung up")]
    assert recorder.calls == 1

    # An id is served once: while AMI still announces the call, its id stays taken ...
    again = await connect(server, CALL_A)
    await again.wait_eof()
    assert again.messages == [Hangup()] and server.refusals["id_in_use"] == 2
    # ... and once the call is over the id is no call at all.
    await announcer.end_call(CALL_A)
    late = await connect(server, CALL_A)
    await late.wait_eof()
    assert late.messages == [Hangup()] and server.refusals["unannounced"] == 1
    assert recorder.calls == 1


async def test_an_unannounced_call_id_is_closed_and_a_late_announcement_is_served(
    serve: StartServer, connect: Connect, announcer: Announcer, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    server = await serve(recorder, announcements=announcer.tracker,
                         config={"announce_timeout": 0.3})
    stranger = await connect(server, CALL_B)
    await stranger.wait_eof()
    assert stranger.messages == [Hangup()]  # the dialplan would carry on to the queue
    assert recorder.calls == 0
    assert server.refusals["unannounced"] == 1
    assert any("unannounced" in r.getMessage() and str(CALL_B) in r.getMessage()
               for r in caplog.records)

    # AMI's announcement may come a moment after the socket: the connection waits for it.
    server_late = await serve(recorder, announcements=announcer.tracker,
                              config={"announce_timeout": WAIT})
    caller = await connect(server_late, CALL_A)
    await announcer.tracker.until_waiting(CALL_A)
    assert recorder.calls == 0
    await announcer.start_call(CALL_A)
    session = await recorder.session()
    assert session.call_id == CALL_A and not caller.eof.is_set()
    assert server_late.refusals == dict.fromkeys(server_late.refusals, 0)


@pytest.mark.timeout(120)
async def test_500_idle_connections_are_bounded_and_an_honest_call_is_served(
    serve: StartServer, connect: Connect
) -> None:
    recorder = Recorder()
    # A long first-frame deadline: the bound alone must keep the idle connections in check.
    server = await serve(recorder, first_message_timeout=600)
    limit = AudioSocketSettings().max_pending
    idle = [await connect(server, None) for _ in range(500)]
    # The oldest are closed to make room for the newest: exactly 500 - limit of them.
    async with asyncio.timeout(60):
        await asyncio.gather(*(client.eof.wait() for client in idle[:-limit]))
    assert not any(client.eof.is_set() for client in idle[-limit:])
    assert server.pending_count == limit
    assert server.refusals["pending_limit"] == 500 - limit
    assert server.connection_count == limit and recorder.calls == 0

    honest = await connect(server, CALL_A)
    session = await recorder.session()
    assert session.call_id == CALL_A
    await idle[-limit].wait_eof()  # the oldest idle one made room for it
    assert server.refusals["pending_limit"] == 500 - limit + 1
    assert server.pending_count == limit - 1
    await honest.send(encode_dtmf("1"))
    await recorder.wait_for_event(CALL_A, Dtmf("1"))
    await honest.wait_for(lambda: honest.silence_count() >= 2)


async def test_a_flooding_session_is_closed_and_other_calls_go_on(
    serve: StartServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    server = await serve(recorder)
    burst = AudioSocketSettings().max_burst_bytes
    calm = await connect(server, CALL_B)
    calm_session = await recorder.session()
    flood = await connect(server, CALL_A)
    flood_session = await recorder.session()

    loop = asyncio.get_running_loop()
    started = loop.time()
    chunk = encode_audio(bytes(FRAME_BYTES)) * 100  # 2 s of audio per write
    sent = 0
    with contextlib.suppress(ConnectionError):
        for _ in range(200):  # up to 400 s of audio, as fast as TCP takes it
            if flood.eof.is_set():
                break
            await flood.send(chunk)
            sent += len(chunk)
    events = await recorder.wait_finished(CALL_A)
    elapsed = loop.time() - started
    assert events[-1] == Closed("peer sent faster than real time")
    assert server.refusals["flood"] == 1
    assert any("flood" in r.getMessage() and str(CALL_A) in r.getMessage()
               for r in caplog.records)
    # What the flooder got in stays bounded: the burst (twice, after a pause) plus real time.
    allowed = 2 * burst + READ_CHUNK + REAL_TIME_BYTES_PER_SECOND * FLOOD_SLACK * elapsed
    assert flood_session.stats.bytes_in <= allowed < sent + 1
    await flood.wait_eof()

    # The other call did not notice.
    assert not calm_session.closed and server.active_sessions == (calm_session,)
    heard = calm.silence_count()
    await calm.send(encode_dtmf("5"))
    await recorder.wait_for_event(CALL_B, Dtmf("5"))
    await calm.wait_for(lambda: calm.silence_count() >= heard + 5)


async def open_from(address: str, port: int) -> FakeAsterisk:
    """A client whose connection comes from ``address`` (any 127.x.y.z is this host)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((address, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    return FakeAsterisk(reader, writer)


async def test_a_peer_outside_allowed_peers_is_closed_at_once(
    serve: StartServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    server = await serve(recorder, config={"allowed_peers": ["127.0.0.1"]})
    outsider = await open_from("127.0.0.2", server.bound_port)
    try:
        with contextlib.suppress(ConnectionError):
            await outsider.send(encode_uuid(CALL_A), encode_dtmf("1"))
        await outsider.wait_eof()
        assert outsider.messages == []  # nothing at all was sent to it
    finally:
        await outsider.close()
    assert server.refusals["peer_not_allowed"] == 1
    assert recorder.calls == 0
    refusal = next(r.getMessage() for r in caplog.records
                   if "peer_not_allowed" in r.getMessage())
    assert "127.0.0.2:" in refusal

    await connect(server, CALL_B)  # Asterisk, from 127.0.0.1, is served
    assert (await recorder.session()).call_id == CALL_B

    # A network admits every address in it.
    wide = await serve(recorder, config={"allowed_peers": ["127.0.0.0/8"]})
    neighbour = await open_from("127.0.0.2", wide.bound_port)
    try:
        await neighbour.send(encode_uuid(CALL_A))
        assert (await recorder.session()).call_id == CALL_A
    finally:
        await neighbour.close()


def test_allowed_peers_must_be_addresses_or_networks() -> None:
    assert AudioSocketSettings().allowed_peers == ["127.0.0.1", "::1"]
    settings = AudioSocketSettings(allowed_peers=[" 10.0.0.0/24 ", "192.0.2.7"])
    assert settings.allowed_peers == ["10.0.0.0/24", "192.0.2.7"]
    with pytest.raises(ValueError, match=r"'asterisk\.local' is not an IP address"):
        AudioSocketSettings(allowed_peers=["asterisk.local"])


async def test_unread_inbound_audio_is_bounded_in_bytes() -> None:
    async def ignore(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    listener = await asyncio.start_server(ignore, "127.0.0.1", 0)
    async with listener:
        _, writer = await asyncio.open_connection(*listener.sockets[0].getsockname()[:2])
        session = MediaSession(CALL_A, writer, keepalive=False, max_pending_bytes=1000)
        for i in range(5):
            session.deliver(Audio(bytes([i, 0]) * 160))  # 320 bytes each
        session.deliver(Dtmf("1"))
        assert session.pending_bytes == 960 and session.stats.events_dropped == 2
        assert [await session.next_event(0) for _ in range(2)] == [
            Audio(b"".join(bytes([i, 0]) * 160 for i in (2, 3, 4))), Dtmf("1")]
        assert session.pending_bytes == 0
        await session.hangup("test over")


async def idle_session(**options: Any) -> tuple[MediaSession, asyncio.Server]:
    """A session whose peer reads (and discards) what it is sent until we close."""
    async def drain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    listener = await asyncio.start_server(drain, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection(*listener.sockets[0].getsockname()[:2])
    return MediaSession(CALL_A, writer, keepalive=False, **options), listener


async def test_frames_that_piled_up_come_as_one_event_in_order_with_keys() -> None:
    """A reader that fell behind gets the audio queued since it last looked in one event
    (one recognizer step, not one per 20 ms), never merged across a key press."""
    session, listener = await idle_session()
    async with listener:
        frames = [bytes([i, 0]) * 160 for i in range(6)]
        for pcm in frames[:3]:
            session.deliver(Audio(pcm))
        session.deliver(Dtmf("5"))
        for pcm in frames[3:]:
            session.deliver(Audio(pcm))
        assert [await session.next_event(0) for _ in range(3)] == [
            Audio(b"".join(frames[:3])), Dtmf("5"), Audio(b"".join(frames[3:]))]
        assert await session.next_event(0) is None
        await session.hangup("test over")


async def test_a_merged_audio_event_is_at_most_half_a_second() -> None:
    session, listener = await idle_session()
    async with listener:
        second = 2 * MAX_MERGED_AUDIO // FRAME_BYTES
        for i in range(second):
            session.deliver(Audio(bytes([i % 256, 0]) * (FRAME_BYTES // 2)))
        first, rest = await session.next_event(0), await session.next_event(0)
        assert isinstance(first, Audio) and isinstance(rest, Audio)
        assert len(first.pcm) == MAX_MERGED_AUDIO
        assert len(first.pcm) + len(rest.pcm) == second * FRAME_BYTES
        await session.hangup("test over")


async def test_audio_nobody_listens_to_is_dropped_but_keys_are_kept() -> None:
    session, listener = await idle_session()
    async with listener:
        session.audio_wanted = False
        for _ in range(50):
            session.deliver(Audio(bytes(FRAME_BYTES)))
        session.deliver(Dtmf("1"))
        assert session.pending_bytes == 0
        assert session.stats.audio_ignored == 50 and session.stats.frames_in == 50
        assert await session.next_event(0) == Dtmf("1")
        session.audio_wanted = True
        session.deliver(Audio(bytes(FRAME_BYTES)))
        assert await session.next_event(0) == Audio(bytes(FRAME_BYTES))
        await session.hangup("test over")


async def test_one_clock_paces_every_session_of_the_loop() -> None:
    """Outbound audio of all calls is paced by one timer, not a task per call."""
    first, listener_a = await idle_session()
    second, listener_b = await idle_session()
    async with listener_a, listener_b:
        first.start()
        second.start()
        clocks = [t for t in asyncio.all_tasks() if t.get_name() == "audiosocket-media-clock"]
        assert len(clocks) == 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(WAIT):
            played = await asyncio.gather(first.play(tone(10)), second.play(tone(5)))
        assert played == [True, True]
        assert loop.time() - started >= 10 * FRAME_SECONDS
        assert first.stats.frames_out >= 10 and second.stats.frames_out >= 5
        await first.hangup("test over")
        await second.hangup("test over")
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*clocks)  # no session left: the clock stops
