"""One call's AudioSocket media: inbound events for the call flow, paced outbound audio.

The media server creates a ``MediaSession`` per connection, feeds it the messages Asterisk
sends (``deliver``) and hands it to the call handler, which reads events
(``next_event`` / ``async for``) and plays audio (``play``).

Outbound audio is one continuous 20 ms stream per call, paced by one ``MediaClock`` per event
loop for all calls on a monotonic schedule (tick n at t0 + n * 20 ms, so there is no drift):
each tick sends every session the next frame of its current playback or, when nothing is
playing, 20 ms of silence, because app_audiosocket gives up after about 2 s without audio in
either direction. One timer for all calls rather than a task per call: at 80 calls that is
200 wake-ups a second instead of 4000 (a quarter of the calls per 5 ms phase), and the event
loop keeps its time for the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ivr.audiosocket.protocol import (
    Audio,
    Dtmf,
    Error,
    Hangup,
    Message,
    Uuid,
    encode_audio,
    encode_hangup,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
BYTES_PER_SAMPLE = 2
FRAME_SECONDS = 0.020
FRAME_BYTES = int(SAMPLE_RATE * FRAME_SECONDS) * BYTES_PER_SAMPLE
"""Outbound packetisation we choose: 320 bytes = 20 ms of 8 kHz s16le mono."""
SILENCE_FRAME = bytes(FRAME_BYTES)

MAX_SEND_LAG = 0.2
"""If the event loop stalls longer than this, restart the send schedule instead of
bursting the backlog at Asterisk."""
MAX_WRITE_BUFFER = 64 * 1024
"""About 2 s of queued outbound audio: a peer that stops reading is given up."""
DEFAULT_MAX_PENDING_EVENTS = 1000
"""About 20 s of inbound 20 ms frames; beyond it the oldest events are dropped."""
DEFAULT_MAX_PENDING_BYTES = DEFAULT_MAX_PENDING_EVENTS * FRAME_BYTES
"""The same 20 s counted in audio bytes, so large frames cannot hold more."""
CLOSE_TIMEOUT = 2.0
MAX_MERGED_AUDIO = SAMPLE_RATE * BYTES_PER_SAMPLE // 2
"""``next_event`` hands the reader the audio frames that piled up since it last looked as one
event, up to half a second: a reader that fell behind (a recognizer waiting for its turn on
the thread pool) catches up in one step instead of one round trip per 20 ms frame."""


class CallLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the call id and adds ``call_id`` to the record."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        call_id = self.extra["call_id"] if self.extra else "?"
        kwargs["extra"] = {**(kwargs.get("extra") or {}), "call_id": call_id}
        return f"[call {call_id}] {msg}", kwargs


def call_logger(base: logging.Logger, call_id: uuid.UUID | str) -> CallLogAdapter:
    return CallLogAdapter(base, {"call_id": str(call_id)})


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over (peer hung up or closed, protocol error, or we hung up)."""

    reason: str


SessionEvent = Audio | Dtmf | Hangup | Error | Closed


@dataclass(slots=True)
class MediaStats:
    frames_in: int = 0
    bytes_in: int = 0
    dtmf_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    silence_frames_out: int = 0
    events_dropped: int = 0
    schedule_resets: int = 0
    audio_ignored: int = 0
    """Inbound frames dropped at once because nothing was listening (``audio_wanted``)."""


@dataclass(slots=True)
class _Playback:
    frames: deque[bytes]
    interruptible: bool
    stop_on_keys: bool
    done: asyncio.Future[bool]

    def finish(self, completed: bool) -> None:
        self.frames.clear()
        if not self.done.done():
            self.done.set_result(completed)


CLOCK_PHASES = 4
"""The clock ticks every 20 / 4 = 5 ms and serves a quarter of the sessions each time: every
session still gets a frame every 20 ms, and Asterisk's AudioSocket threads are woken a
quarter at a time instead of all at once."""


class MediaClock:
    """The 20 ms tick of every session on one event loop (``MediaClock.of(loop)``)."""

    _clocks: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MediaClock]] = (
        weakref.WeakKeyDictionary())

    def __init__(self) -> None:
        self._phases: list[dict[MediaSession, None]] = [{} for _ in range(CLOCK_PHASES)]
        """Sessions by the phase of the 20 ms period they are served in (insertion-ordered
        sets); a new session joins the emptiest phase."""
        self._task: asyncio.Task[None] | None = None
        self.resets = 0

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> MediaClock:
        clock = cls._clocks.get(loop)
        if clock is None:
            clock = cls._clocks[loop] = cls()
        return clock

    def add(self, session: MediaSession) -> None:
        min(self._phases, key=len)[session] = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="audiosocket-media-clock")

    def discard(self, session: MediaSession) -> None:
        for phase in self._phases:
            phase.pop(session, None)

    def __len__(self) -> int:
        return sum(len(phase) for phase in self._phases)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        step = FRAME_SECONDS / CLOCK_PHASES
        start, n = loop.time(), 0
        while len(self):
            for session in list(self._phases[n % CLOCK_PHASES]):
                try:
                    session._send_tick()
                except Exception:  # one broken session must not stop the others' audio
                    log.exception("media clock: sending to %r failed", session)
                    session.terminate("sending audio failed", send_hangup=False)
            n += 1
            due = start + n * step
            now = loop.time()
            if now - due > MAX_SEND_LAG:
                self.resets += 1
                for phase in self._phases:
                    for session in phase:
                        session._stats.schedule_resets += 1
                log.debug("media clock fell %.0f ms behind; restarting schedule",
                          1e3 * (now - due))
                start, n, due = now, 0, now
            await asyncio.sleep(max(0.0, due - now))


