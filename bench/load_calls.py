"""Callers for ``bench.load``: the call mix, the SIPp driver (rate, concurrency, time and
count bounds), and what each call became, read back from the service's database.

Every caller is one SIPp process (``hotline.tools.sipp.place_call``) that waits for Asterisk to
hang up, bounded by a safety hold. Its display name carries the run's tag and the call's
sequence number ("张三 L1-0007"), which is how its consultation is found afterwards.

The mix (demo residents, so the IVR greets them in their language at once):

- ``lookup``: 张三 (Mandarin, keypad) keys his case number at the greeting (11 digits end
  it), 1 (yes), hears the status, then keys 3 (end): the IVR says goodbye and hangs up. No
  '#' after the number: the media session stops the read-back prompt on that '#' although
  the flow then ignores the key, and the caller would hear five seconds of silence and "no
  input".
- ``agent``: John Smith (English, keypad) keys and says nothing: after the greeting he waits
  for a person (the English desk's queue); a SIPp agent answers and hangs up after a few
  seconds; the survey asks for a rating; the caller keys 4 every 3 s until the IVR hangs up
  (keys during the queue or the agent talk are lost, as in tests/integration/test_surveys.py).
- ``speech``: 김민준 (Korean, speech) says "상담원 연결해 주세요" (espeak-ng), is handed to an
  agent, then keys a rating like ``agent``.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from bench.audiosocket_caller import line_noise
from crm.storage.db import open_database
from crm.storage.models import Case, Consultation, Resident
from hotline.settings import Settings
from hotline.tools.sipp import KEY_GAP_MS, KEY_PAUSE_MS, CallResult, place_call
from speech.tts import PromptSynthesizer

KINDS = ("lookup", "agent", "speech")
SPOKEN = "상담원 연결해 주세요"
LEAD_SILENCE_S = 2.0
"""Quiet before the phrase: the IVR's greeting plays meanwhile (barge-in would stop it)."""
NOISE_AMPLITUDE = 16
"""Line noise under the caller's audio, as in bench.speech_turns."""
RATING_KEYS = "4" + ",,,4" * 14
"""A rating key every 3 s for 45 s: the survey takes the first that reaches it."""
SAFETY_HOLD_MS = 90_000
"""A caller still connected this long after its last key hangs up itself (a stuck call)."""
INPUT_STEPS = ("keys", "speech")
ANSWER_STEPS = ("prompt", "queued")
"""What answers an input: the IVR's next prompt, or (the intake of issue 13 has no prompt
between a request for a person and the queue) the caller's joining the agent queue."""
KEY_PRESS_S = 0.14
"""An RFC 2833 capture of /usr/share/sip-tester lasts 140 ms."""
PRESS_SLACK_S = 0.05
"""A press counts for an input step logged up to this much before its scheduled end (the
answer's timing by AMI is a few ms off)."""
_TAG = re.compile(r" ([A-Z]+\d+)-(\d+)$")


@dataclass(frozen=True)
class CallPlan:
    seq: int
    kind: str
    number: str
    name: str
    keys: str
    pause_before_keys_ms: int
    audio: Path | None = None
    speech_ends_at: float | None = None
    """Seconds after the answer at which the caller's last word ends (``audio``)."""
    hold_ms: int = SAFETY_HOLD_MS
    """After its last key the caller waits this long for Asterisk to hang up, then hangs up
    itself."""

    def caller_name(self, tag: str) -> str:
        return f"{self.name} {tag}-{self.seq:04d}"


@dataclass
class CallRecord:
    plan: CallPlan
    offered_at: float
    """Seconds since the run started (bench monotonic clock)."""
    ended_at: float | None = None
    result: CallResult | None = None
    error: str | None = None
    consultation: Consultation | None = None

    @property
    def answered(self) -> bool:
        return self.result is not None and self.result.answered


@dataclass(frozen=True)
class Mix:
    weights: dict[str, float]

    @classmethod
    def parse(cls, text: str) -> Mix:
        """"lookup=40,agent=30,speech=30" (weights, any scale)."""
        weights: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            if name not in KINDS:
                raise ValueError(f"unknown call kind {name!r} (use {', '.join(KINDS)})")
            weights[name] = float(value)
        if not weights or sum(weights.values()) <= 0:
            raise ValueError("the mix needs a positive weight")
        return cls(weights)

    def describe(self) -> str:
        total = sum(self.weights.values())
        return " / ".join(f"{k} {100 * w / total:.0f}%" for k, w in self.weights.items() if w)


