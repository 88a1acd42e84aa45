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

from pathlib import Path

import pytest

from speech.models import SpeechModels
from speech.stack import SpeechStack
from tests.speech.greeting_line import greeting_hears, greeting_stack


@pytest.fixture(scope="module")
def stack(korean_models: SpeechModels, prompt_cache: Path) -> SpeechStack:
    return greeting_stack(korean_models, prompt_cache)


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