class MediaSession:
    """Per-call media object given to the call handler."""

    def __init__(
        self,
        call_id: uuid.UUID,
        writer: asyncio.StreamWriter,
        *,
        keepalive: bool = True,
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        self.call_id = call_id
        self.log = call_logger(log, call_id)
        self._writer = writer
        self._keepalive = keepalive
        self._max_pending = max_pending_events
        self._max_pending_bytes = max_pending_bytes
        self._events: deque[SessionEvent] = deque()
        self._pending_bytes = 0
        """Audio bytes in ``_events``."""
        self._wakeup = asyncio.Event()
        self._closed_event: Closed | None = None
        self._playback: _Playback | None = None
        self._clock: MediaClock | None = None
        self._ended = asyncio.Event()
        self._stats = MediaStats()
        self._overflowing = False
        self.audio_wanted = True
        """Whether the call handler reads the caller's audio now. A handler that only waits
        for keys (a language without a recognizer) sets it False: the 50 frames a second
        are then counted and dropped, never queued, and never wake the handler."""

    def __repr__(self) -> str:
        state = f"closed: {self._closed_event.reason}" if self._closed_event else "open"
        return f"<MediaSession {self.call_id} {state}>"

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the outbound stream (keepalive silence and playback pacing)."""
        if self._clock is None and not self.closed:
            self._clock = MediaClock.of(asyncio.get_running_loop())
            self._clock.add(self)
            self.log.debug("media session started")

    @property
    def closed(self) -> bool:
        return self._closed_event is not None

    @property
    def stats(self) -> MediaStats:
        """A snapshot of the frame and byte counters."""
        return dataclasses.replace(self._stats)

    @property
    def playing(self) -> bool:
        return self._playback is not None

    async def hangup(self, reason: str = "hung up by the IVR") -> None:
        """Send AudioSocket hang-up (the dialplan continues) and close the socket."""
        self.terminate(reason, send_hangup=True)
        await self.wait_closed()

    def terminate(self, reason: str, *, send_hangup: bool = True) -> None:
        """Close now; the first reason given is the one reported. Idempotent."""
        if self._closed_event is not None:
            return
        self._closed_event = Closed(reason)
        if self._playback is not None:
            self._playback.finish(False)
            self._playback = None
        if self._clock is not None:
            self._clock.discard(self)
        self._ended.set()
        transport = self._writer.transport
        if not transport.is_closing():
            if send_hangup:
                self._writer.write(encode_hangup())
            self._writer.close()
        self._wakeup.set()
        s = self._stats
        self.log.info(
            "media session closed (%s); in %d frames/%d bytes, out %d frames/%d bytes "
            "(%d silence)",
            reason, s.frames_in, s.bytes_in, s.frames_out, s.bytes_out, s.silence_frames_out,
        )

    async def wait_closed(self) -> None:
        """Wait (bounded) until the session has ended and its socket is closed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._ended.wait()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.wait_closed()
        except TimeoutError:
            self.log.warning("socket did not close within %.1f s; aborting it", CLOSE_TIMEOUT)
            self._writer.transport.abort()
        except (ConnectionError, OSError) as exc:
            self.log.debug("socket closed with %r", exc)

    # --- inbound --------------------------------------------------------------------------

    def deliver(self, message: Message) -> None:
        """Called by the media server for each message Asterisk sent."""
        if self.closed:
            return
        match message:
            case Audio(pcm):
                self._stats.frames_in += 1
                self._stats.bytes_in += len(pcm)
                if self.audio_wanted:
                    self._enqueue(message)
                else:
                    self._stats.audio_ignored += 1
            case Dtmf():
                self._stats.dtmf_in += 1
                self.log.debug("key press received")  # never log the key: it may be an id
                if self._playback is not None and self._playback.stop_on_keys:
                    self.stop_playback()
                self._enqueue(message)
            case Hangup():
                self._enqueue(message)
                self.terminate("caller hung up", send_hangup=False)
            case Error():
                self.log.warning("Asterisk reported an AudioSocket error: %s", message.description)
                self._enqueue(message)
            case Uuid():
                self.log.warning("ignoring an unexpected second UUID message")

    @property
    def pending_bytes(self) -> int:
        """Inbound audio bytes waiting for the call handler."""
        return self._pending_bytes

    def _enqueue(self, event: SessionEvent) -> None:
        size = len(event.pcm) if isinstance(event, Audio) else 0
        dropped = 0
        while self._events and (len(self._events) >= self._max_pending
                                or self._pending_bytes + size > self._max_pending_bytes):
            self._take_first()
            dropped += 1
        if dropped:
            self._stats.events_dropped += dropped
            if not self._overflowing:
                self.log.warning(
                    "call handler is not reading media events; dropping the oldest "
                    "(limits %d events, %d bytes)", self._max_pending, self._max_pending_bytes,
                )
                self._overflowing = True
        else:
            self._overflowing = False
        self._events.append(event)
        self._pending_bytes += size
        self._wakeup.set()

    def _take_first(self) -> SessionEvent:
        event = self._events.popleft()
        if isinstance(event, Audio):
            self._pending_bytes -= len(event.pcm)
        return event

    def _take_next(self) -> SessionEvent:
        """The first queued event; audio frames queued behind each other come as one."""
        event = self._take_first()
        events = self._events
        if not isinstance(event, Audio) or not events or not isinstance(events[0], Audio):
            return event
        parts, size = [event.pcm], len(event.pcm)
        while events and isinstance(events[0], Audio) and size < MAX_MERGED_AUDIO:
            pcm = self._take_first().pcm  # type: ignore[union-attr]
            parts.append(pcm)
            size += len(pcm)
        return Audio(b"".join(parts))

    # A timeout here is a call-flow value (how long to wait for a key), returning None.
    async def next_event(self, timeout: float | None = None) -> SessionEvent | None:
        """The next inbound event, ``Closed`` once the session is over (repeatedly), or
        None if ``timeout`` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._events:
                return self._take_next()
            if self._closed_event is not None:
                return self._closed_event
            self._wakeup.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._wakeup.wait()
            except TimeoutError:
                return None

    async def __aiter__(self) -> AsyncIterator[SessionEvent]:
        """Iterate over inbound events; the last one is ``Closed``."""
        while True:
            event = await self.next_event()
            assert event is not None
            yield event
            if isinstance(event, Closed):
                return

    # --- outbound -------------------------------------------------------------------------

    async def play(self, pcm: bytes, *, interruptible: bool = True,
                   stop_on_keys: bool = True) -> bool:
        """Play 8 kHz s16le mono audio paced at real time.

        Returns True when all of it was sent and its last frame has had time to play,
        False if it was stopped (``stop_playback`` or, when ``interruptible`` and
        ``stop_on_keys``, a key press) or the session closed. Only one playback at a time.
        A driver that decides itself which keys barge in (``ivr.prompting``: the '#' that
        ends an already complete number must not cut the read-back) passes
        ``stop_on_keys=False`` and calls ``stop_playback``.
        """
        if len(pcm) % BYTES_PER_SAMPLE:
            raise ValueError(f"audio must be whole 16-bit samples; got {len(pcm)} bytes")
        if self._playback is not None:
            raise RuntimeError("play() is already in progress on this session")
        if self.closed:
            return False
        if not pcm:
            return True
        if self._clock is None:
            self.start()
        view = bytes(pcm)
        frames = deque(view[i : i + FRAME_BYTES] for i in range(0, len(view), FRAME_BYTES))
        playback = _Playback(frames, interruptible, interruptible and stop_on_keys,
                             asyncio.get_running_loop().create_future())
        self._playback = playback
        self.log.debug("playing %d frames (interruptible=%s)", len(frames), interruptible)
        try:
            return await playback.done
        finally:
            if self._playback is playback:
                self._playback = None
                playback.frames.clear()

    def stop_playback(self) -> bool:
        """Barge-in: stop the current interruptible playback now. True if one was stopped."""
        playback = self._playback
        if playback is None or not playback.interruptible:
            return False
        self._playback = None
        playback.finish(False)
        self.log.debug("playback stopped")
        return True

    def _send_tick(self) -> None:
        playback = self._playback
        if playback is not None:
            if playback.frames:
                self._send_audio(playback.frames.popleft(), silence=False)
                return
            # The last frame went out one tick ago and has now played.
            self._playback = None
            playback.finish(True)
        if self._keepalive:
            self._send_audio(SILENCE_FRAME, silence=True)

    def _send_audio(self, pcm: bytes, *, silence: bool) -> None:
        transport = self._writer.transport
        if transport.is_closing():
            self.terminate("connection lost", send_hangup=False)
            return
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.terminate("peer stopped reading audio", send_hangup=False)
            transport.abort()
            return
        self._writer.write(encode_audio(pcm))
        self._stats.frames_out += 1
        self._stats.bytes_out += len(pcm)
        if silence:
            self._stats.silence_frames_out += 1