class Planner:
    """Builds call plans: same seed, same sequence of call kinds."""

    def __init__(self, mix: Mix, case_number: str, speech_audio: SpeechAudio,
                 seed: int = 12345):
        self.mix = mix
        self.case_number = case_number
        self.speech_audio = speech_audio
        self.random = random.Random(seed)
        self.seq = 0

    def next(self) -> CallPlan:
        self.seq += 1
        kinds, weights = zip(*self.mix.weights.items(), strict=True)
        kind = self.random.choices(kinds, weights)[0]
        if kind == "lookup":
            # The number at the greeting (read back for confirmation), 1 = yes, status, 3 =
            # end. The number at 4-6.5 s (the end of the 4 s greeting), 1 at 15.75 s (end of
            # the 11 s read-back), 3 at 30 s (during "1 repeat, 2 agent, 3 end").
            keys = f"{self.case_number}" + "," * 9 + "1" + "," * 14 + "3"
            return CallPlan(self.seq, kind, "13800138000", "张三", keys, 4000)
        if kind == "agent":
            # Silent: the queue after the greeting (about 6 s); the first rating key at 13 s.
            keys = "," * 9 + RATING_KEYS
            return CallPlan(self.seq, kind, "13700137000", "John Smith", keys, 4000)
        return CallPlan(self.seq, kind, "13600136000", "김민준", "," * 10 + RATING_KEYS, 1,
                        audio=self.speech_audio.path,
                        speech_ends_at=self.speech_audio.speech_ends_at)


async def demo_case_number(settings: Settings) -> str:
    database = open_database(settings.database_url)
    try:
        async with database.sessions() as session:
            number = await session.scalar(
                select(Case.number).join(Resident).where(Resident.name == "张三")
                .order_by(Case.id))
    finally:
        await database.close()
    if not number:
        raise RuntimeError("the demo data has no case for 张三")
    return str(number)


@dataclass(frozen=True)
class SpeechAudio:
    path: Path
    speech_ends_at: float


def trim_silence(pcm: bytes, threshold: float = 300.0) -> bytes:
    """Drop the quiet 20 ms frames espeak-ng leaves before and after the words."""
    frame = 320
    loud = [i for i in range(0, len(pcm) - frame + 1, frame)
            if _rms(pcm[i:i + frame]) >= threshold]
    return pcm[loud[0]:loud[-1] + frame] if loud else pcm


def _rms(frame: bytes) -> float:
    samples = array.array("h", frame)
    return math.sqrt(sum(x * x for x in samples) / max(1, len(samples)))


