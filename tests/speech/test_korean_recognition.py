"""The real Korean vosk model hearing espeak-ng speech through StreamingRecognizer.

Utterances are fed in 20 ms frames (320 bytes of 8 kHz s16le), as AudioSocket delivers
them. The phrases below are the ones measured to be recognized (``python -m speech.measure``
lists every phrase of the packs with what was heard): espeak-ng's Korean is far from a
caller's voice, so single short words and digit strings are mostly misheard and are not
asserted here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from speech.grammar import LanguageGrammars
from speech.intents import match_intent
from speech.models import SpeechModels
from speech.numbers import yes_no
from speech.prompts import LanguagePack
from speech.recognizer import BYTES_PER_SECOND, RecognitionUpdate, StreamingRecognizer
from speech.tts import PromptSynthesizer, pcm_seconds

FRAME = 320
LEAD = bytes(BYTES_PER_SECOND // 5)  # 0.2 s before the caller speaks
TRAIL = bytes(BYTES_PER_SECOND * 3 // 2)  # 1.5 s after


@pytest.fixture(scope="module")
def grammars(korean_models: SpeechModels) -> LanguageGrammars:
    return LanguageGrammars(LanguagePack.load("ko"), korean_models.model("ko"))


async def listen(recognizer: StreamingRecognizer, pcm: bytes
                 ) -> list[tuple[float, RecognitionUpdate]]:
    """Feed frame by frame; (audio seconds fed, update) until the final result."""
    audio = LEAD + pcm + TRAIL
    updates = []
    for i in range(0, len(audio), FRAME):
        update = await recognizer.feed(audio[i : i + FRAME])
        if update is not None:
            updates.append(((i + FRAME) / BYTES_PER_SECOND, update))
            if update.is_final:
                break
    return updates


@pytest.mark.parametrize(
    ("phrase", "intent"),
    [
        ("상담원 연결해 주세요", "agent"),
        ("상담원", "agent"),
        ("민원 조회", "check_status"),
        ("처리 결과", "check_status"),
        ("운영 시간", "service_info"),
        ("반복", "repeat"),
        ("안녕히 계세요", "end"),
    ],
)
async def test_menu_phrases_are_understood(korean_models: SpeechModels,
                                           grammars: LanguageGrammars, prompt_cache: Path,
                                           phrase: str, intent: str) -> None:
    pcm = await PromptSynthesizer(prompt_cache).audio("ko", None, phrase)
    rec = StreamingRecognizer(korean_models.model("ko"), grammars.json("menu"), call_id="t")
    updates = await listen(rec, pcm)
    final = updates[-1][1]
    assert final.is_final and final.reason == "endpoint", updates
    assert match_intent(final.text, "ko").intent == intent, final.text


async def test_partial_results_come_first_and_trailing_silence_ends_the_utterance(
        korean_models: SpeechModels, grammars: LanguageGrammars, prompt_cache: Path) -> None:
    pcm = await PromptSynthesizer(prompt_cache).audio("ko", None, "상담원 연결해 주세요")
    speech_end = pcm_seconds(LEAD + pcm)
    rec = StreamingRecognizer(korean_models.model("ko"), grammars.json("menu"))
    updates = await listen(rec, pcm)
    partials = [(t, u) for t, u in updates if not u.is_final]
    final_at, final = updates[-1]
    # barge-in: the first partial (speech_started) arrives while the caller is still talking
    first_at, first = partials[0]
    assert first.speech_started and first.text
    assert first_at < speech_end
    assert [u.speech_started for _, u in partials[1:]] == [False] * (len(partials) - 1)
    # endpointing: the final comes from vosk's endpointer within a second of silence
    assert final.is_final and final.reason == "endpoint" and final.text.startswith("상담원")
    assert speech_end < final_at < speech_end + 1.0
    assert final.confidence is not None and 0 < final.confidence <= 1
    assert not final.speech_started  # already signalled by the partial


@pytest.mark.parametrize(("phrase", "answer"),
                         [("네", True), ("맞아요", True), ("아니요", False), ("아닙니다", False)])
async def test_yes_no_answers(korean_models: SpeechModels, grammars: LanguageGrammars,
                              prompt_cache: Path, phrase: str, answer: bool) -> None:
    pcm = await PromptSynthesizer(prompt_cache).audio("ko", None, phrase)
    rec = StreamingRecognizer(korean_models.model("ko"), grammars.json("yes_no"))
    final = (await listen(rec, pcm))[-1][1]
    assert yes_no(final.text, "ko") is answer, final.text


async def test_silence_times_out_as_no_speech(korean_models: SpeechModels,
                                              grammars: LanguageGrammars) -> None:
    rec = StreamingRecognizer(korean_models.model("ko"), grammars.json("menu"),
                              no_speech_timeout=2.0)
    silence = bytes(BYTES_PER_SECOND * 3)
    updates = []
    for i in range(0, len(silence), FRAME):
        update = await rec.feed(silence[i : i + FRAME])
        if update is not None:
            updates.append(update)
    assert len(updates) == 1
    assert updates[0].reason == "no_speech" and updates[0].audio_seconds == pytest.approx(2.0)


async def test_one_recognizer_serves_several_turns_with_different_grammars(
        korean_models: SpeechModels, grammars: LanguageGrammars, prompt_cache: Path) -> None:
    synth = PromptSynthesizer(prompt_cache)
    rec = StreamingRecognizer(korean_models.model("ko"), grammars.json("menu"))
    first = (await listen(rec, await synth.audio("ko", None, "민원 조회")))[-1][1]
    assert match_intent(first.text, "ko").intent == "check_status"
    await rec.reset(grammars.json("yes_no"))
    second = (await listen(rec, await synth.audio("ko", None, "네")))[-1][1]
    assert yes_no(second.text, "ko") is True


async def test_grammar_decoding_is_much_faster_than_real_time(
        korean_models: SpeechModels, grammars: LanguageGrammars, prompt_cache: Path) -> None:
    pcm = LEAD + await PromptSynthesizer(prompt_cache).audio("ko", None, "운영 시간 안내") + TRAIL
    rec = StreamingRecognizer(korean_models.model("ko"), grammars.json("menu"),
                              no_speech_timeout=None, max_utterance=None)
    started = time.perf_counter()
    for i in range(0, len(pcm), FRAME):
        if (update := await rec.feed(pcm[i : i + FRAME])) is not None and update.is_final:
            break
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5 * pcm_seconds(pcm)  # measured ~0.02x CPU; generous for slow CI


async def test_a_request_for_a_person_at_the_greeting_ends_without_the_digit_pause(
        korean_models: SpeechModels, grammars: LanguageGrammars, prompt_cache: Path) -> None:
    """The greeting's grammar takes case numbers too, whose groups callers pause between
    (end_silence_digits 0.8 s); "상담원 연결해 주세요" ends no digit group, so it is answered
    after the ordinary 0.4 s."""
    from speech.endpointing import ends_with_digit

    pcm = await PromptSynthesizer(prompt_cache).audio("ko", None, "상담원 연결해 주세요")

    def recognizer(**silence: object) -> StreamingRecognizer:
        return StreamingRecognizer(korean_models.model("ko"), grammars.json("intake"),
                                   **silence)  # type: ignore[arg-type]

    aware = (await listen(recognizer(
        end_silence=0.4, end_silence_after_digits=0.8,
        ends_with_digit=lambda text: ends_with_digit(text, "ko")), pcm))[-1]
    flat = (await listen(recognizer(end_silence=0.8), pcm))[-1]
    assert aware[1].reason == flat[1].reason == "silence"
    assert match_intent(aware[1].text, "ko").intent == "agent", aware[1].text
    assert flat[0] - aware[0] == pytest.approx(0.4, abs=0.1)
