"""Simulated Asterisk callers: AudioSocket clients that behave like app_audiosocket.

Each caller connects, sends its call UUID, then one 320-byte audio frame (20 ms of 8 kHz s16le)
every 20 ms on a monotonic schedule for the whole call, as Asterisk forwards a caller's audio:
low-level line noise, or the caller's utterance when it is their turn. A turn is: wait until the
IVR's prompt has ended (``reply_gap`` of silence after non-silent audio), say the utterance,
keep sending line noise, and time the gap between the last speech frame sent and the first
non-silent frame the IVR sends back (its keepalive silence is all zero bytes). After the last
turn the caller hangs up (AudioSocket kind 0x00).

``run_callers`` runs in a worker process of its own so that the callers' event loop does not
delay the server being measured (and the other way round); it returns plain data.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from ivr.audiosocket.protocol import (
    Audio,
    AudioSocketParser,
    Hangup,
    encode_audio,
    encode_hangup,
    encode_uuid,
)

FRAME_BYTES = 320
FRAME_SECONDS = 0.020


@dataclass(frozen=True)
class CallerPlan:
    port: int
    calls: int
    turns: int
    utterances: tuple[bytes, ...]
    """Trimmed speech (no leading or trailing silence); caller i says i, i+1, ... in turn."""
    start_spread: float = 2.0
    """Call i connects at i * start_spread / calls seconds."""
    reply_gap: float = 0.6
    """Silence after the IVR's prompt before the caller speaks (longer than any pause
    inside the prompt)."""
    answer_timeout: float = 10.0
    prompt_timeout: float = 20.0
    time_limit: float = 120.0
    noise_amplitude: int = 16
    seed: int = 1


@dataclass
class TurnTiming:
    call_id: str
    turn: int
    utterance: int
    latency: float | None
    """Last speech frame sent -> first non-silent frame received; None: no answer in time.
    Negative when the IVR answered before the caller finished (an early endpoint)."""


@dataclass
class CallerReport:
    timings: list[dict[str, Any]] = field(default_factory=list)
    calls_started: int = 0
    calls_completed: int = 0
    errors: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    send_lateness: list[float] = field(default_factory=list)


def line_noise(amplitude: int, frames: int, rng: random.Random) -> list[bytes]:
    """Frames of low-level white noise (telephone lines are never digitally silent)."""
    return [
        b"".join(rng.randint(-amplitude, amplitude).to_bytes(2, "little", signed=True)
                 for _ in range(FRAME_BYTES // 2))
        for _ in range(frames)
    ]


def _is_silent(pcm: bytes) -> bool:
    return pcm.count(0) == len(pcm)


class SimulatedCaller:
    def __init__(self, index: int, plan: CallerPlan, noise: list[bytes], call_id: uuid.UUID,
                 lateness: list[float]) -> None:
        self.index = index
        self.plan = plan
        self.call_id = call_id
        self.timings: list[TurnTiming] = []
        self.completed = False
        self._noise = noise
        self._lateness = lateness
        self._speech: deque[bytes] = deque()
        self._speech_started = False
        self._speech_end: float | None = None
        self._spoken = asyncio.Event()
        self._answer_at: float | None = None
        self._answered = asyncio.Event()
        self._voice_frames = 0
        self._voice_mark = 0
        self._silent_run = 0
        self._gap_frames = max(1, round(plan.reply_gap / FRAME_SECONDS))
        self._prompt_ended = asyncio.Event()
        self._gone = asyncio.Event()

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.plan.port)
        writer.write(encode_uuid(self.call_id))
        tasks = [asyncio.create_task(self._send(writer)),
                 asyncio.create_task(self._receive(reader))]
        try:
            for turn in range(self.plan.turns):
                if not await self._wait(self._prompt_ended, self.plan.prompt_timeout):
                    raise RuntimeError(f"turn {turn}: the IVR's prompt did not end")
                utterance = (self.index + turn) % len(self.plan.utterances)
                latency = await self._say(self.plan.utterances[utterance])
                self.timings.append(TurnTiming(str(self.call_id), turn, utterance, latency))
                if latency is None:
                    raise RuntimeError(f"turn {turn}: no answer within "
                                       f"{self.plan.answer_timeout:.0f} s")
            self.completed = True
        finally:
            if not writer.transport.is_closing():
                writer.write(encode_hangup())
                writer.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _wait(self, event: asyncio.Event, timeout: float) -> bool:
        gone = asyncio.ensure_future(self._gone.wait())
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({gone, waiter}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            waiter.cancel()
        if self._gone.is_set() and not event.is_set():
            raise RuntimeError("the IVR hung up")
        return event.is_set()

    async def _say(self, pcm: bytes) -> float | None:
        self._prompt_ended.clear()
        self._spoken.clear()
        self._answered.clear()
        self._answer_at = None
        self._speech_started = False
        self._voice_mark = self._voice_frames  # the next prompt is what comes after this
        self._speech.extend(pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES))
        await self._wait(self._spoken, len(pcm) / 16000 + 5.0)
        assert self._speech_end is not None
        if not await self._wait(self._answered, self.plan.answer_timeout):
            return None
        assert self._answer_at is not None
        return self._answer_at - self._speech_end

    # -- wire -----------------------------------------------------------------------------

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while not writer.transport.is_closing():
            if self._speech:
                frame = self._speech.popleft()
                self._speech_started = True
                writer.write(encode_audio(frame))
                if not self._speech:
                    self._speech_end = loop.time()
                    self._spoken.set()
            else:
                writer.write(encode_audio(self._noise[n % len(self._noise)]))
            n += 1
            due = start + n * FRAME_SECONDS
            now = loop.time()
            self._lateness.append(max(0.0, now - (due - FRAME_SECONDS)))
            await asyncio.sleep(max(0.0, due - now))

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        parser = AudioSocketParser(expect_uuid_first=False)
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(4096):
                now = loop.time()
                for message in parser.feed(data):
                    if isinstance(message, Audio):
                        self._on_frame(message.pcm, now)
                    elif isinstance(message, Hangup):
                        return
        except ConnectionError:
            pass
        finally:
            self._gone.set()

    def _on_frame(self, pcm: bytes, now: float) -> None:
        if not _is_silent(pcm):
            self._voice_frames += 1
            self._silent_run = 0
            if self._speech_started and self._answer_at is None:
                self._answer_at = now
                self._answered.set()
            return
        self._silent_run += 1
        if self._voice_frames > self._voice_mark and self._silent_run >= self._gap_frames:
            self._prompt_ended.set()


async def _run_all(plan: CallerPlan) -> CallerReport:
    report = CallerReport()
    rng = random.Random(plan.seed)
    noise = line_noise(plan.noise_amplitude, 50, rng)
    callers = [
        SimulatedCaller(i, plan, noise, uuid.UUID(int=rng.getrandbits(128), version=4),
                        report.send_lateness)
        for i in range(plan.calls)
    ]

    async def start(caller: SimulatedCaller) -> None:
        await asyncio.sleep(caller.index * plan.start_spread / plan.calls)
        report.calls_started += 1
        await caller.run()

    tasks = [asyncio.create_task(start(c), name=f"caller-{c.index}") for c in callers]
    _, pending = await asyncio.wait(tasks, timeout=plan.time_limit)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for caller, task in zip(callers, tasks, strict=True):
        report.timings += [asdict(t) for t in caller.timings]
        report.calls_completed += caller.completed
        if task.cancelled():
            report.errors.append(f"call {caller.index}: stopped at the time limit")
        elif task.exception() is not None:
            report.errors.append(f"call {caller.index}: {task.exception()}")
    return report


def run_callers(plan: CallerPlan) -> dict[str, Any]:
    """Place ``plan.calls`` concurrent calls; the entry point of the caller process."""
    wall, cpu = time.monotonic(), time.process_time()
    report = asyncio.run(_run_all(plan))
    report.wall_seconds = time.monotonic() - wall
    report.cpu_seconds = time.process_time() - cpu
    return asdict(report)
