"""A whole spoken request ends its listening turn after the shorter quiet
(``[speech] end_silence_complete``, speech.endpointing), heard by the real Korean model at
the greeting; a number is not cut at its pauses. Audio seconds, not wall-clock time, so the
figures hold on any machine.

Its own module, run after test_korean_recognition: the Korean model's reading of a marginal
single word there ("상담원" as "민원") changed with the recognitions run before it in the
process, old code and new alike.
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


async def test_a_whole_request_is_answered_after_the_shorter_quiet(
        stack: SpeechStack, korean_models: SpeechModels, prompt_cache: Path) -> None:
    """"상담원 연결해 주세요" ends after ``end_silence_complete`` (0.25 s) of quiet, not the
    whole ``end_silence`` (0.4 s): counted in audio fed, so the same on any machine."""
    flat = greeting_stack(korean_models, prompt_cache, end_silence_complete=None)
    early, heard = await greeting_hears(stack, "상담원 연결해 주세요")
    late, _ = await greeting_hears(flat, "상담원 연결해 주세요")
    assert heard is not None and heard.intent == "agent", (early, heard)
    assert (early.reason, late.reason) == ("request", "silence"), early
    assert late.audio_seconds - early.audio_seconds == pytest.approx(0.15, abs=0.05)


async def test_a_pause_inside_a_case_number_is_not_taken_for_a_request(
        stack: SpeechStack) -> None:
    """Tried after each pause of 0.25 s, the early end finds digits (no whole request):
    the number goes on and is heard whole."""
    final, heard = await greeting_hears(stack, "이, 육, 일, 이, 공, 육, 공, 공, 공, 일, 구")
    assert final.reason != "request" and heard is not None and len(heard.digits) >= 4, final
