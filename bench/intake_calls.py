"""The callers of ``bench.intake`` made real, and what each call measured.

A :class:`Scenario` (bench/intake_scenarios.py) becomes a ``bench.load_calls.CallPlan`` for
the SIPp driver of bench.load: its keys as a SIPp key string, its words as one u-law file
(espeak-ng phrases at their moments over line noise, as long as the call), its hang-up as the
caller's hold. Afterwards each call's consultation says when the measured moment came, on the
same wall clock as the answer (the caller channel's Newstate Up on the bench's AMI login).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

from bench.audiosocket_caller import line_noise
from bench.intake_scenarios import Flow, Scenario
from bench.load_calls import (
    KEY_PRESS_S,
    NOISE_AMPLITUDE,
    CallPlan,
    CallRecord,
    key_press_ends,
    trim_silence,
)
from crm.storage.db import open_database
from crm.storage.models import Case, LookupFailure, Resident
from hotline.settings import Settings
from hotline.tools.sipp import KEY_GAP_MS, KEY_PAUSE_MS
from speech.numbers import say_number_digits
from speech.tts import PromptSynthesizer

INPUT_SLACK_S = 0.05
"""An input counts for a step logged up to this much before its scheduled end."""
TAIL_S = 2.0
"""Line noise goes on this much past the caller's hang-up (SIPp plays the file once)."""
KEYS_AFTER_AUDIO_S = 0.5
"""A caller's audio ends this long before its first key (see :func:`audio_seconds`)."""


@dataclass(frozen=True)
class DemoCase:
    number: str
    last4: str


async def clear_lookup_failures(settings: Settings) -> int:
    """Forget the failed lookups the IVR counted (its guard blocks a calling number after a
    few): each level starts clean, so one level's failures do not block the next one's
    callers, who share the demo residents' numbers. Returns how many there were."""
    database = open_database(settings.database_url)
    try:
        async with database.sessions() as session, session.begin():
            result = await session.execute(delete(LookupFailure))
            return int(getattr(result, "rowcount", 0) or 0)
    finally:
        await database.close()


async def demo_cases(settings: Settings) -> dict[str, DemoCase]:
    """Each demo resident's first case: its number and the last four digits of its contact
    phone."""
    database = open_database(settings.database_url)
    found: dict[str, DemoCase] = {}
    try:
        async with database.sessions() as session:
            rows = await session.execute(
                select(Resident.name, Case.number, Case.contact_phone).join(Resident)
                .order_by(Case.id))
            for name, number, contact in rows.all():
                digits = "".join(c for c in contact or "" if c.isdigit())
                found.setdefault(str(name), DemoCase(str(number), digits[-4:]))
    finally:
        await database.close()
    return found


def fill(text: str, case: DemoCase | None, *, spoken_in: str | None = None) -> str:
    """``{case}`` and ``{last4}`` in a scenario's keys or words (said digit by digit)."""
    if "{" not in text:
        return text
    if case is None:
        raise ValueError(f"{text!r} needs a demo case, and the caller has none")
    number, last4 = case.number, case.last4
    if spoken_in is not None:
        number, last4 = (say_number_digits(d, spoken_in) for d in (number, last4))
    return text.replace("{case}", number).replace("{last4}", last4)


def key_string(schedule: list[tuple[float, str]]) -> tuple[str, int]:
    """(seconds after the answer, keys) groups as hotline.tools.sipp's key string and its
    pause before the first key: keys 0.25 s apart, a ',' a second more, so a group starts
    within half a second of its moment (``key_press_ends`` gives the real times)."""
    out: list[str] = []
    pause_ms = 1
    at: float | None = None  # when the last key started
    for when, keys in schedule:
        for i, key in enumerate(keys):
            if at is None:
                pause_ms = max(1, round(when * 1000))
                at = when
            elif i == 0:
                commas = max(0, round(when - at - KEY_GAP_MS / 1000))
                out.append("," * commas)
                at += KEY_GAP_MS / 1000 + commas * KEY_PAUSE_MS / 1000
            else:
                at += KEY_GAP_MS / 1000
            out.append(key)
    return "".join(out), pause_ms