async def speech_audio(workdir: Path) -> SpeechAudio:
    """LEAD_SILENCE_S, the Korean request (espeak-ng, trimmed), 3 s more, all over low
    line noise (as bench.speech_turns: lines are never digitally silent, and vosk ends an
    utterance sooner on digital silence), as raw u-law for SIPp's rtp_stream (converted once
    here, not per call)."""
    synth = PromptSynthesizer(workdir / "bench-audio")
    phrase = trim_silence(await synth.audio("ko", None, SPOKEN))
    await synth.close()
    second = b"".join(line_noise(NOISE_AMPLITUDE, 50, random.Random(7)))
    raw = workdir / "speech-ko.s16"
    raw.write_bytes(second * int(LEAD_SILENCE_S) + phrase + second * 3)
    out = workdir / "speech-ko.ulaw"
    sox = await asyncio.create_subprocess_exec(
        "sox", "-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1", str(raw),
        "-t", "ul", str(out), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await sox.communicate()
    if sox.returncode != 0:
        raise RuntimeError(f"sox could not convert the speech audio: {err.decode()}")
    return SpeechAudio(out, int(LEAD_SILENCE_S) + len(phrase) / 16_000)


# --- the driver ---------------------------------------------------------------------------------


@dataclass
class DriveLimits:
    rate: float
    """Calls offered per second (at most)."""
    concurrency: int
    duration: float
    """Seconds during which calls are offered."""
    max_calls: int
    drain: float
    """Seconds to wait for the calls in flight once offering stopped."""


@dataclass
class Drive:
    tag: str
    records: list[CallRecord] = field(default_factory=list)
    in_flight_peak: int = 0
    offered_for: float = 0.0
    drained_in: float = 0.0
    cancelled: int = 0


class PlanSource(Protocol):
    """Where ``drive`` takes its calls from (``Planner`` here, bench.intake's own)."""

    def next(self) -> CallPlan: ...


async def drive(settings: Settings, planner: PlanSource, limits: DriveLimits, tag: str,
                progress: Callable[[str], None] = print) -> Drive:
    """Offer calls at ``rate`` with at most ``concurrency`` in flight, for ``duration``
    seconds or ``max_calls`` calls, then wait ``drain`` seconds for the last ones (and hang
    up what is left)."""
    loop = asyncio.get_running_loop()
    run = Drive(tag)
    slots = asyncio.Semaphore(limits.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    start = loop.time()
    offer_until = start + limits.duration
    next_at = start
    in_flight = 0

    async def one(record: CallRecord) -> None:
        nonlocal in_flight
        plan = record.plan
        try:
            record.result = await place_call(
                settings, caller_number=plan.number, caller_name=plan.caller_name(tag),
                keys=plan.keys, pause_before_keys_ms=plan.pause_before_keys_ms,
                audio=plan.audio, hold_ms=plan.hold_ms, wait_for_bye=True)
        except asyncio.CancelledError:
            record.error = "cancelled after the drain time"
            raise
        except Exception as exc:  # a SIPp failure is a failed call, not a failed bench
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            record.ended_at = loop.time() - start
            in_flight -= 1
            slots.release()

    last_report = start
    while len(run.records) < limits.max_calls:
        now = loop.time()
        if now >= offer_until:
            break
        if next_at > now:
            await asyncio.sleep(min(next_at, offer_until) - now)
            continue
        try:
            await asyncio.wait_for(slots.acquire(), offer_until - now)
        except TimeoutError:
            break
        now = loop.time()
        next_at = max(next_at + 1 / limits.rate, now - 1 / limits.rate)
        record = CallRecord(planner.next(), offered_at=now - start)
        run.records.append(record)
        in_flight += 1
        run.in_flight_peak = max(run.in_flight_peak, in_flight)
        task = asyncio.create_task(one(record), name=f"call-{record.plan.seq}")
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if now - last_report >= 15:
            last_report = now
            progress(f"  {now - start:5.0f} s: {len(run.records)} calls offered, "
                     f"{in_flight} in flight")
    run.offered_for = loop.time() - start
    if tasks:
        progress(f"  offering stopped after {run.offered_for:.0f} s ({len(run.records)} calls);"
                 f" waiting up to {limits.drain:.0f} s for {len(tasks)} calls in flight")
        _, pending = await asyncio.wait(set(tasks), timeout=limits.drain)
        run.cancelled = len(pending)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    run.drained_in = loop.time() - start - run.offered_for
    return run


# --- what the calls became ------------------------------------------------------------------------


async def load_consultations(settings: Settings, tag: str, expected: int,
                             within: float = 20.0) -> list[Consultation]:
    """The run's consultations (by caller-name tag), once ``expected`` of them have ended or
    ``within`` seconds passed (the recorder writes from a queue, a moment after the call)."""
    database = open_database(settings.database_url)
    like = f"% {tag}-%"
    deadline = time.monotonic() + within
    try:
        sessions = database.sessions
        while True:
            async with sessions() as session:
                ended = await session.scalar(
                    select(func.count()).select_from(Consultation)
                    .where(Consultation.caller_name.like(like),
                           Consultation.ended_at.is_not(None)))
            if (ended or 0) >= expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)  # polling the recorder's writes, bounded
        async with sessions() as session:
            rows = await session.scalars(
                select(Consultation).where(Consultation.caller_name.like(like))
                .options(selectinload(Consultation.steps)))
            return list(rows.all())
    finally:
        await database.close()


def attach(records: list[CallRecord], consultations: list[Consultation], tag: str) -> int:
    """Give each call its consultation; returns how many consultations matched no call or
    were a second one for the same call."""
    by_seq = {r.plan.seq: r for r in records}
    strays = 0
    for c in consultations:
        match = _TAG.search(c.caller_name or "")
        record = by_seq.get(int(match.group(2))) if match and match.group(1) == tag else None
        if record is None or record.consultation is not None:
            strays += 1
            continue
        record.consultation = c
    return strays


def _kinds(c: Consultation) -> list[str]:
    return [s.kind for s in c.steps]


def _flow_end(c: Consultation) -> str | None:
    """How the IVR itself ended the call: "goodbye" (route end) or "survey" (its end)."""
    if c.ivr_route == "end" or any(
            s.kind == "route" and s.detail.get("route") == "end" for s in c.steps):
        return "goodbye"
    if any(k in ("survey_result", "survey_skipped") for k in _kinds(c)):
        return "survey"
    return None


def classify(record: CallRecord) -> str:
    """What became of a call:

    - completed: Asterisk hung up where the scenario ends (the IVR's goodbye after a lookup,
      the end of the survey after an agent);
    - diverted: the IVR ended the call, but elsewhere (e.g. a lookup whose keys were not
      taken in time: re-prompted, handed to an agent and surveyed);
    - dropped: Asterisk hung up and the IVR's flow had not ended the call;
    - stuck: no hang-up from Asterisk within the bounds (the bench hung up);
    - unanswered, or failed (SIPp could not run).
    """
    result = record.result
    if result is None:
        return "stuck" if record.error and "cancelled" in record.error else "failed"
    if not result.answered:
        return "unanswered"
    if result.hung_up_by != "remote":
        return "stuck"
    end = _flow_end(record.consultation) if record.consultation is not None else None
    if end is None:
        return "dropped"
    expected = "goodbye" if record.plan.kind == "lookup" else "survey"
    return "completed" if end == expected else "diverted"


def heard_right(record: CallRecord) -> bool | None:
    """For spoken requests: did the IVR understand "an agent" from the speech?"""
    c = record.consultation
    if record.plan.kind != "speech" or c is None:
        return None
    return any(s.kind == "speech" and s.detail.get("intent") == "agent" for s in c.steps)


def survey_rated(record: CallRecord) -> bool | None:
    c = record.consultation
    if record.plan.kind == "lookup" or c is None:
        return None
    return any(s.kind == "survey_result" and s.detail.get("outcome") == "rated"
               for s in c.steps)


# --- turn latency ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    kind: str
    """The input: keys or speech."""
    prompt: str
    seconds: float


def key_press_ends(plan: CallPlan) -> list[float]:
    """When each key press ends, in seconds after the answer, as hotline.tools.sipp schedules them
    (the first after pause_before_keys_ms, then KEY_GAP_MS apart, each ',' a KEY_PAUSE_MS
    more; an RFC 2833 press lasts KEY_PRESS_S)."""
    ends: list[float] = []
    at, pause = 0.0, 0
    for key in plan.keys:
        if key == ",":
            pause += KEY_PAUSE_MS
            continue
        at += max(1, (KEY_GAP_MS if ends else plan.pause_before_keys_ms) + pause) / 1000
        ends.append(at + KEY_PRESS_S)
        pause = 0
    return ends


def _answer(step: Any) -> str:
    """The prompt that answered an input, or "queue" when the caller joined the queue."""
    return str(step.detail.get("prompt")) if step.kind == "prompt" else "queue"


def service_turns(c: Consultation) -> list[Turn]:
    """Inside the service: an input step -> the next prompt (or queue join) step, when no
    other input came
    between (a prompt step is published as its audio starts). Blind to how late the input
    reached the flow (event-loop lag, recognition backlog)."""
    found: list[Turn] = []
    pending: tuple[str, datetime] | None = None
    for step in c.steps:
        if step.kind in INPUT_STEPS:
            pending = (step.kind, step.at)
        elif step.kind in ANSWER_STEPS and pending is not None:
            seconds = (step.at - pending[1]).total_seconds()
            found.append(Turn(pending[0], _answer(step), seconds))
            pending = None
    return found


def caller_turns(record: CallRecord, answered_at: float | None) -> list[Turn]:
    """On the caller's time line: the end of the caller's input -> the IVR's next prompt.

    The time line starts at the answer, timed by the bench's AMI login receiving the caller
    channel's Newstate Up (Asterisk sends the 200 OK); SIPp plays the audio and the keys on a
    fixed schedule from the moment it gets that 200 OK. The input ends with the key press the
    input step took last (the latest scheduled press before the step) or with the spoken
    words; the prompt is its consultation step (wall clock, like answered_at). This includes
    end-of-speech detection, recognition backlog and event-loop lag; a lag longer than the
    gap between two presses (0.25 s inside a number, 3.25 s between ratings) is under-counted.
    """
    c = record.consultation
    if c is None or answered_at is None:
        return []
    presses = key_press_ends(record.plan)
    found: list[Turn] = []
    pending: tuple[str, float | None] | None = None
    for step in c.steps:
        if step.kind in INPUT_STEPS:
            if step.kind == "speech":
                end = record.plan.speech_ends_at
            else:
                t = step.at.timestamp() - answered_at
                end = max((p for p in presses if p <= t + PRESS_SLACK_S), default=None)
            pending = (step.kind, end)
        elif step.kind in ANSWER_STEPS and pending is not None:
            kind, end = pending
            pending = None
            if end is not None:
                found.append(Turn(kind, _answer(step),
                                  step.at.timestamp() - answered_at - end))
    return found
