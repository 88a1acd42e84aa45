"""Issue 13: spoken requests at the greeting, heard by the real Korean model.

The greeting listens with the ``intake`` grammar, where the requests stand beside the digits
of a case number. The recordings are made as bench.intake's callers are: espeak-ng words
trimmed of their silence, over low line noise, starting 2 s (the bench's moment) or 0.3 s
into the listening turn, through G.711 u-law and back, fed in 20 ms frames to the
recognizer the stack builds for the greeting and read as ivr.voice reads it. Before the
greeting took vosk's n best readings, "민원 조회" here was heard as "민원 여덟" (not a request,
too few digits for a number) and the caller was sent to the queue.
"""

from __future__ import annotations

import audioop
import random
from pathlib import Path

import pytest

from speech.grammar import build_grammars
from speech.models import SpeechModels
from speech.prompts import load_all
from speech.recognizer import BYTES_PER_SECOND, RecognitionUpdate
from speech.settings import SpeechSettings
from speech.stack import SpeechStack
from speech.tts import PromptSynthesizer
from speech.understanding import Understanding

FRAME = 320
NOISE = 16  # bench.load_calls.NOISE_AMPLITUDE
VOICE_RMS = 300


@pytest.fixture(scope="module")
def stack(korean_models: SpeechModels, prompt_cache: Path) -> SpeechStack:
    packs = load_all()
    return SpeechStack(SpeechSettings(prewarm_prompts=False), korean_models, packs,
                       build_grammars(korean_models, packs),
                       PromptSynthesizer(prompt_cache, packs=packs))


def _trim(pcm: bytes) -> bytes:
    loud = [i for i in range(0, len(pcm) - FRAME + 1, FRAME)
            if audioop.rms(pcm[i:i + FRAME], 2) >= VOICE_RMS]
    return pcm[loud[0]:loud[-1] + FRAME] if loud else pcm


def _line(words: bytes, lead_s: float, seed: int = 7, tail_s: float = 5.0) -> bytes:
    rng = random.Random(seed)
    total = round((lead_s + tail_s) * BYTES_PER_SECOND / 2) + len(words) // 2
    noise = b"".join(rng.randint(-NOISE, NOISE).to_bytes(2, "little", signed=True)
                     for _ in range(total))
    start = round(lead_s * BYTES_PER_SECOND / 2) * 2
    pcm = noise[:start] + words + noise[start + len(words):]
    return audioop.ulaw2lin(audioop.lin2ulaw(pcm, 2), 2)


async def greeting_hears(stack: SpeechStack, phrase: str, lead_s: float = 2.0
                         ) -> tuple[RecognitionUpdate, Understanding | None]:
    words = _trim(await stack.synth.audio("ko", None, phrase)) if phrase else b""
    pcm = _line(words, lead_s)
    rec = stack.recognizer("ko", grammar="intake")
    assert rec is not None
    final = None
    for i in range(0, len(pcm), FRAME):
        update = await rec.feed(pcm[i:i + FRAME])
        if update is not None and update.is_final:
            final = update
            break
    assert final is not None, "the recognizer never ended the turn"
    if not final.text:
        return final, None
    return final, stack.understand("ko", "intake", final.text, final.alternatives)


@pytest.mark.parametrize(("phrase", "lead_s"), [
    ("민원 조회", 2.0),       # the intake bench's spoken_status caller, as it was lost
    ("민원 확인", 2.0),
    ("접수 번호 조회", 0.3),
])
async def test_status_requests_at_the_greeting_are_understood(
        stack: SpeechStack, phrase: str, lead_s: float) -> None:
    final, heard = await greeting_hears(stack, phrase, lead_s)
    assert heard is not None, final
    assert heard.intent == "check_status", (heard, final.alternatives)
    assert final.alternatives and 0 < (final.confidence or 0) <= 1


@pytest.mark.parametrize("phrase", ["상담원 연결해 주세요", "상담원 바꿔 주세요"])
async def test_a_request_for_a_person_is_not_taken_for_a_status_request(
        stack: SpeechStack, phrase: str) -> None:
    final, heard = await greeting_hears(stack, phrase)
    assert heard is not None, final
    assert heard.intent == "agent", (heard, final.alternatives)


async def test_a_spoken_digit_string_is_a_number_not_a_request(stack: SpeechStack) -> None:
    # espeak-ng's digits are misheard digit by digit (see bench.intake_scenarios), but they
    # stay digits: the greeting reads them back as a case number.
    final, heard = await greeting_hears(stack, "이, 육, 일, 이, 공, 육, 공, 공, 공, 일, 구")
    assert heard is not None, final
    assert heard.intent is None and len(heard.digits) >= 4, (heard, final.alternatives)


async def test_line_noise_alone_is_no_speech(stack: SpeechStack) -> None:
    final, heard = await greeting_hears(stack, "")
    assert heard is None and final.reason == "no_speech", final