def last_key_start_s(keys: str, pause_before_keys_ms: int) -> float:
    ends = key_press_ends(CallPlan(0, "", "", "", keys, pause_before_keys_ms))
    return ends[-1] - KEY_PRESS_S if ends else 0.0


@dataclass(frozen=True)
class PreparedCall:
    """A scenario ready to be placed: the template of its calls' plans."""

    scenario: Scenario
    case: DemoCase | None
    keys: str
    pause_before_keys_ms: int
    audio: Path | None
    phrase_ends: tuple[float, ...]
    hold_ms: int

    def plan(self, seq: int) -> CallPlan:
        c = self.scenario.caller
        return CallPlan(seq, self.scenario.kind, c.number, c.name, self.keys,
                        self.pause_before_keys_ms, audio=self.audio,
                        speech_ends_at=max(self.phrase_ends, default=None),
                        hold_ms=self.hold_ms)

    def input_ends(self, plan: CallPlan) -> list[float]:
        """When each of the caller's inputs ends, seconds after the answer."""
        return sorted([*key_press_ends(plan), *self.phrase_ends])


async def prepare(scenario: Scenario, cases: dict[str, DemoCase], workdir: Path,
                  synth: PromptSynthesizer) -> PreparedCall:
    who = scenario.caller
    case = cases.get(who.resident) if who.resident else None
    if who.resident and case is None:
        raise ValueError(f"the demo data has no case for {who.resident}")
    keys, pause_ms = key_string([(at, fill(k, case)) for at, k in scenario.keys])
    phrases = [(at, fill(w, case, spoken_in=who.language)) for at, w in scenario.words]
    audio, ends = await caller_audio(scenario, phrases, workdir, synth)
    hold_ms = max(1, round((scenario.hang_up_s - last_key_start_s(keys, pause_ms)) * 1000))
    return PreparedCall(scenario, case, keys, pause_ms, audio, tuple(ends), hold_ms)


def audio_seconds(scenario: Scenario) -> float:
    """How long the caller's audio lasts: to past the hang-up, or until just before the
    first key. SIPp's keys are RTP packets of their own (RFC 2833 captures, another stream):
    with the audio stream going on beside them, Asterisk took a key twice ("...048" then
    "8") and heard no words after the first key. So a caller who keys stops sending audio
    first, and says nothing after it; one who only keys sends none (as bench.load's)."""
    if not scenario.keys:
        return scenario.hang_up_s + TAIL_S
    first_key = min(at for at, _ in scenario.keys)
    return first_key - KEYS_AFTER_AUDIO_S if scenario.words else 0.0


async def caller_audio(scenario: Scenario, phrases: list[tuple[float, str]], workdir: Path,
                       synth: PromptSynthesizer) -> tuple[Path | None, list[float]]:
    """Line noise for :func:`audio_seconds`, the phrases (espeak-ng, trimmed) over it at
    their moments, as raw u-law; returns the file (None: no audio) and when each phrase
    ends."""
    rate = 8000
    seconds = audio_seconds(scenario)
    if seconds <= 0:
        return None, []
    second = b"".join(line_noise(NOISE_AMPLITUDE, 50, random.Random(7)))
    pcm = bytearray((second * math.ceil(seconds))[:2 * round(seconds * rate)])
    ends: list[float] = []
    for at, text in phrases:
        words = trim_silence(await synth.audio(scenario.caller.language, None, text))
        start = 2 * round(at * rate)
        if start + len(words) > len(pcm):
            raise ValueError(f"{scenario.kind}: {text!r} at {at:g} s runs past the end of "
                             f"the caller's audio ({seconds:g} s: the hang-up or the first "
                             "key)")
        pcm[start:start + len(words)] = words
        ends.append(at + len(words) / (2 * rate))
    raw = workdir / f"{scenario.kind}.s16"
    raw.write_bytes(bytes(pcm))
    out = workdir / f"{scenario.kind}.ulaw"
    sox = await asyncio.create_subprocess_exec(
        "sox", "-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", "1", str(raw),
        "-t", "ul", str(out), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await sox.communicate()
    if sox.returncode != 0:
        raise RuntimeError(f"sox could not convert the caller audio: {err.decode()}")
    raw.unlink()
    return out, ends


class IntakePlanner:
    """Calls of the given kinds in turn (silent, keyed, ... silent, keyed, ...)."""

    def __init__(self, prepared: dict[str, PreparedCall], kinds: tuple[str, ...]) -> None:
        self.prepared = prepared
        self._kinds = itertools.cycle(kinds)
        self.seq = 0

    def next(self) -> CallPlan:
        self.seq += 1
        return self.prepared[next(self._kinds)].plan(self.seq)


# --- what a call measured -----------------------------------------------------------------


@dataclass
class Measured:
    kind: str
    seq: int
    outcome: str
    """ok (the measured moment, reached the scenario's way), diverted (reached another
    way, e.g. the queue after no input instead of the spoken request), lost."""
    seconds: float | None = None
    """Answer -> the measured moment."""
    after_input: float | None = None
    """The end of the caller's last input before it -> the measured moment."""
    why: str = ""


def measure(record: CallRecord, prepared: PreparedCall, flow: Flow,
            answered_at: float | None) -> Measured:
    plan, scenario = record.plan, prepared.scenario
    m = Measured(plan.kind, plan.seq, "lost")
    c = record.consultation
    if record.result is None:
        m.why = record.error or "no SIPp result"
        return m
    if not record.result.answered:
        m.why = "not answered"
        return m
    if c is None:
        m.why = "no consultation"
        return m
    if answered_at is None:
        m.why = "answer not seen on AMI"
        return m
    steps = list(c.steps)
    if scenario.measure == "queue":
        hit = next((s for s in steps if s.kind == "queued"
                    and str(s.detail.get("queue") or "").startswith(flow.queue_prefix)), None)
    else:
        hit = next((s for s in steps if s.kind == "prompt"
                    and s.detail.get("prompt") in flow.status_prompts), None)
    if hit is None:
        m.why = f"no {scenario.measure} step; last steps {[s.kind for s in steps][-6:]}"
        return m
    t = hit.at.timestamp() - answered_at
    m.seconds = t
    ends = [e for e in prepared.input_ends(plan) if e <= t + INPUT_SLACK_S]
    m.after_input = t - ends[-1] if ends else None
    m.outcome = "ok" if reached_as_scripted(steps, hit, scenario, prepared.case) else "diverted"
    if m.outcome == "diverted":
        m.why = f"not as scripted: {[s.kind for s in steps if s is not hit][-8:]}"
    return m


def reached_as_scripted(steps: list, hit: object, scenario: Scenario,
                        case: DemoCase | None) -> bool:
    before = steps[:steps.index(hit)]
    if scenario.via == "asked":
        return any(s.kind == "route" and s.detail.get("route") == "agent"
                   and s.detail.get("reason") == "asked" for s in before)
    looked_up = case is not None and any(
        s.kind == "case_lookup" and s.detail.get("number") == case.number
        and s.detail.get("found") for s in before)
    if scenario.via == "case":
        return looked_up
    if scenario.via == "said_status":
        return looked_up and any(s.kind == "speech" and s.detail.get("intent") == "check_status"
                                 for s in before)
    return True


def trace(record: CallRecord, answered_at: float | None) -> str:
    """One call's steps on its time line (seconds after the answer), for calibrating."""
    c = record.consultation
    head = f"  {record.plan.kind} #{record.plan.seq}"
    if c is None or answered_at is None:
        return f"{head}: no consultation or answer time"
    parts = []
    for s in c.steps:
        d = s.detail
        what = d.get("prompt") or d.get("keys") or d.get("text") or d.get("intent") \
            or d.get("route") or d.get("queue") or d.get("state") or ""
        parts.append(f"{s.at.timestamp() - answered_at:.1f} {s.kind}:{what}")
    return f"{head}: " + ", ".join(parts)
