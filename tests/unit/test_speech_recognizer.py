"""StreamingRecognizer against a scripted stand-in for vosk's KaldiRecognizer.

The stand-in hears "speech" in any frame with a non-zero sample and endpoints after 0.5 s of
trailing silence, like vosk's rule 2; the real model is exercised in tests/speech.
"""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import pytest

from speech.recognizer import StreamingRecognizer
from speech.turn_endings import TURN_ENDINGS

FRAME = 320  # 20 ms at 8 kHz s16le
SPEECH = b"\x10\x00" * (FRAME // 2)
SILENCE = bytes(FRAME)
WORDS = ("상담원", "연결해", "주세요")


class FakeKaldi:
    instances: ClassVar[list["FakeKaldi"]] = []

    def __init__(self, model: object, rate: int, grammar: str | None) -> None:
        self.rate = rate
        self.grammar = grammar
        self.speech_frames = 0
        self.trailing_silence = 0
        self.silence_endpoints = 0
        self.threads: set[str] = set()
        self.words_on = False
        FakeKaldi.instances.append(self)

    def SetWords(self, on: bool) -> None:
        self.words_on = on

    def SetGrammar(self, grammar: str) -> None:
        self.grammar = grammar

    def Reset(self) -> None:
        self.speech_frames = self.trailing_silence = 0

    def _text(self) -> str:
        return " ".join(WORDS[: min(len(WORDS), self.speech_frames // 10)])

    def AcceptWaveform(self, data: bytes) -> bool:
        self.threads.add(threading.current_thread().name)
        for i in range(0, len(data), FRAME):
            if any(data[i : i + FRAME]):
                self.speech_frames += 1
                self.trailing_silence = 0
            else:
                self.trailing_silence += 1
        if self.trailing_silence >= 25:
            if self.speech_frames == 0:
                self.trailing_silence = 0
                self.silence_endpoints += 1
            return True
        return False

    def PartialResult(self) -> str:
        return json.dumps({"partial": self._text()})

    def Result(self) -> str:
        text = self._text()
        words = [{"word": w, "conf": c, "start": 0.0, "end": 0.1}
                 for w, c in zip(text.split(), (1.0, 0.5, 0.9), strict=False)]
        self.Reset()
        return json.dumps({"text": text, "result": words})

    FinalResult = Result


@pytest.fixture(autouse=True)
def _clear_instances() -> None:
    FakeKaldi.instances.clear()


def make(**kwargs) -> StreamingRecognizer:
    kwargs.setdefault("no_speech_timeout", 5.0)
    kwargs.setdefault("max_utterance", 15.0)
    return StreamingRecognizer(object(), '["상담원"]', recognizer_factory=FakeKaldi, **kwargs)


async def feed_frames(rec: StreamingRecognizer, audio: bytes) -> list:
    updates = []
    for i in range(0, len(audio), FRAME):
        update = await rec.feed(audio[i : i + FRAME])
        if update is not None:
            updates.append(update)
    return updates


async def test_partials_then_a_final_at_the_endpoint() -> None:
    rec = make()
    updates = await feed_frames(rec, SILENCE * 10 + SPEECH * 30 + SILENCE * 40)
    partials = [u for u in updates if not u.is_final]
    finals = [u for u in updates if u.is_final]
    assert [u.text for u in partials] == ["상담원", "상담원 연결해", "상담원 연결해 주세요"]
    assert [u.speech_started for u in partials] == [True, False, False]
    assert partials[0].audio_seconds == pytest.approx(0.4)  # 10 silent + 10 speech frames
    (final,) = finals
    assert final.text == "상담원 연결해 주세요" and final.reason == "endpoint"
    assert final.confidence == pytest.approx(0.8)
    assert [w.word for w in final.words] == list(WORDS)
    assert final.audio_seconds == pytest.approx((10 + 30 + 25) * 0.02)
    assert rec.done
    assert FakeKaldi.instances[0].words_on


async def test_audio_after_the_final_waits_for_reset() -> None:
    rec = make()
    await feed_frames(rec, SPEECH * 10 + SILENCE * 25)
    assert rec.done
    assert await rec.feed(SPEECH) is None
    await rec.reset()
    assert not rec.done and rec.audio_seconds == 0
    updates = await feed_frames(rec, SPEECH * 10)
    assert updates[0].speech_started


async def test_no_speech_timeout_counts_audio_not_wall_clock() -> None:
    rec = make(no_speech_timeout=1.0)
    updates = await feed_frames(rec, SILENCE * 100)  # fed in far less than 2 s
    assert len(updates) == 1
    (update,) = updates
    assert update.is_final and update.reason == "no_speech" and update.text == ""
    assert update.audio_seconds == pytest.approx(1.0)
    assert FakeKaldi.instances[0].silence_endpoints == 2  # vosk's silence endpoints ignored


async def test_max_utterance_cuts_long_speech() -> None:
    rec = make(max_utterance=1.0)
    updates = await feed_frames(rec, SPEECH * 80)
    final = updates[-1]
    assert final.is_final and final.reason == "max_utterance"
    assert final.text == "상담원 연결해 주세요"
    assert final.audio_seconds == pytest.approx(1.0)


async def test_finish_flushes_what_was_said() -> None:
    rec = make()
    await feed_frames(rec, SPEECH * 12)
    final = await rec.finish()
    assert final is not None and final.reason == "flush" and final.text == "상담원"
    assert await rec.finish() is None


async def test_finish_before_any_audio() -> None:
    assert await make().finish() is None


async def test_odd_byte_chunks_are_reassembled() -> None:
    rec = make()
    assert await rec.feed(b"\x10") is None
    await rec.feed(b"\x00" + SPEECH[:-1])
    assert rec.audio_seconds == pytest.approx(0.02)


async def test_grammar_switches_on_reset() -> None:
    rec = make()
    await rec.feed(SPEECH)
    await rec.reset('["네", "아니요"]')
    assert FakeKaldi.instances[0].grammar == '["네", "아니요"]'
    await rec.reset(None)  # free decoding needs a fresh recognizer
    await rec.feed(SPEECH)
    assert len(FakeKaldi.instances) == 2 and FakeKaldi.instances[1].grammar is None


async def test_vosk_runs_on_the_given_executor_not_the_event_loop() -> None:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-vosk") as pool:
        rec = make(executor=pool)
        await feed_frames(rec, SPEECH * 5)
    threads = FakeKaldi.instances[0].threads
    assert threads and all(name.startswith("test-vosk") for name in threads)


async def test_end_silence_answers_before_vosks_endpointer() -> None:
    """With end_silence 0.2 s the final comes after 10 quiet frames, not vosk's 25."""
    rec = make(end_silence=0.2)
    updates = await feed_frames(rec, SPEECH * 30 + SILENCE * 40)
    (final,) = [u for u in updates if u.is_final]
    assert final.reason == "silence" and final.text == "상담원 연결해 주세요"
    assert final.audio_seconds == pytest.approx((30 + 10) * 0.02)


async def test_end_silence_waits_for_words_and_ignores_short_pauses() -> None:
    rec = make(end_silence=0.2)
    # Leading silence is not the end of anything; a 0.1 s pause mid-phrase is not either.
    updates = await feed_frames(rec, SILENCE * 30 + SPEECH * 10 + SILENCE * 5 + SPEECH * 10)
    assert not any(u.is_final for u in updates)
    updates = await feed_frames(rec, SILENCE * 12)
    assert [u.reason for u in updates if u.is_final] == ["silence"]


class FakeKaldiNBest(FakeKaldi):
    """vosk with SetMaxAlternatives: final results are the n best readings."""

    def __init__(self, model: object, rate: int, grammar: str | None) -> None:
        super().__init__(model, rate, grammar)
        self.max_alternatives = 0

    def SetMaxAlternatives(self, n: int) -> None:
        self.max_alternatives = n

    def Result(self) -> str:
        text = self._text()
        self.Reset()
        if not self.max_alternatives:
            return json.dumps({"text": text})
        alternatives = [{"text": text, "confidence": 120.4,
                         "result": [{"word": w, "start": 0.0, "end": 0.1}
                                    for w in text.split()]},
                        {"text": "민원 조회", "confidence": 120.4 - 1.0986}]
        return json.dumps({"alternatives": alternatives[:self.max_alternatives]})

    FinalResult = Result


async def test_alternatives_carry_the_n_best_readings() -> None:
    rec = StreamingRecognizer(object(), '["상담원"]', recognizer_factory=FakeKaldiNBest,
                              alternatives=10)
    updates = await feed_frames(rec, SPEECH * 30 + SILENCE * 30)
    final = updates[-1]
    assert final.is_final and final.text == "상담원 연결해 주세요"
    assert [a.text for a in final.alternatives] == ["상담원 연결해 주세요", "민원 조회"]
    assert FakeKaldiNBest.instances[0].max_alternatives == 10
    # the first reading's share of the n-best mass: e^0 / (e^0 + e^-1.0986) = 0.75
    assert final.confidence == pytest.approx(0.75, abs=1e-3)
    assert [w.word for w in final.words] == ["상담원", "연결해", "주세요"]


async def test_no_alternatives_unless_asked() -> None:
    rec = StreamingRecognizer(object(), '["상담원"]', recognizer_factory=FakeKaldiNBest)
    updates = await feed_frames(rec, SPEECH * 30 + SILENCE * 30)
    assert updates[-1].alternatives == () and FakeKaldiNBest.instances[0].max_alternatives == 0


class CountingKaldi(FakeKaldi):
    """Records every chunk handed to vosk."""

    def __init__(self, model: object, rate: int, grammar: str | None) -> None:
        super().__init__(model, rate, grammar)
        self.chunks: list[bytes] = []

    def AcceptWaveform(self, data: bytes) -> bool:
        self.chunks.append(data)
        return super().AcceptWaveform(data)


LOUD = b"\x00\x08" * (FRAME // 2)  # 2048: ordinary speech level
HUM = b"\x20\x00" * (FRAME // 2)  # 32: line noise, under the gate


def gated(**kwargs) -> StreamingRecognizer:
    kwargs.setdefault("no_speech_timeout", 5.0)
    return StreamingRecognizer(object(), '["상담원"]', recognizer_factory=CountingKaldi,
                               voice_gate_rms=120.0, **kwargs)


async def test_quiet_audio_before_the_first_words_is_not_decoded() -> None:
    rec = gated()
    assert await feed_frames(rec, HUM * 100) == []
    assert CountingKaldi.instances == [] or CountingKaldi.instances[0].chunks == []
    assert rec.gated_bytes == 100 * FRAME and rec.audio_seconds == pytest.approx(2.0)


async def test_the_first_loud_chunk_is_decoded_with_the_quiet_just_before_it() -> None:
    rec = gated()
    await feed_frames(rec, HUM * 50)
    updates = await feed_frames(rec, LOUD * 12)
    kaldi = CountingKaldi.instances[0]
    assert kaldi.chunks[0] == HUM * 15 + LOUD  # 0.3 s of pre-roll, then the loud frame
    assert updates and updates[0].speech_started


async def test_the_gate_never_delays_no_input() -> None:
    rec = gated(no_speech_timeout=1.0)
    updates = await feed_frames(rec, HUM * 60)
    assert [(u.is_final, u.reason) for u in updates] == [(True, "no_speech")]
    assert updates[0].audio_seconds == pytest.approx(1.0)


async def test_once_the_caller_speaks_everything_is_decoded() -> None:
    """Silence after words is what ends the utterance: it must reach vosk and end_silence."""
    rec = gated(end_silence=0.2)
    await feed_frames(rec, HUM * 5)
    updates = await feed_frames(rec, LOUD * 30 + HUM * 40)
    (final,) = [u for u in updates if u.is_final]
    assert final.reason == "silence"
    assert rec.gated_bytes == 5 * FRAME


async def test_without_a_gate_everything_is_decoded() -> None:
    rec = StreamingRecognizer(object(), None, recognizer_factory=CountingKaldi)
    await feed_frames(rec, HUM * 20)
    assert len(CountingKaldi.instances[0].chunks) == 20 and rec.gated_bytes == 0


async def test_min_chunk_hands_vosk_fewer_larger_chunks() -> None:
    rec = StreamingRecognizer(object(), None, recognizer_factory=CountingKaldi, min_chunk=0.06)
    updates = await feed_frames(rec, LOUD * 30)
    chunks = CountingKaldi.instances[0].chunks
    assert [len(c) for c in chunks] == [3 * FRAME] * 10
    assert updates[0].speech_started  # barge-in still comes, at most 40 ms later


def digits_aware() -> StreamingRecognizer:
    """"상담원" stands for a digit word here: after it the caller may go on with a number."""
    return make(end_silence=0.2, end_silence_after_digits=0.4,
                ends_with_digit=lambda text: text.split()[-1:] == ["상담원"])


async def test_a_pause_after_a_digit_is_not_yet_the_end() -> None:
    rec = digits_aware()
    updates = await feed_frames(rec, SPEECH * 10 + SILENCE * 15)  # "상담원", 0.3 s quiet
    assert not any(u.is_final for u in updates)
    updates = await feed_frames(rec, SILENCE * 6)
    (final,) = [u for u in updates if u.is_final]
    assert final.reason == "silence" and final.audio_seconds == pytest.approx((10 + 20) * 0.02)


async def test_other_words_end_after_the_short_silence() -> None:
    rec = digits_aware()
    updates = await feed_frames(rec, SPEECH * 20 + SILENCE * 15)  # "상담원 연결해"
    (final,) = [u for u in updates if u.is_final]
    assert final.reason == "silence" and final.audio_seconds == pytest.approx((20 + 10) * 0.02)


class CountingPool(ThreadPoolExecutor):
    """Counts the trips a recognizer makes to its pool."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.trips = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.trips += 1
        return super().submit(fn, *args, **kwargs)


async def test_the_end_of_speech_is_timed_by_the_frame_not_by_the_chunk() -> None:
    """Quiet is measured per 20 ms frame: the quiet frames of the chunk in which the words
    stop count, and the final does not wait for a chunk to fill."""
    rec = make(end_silence=0.2, min_chunk=0.06)
    updates = await feed_frames(rec, SPEECH * 31 + SILENCE * 20)
    (final,) = [u for u in updates if u.is_final]
    assert final.reason == "silence" and final.text == "상담원 연결해 주세요"
    assert final.audio_seconds == pytest.approx((31 + 10) * 0.02)


async def test_the_last_chunk_and_the_final_result_take_one_trip_to_the_pool() -> None:
    with CountingPool() as pool:
        rec = make(end_silence=0.2, min_chunk=0.06, executor=pool)
        assert not [u for u in await feed_frames(rec, SPEECH * 30 + SILENCE * 9) if u.is_final]
        trips = pool.trips
        updates = await feed_frames(rec, SILENCE)  # the tenth quiet frame: 0.2 s
    (final,) = [u for u in updates if u.is_final]
    assert final.reason == "silence" and pool.trips == trips + 1


class WholePhrase:
    """The whole phrase is a request, its first words alone are not; ``worth_trying`` False
    stands for a partial reading that holds a number in progress."""

    def __init__(self, *, worth_trying: bool = True) -> None:
        self.worth_trying = worth_trying

    def may_complete(self, partial: str) -> bool:
        return self.worth_trying

    def completes(self, text: str) -> bool:
        return text == "상담원 연결해 주세요"


class NeverWhole(WholePhrase):
    def completes(self, text: str) -> bool:
        return False


def request_aware(**kwargs) -> StreamingRecognizer:  # type: ignore[no-untyped-def]
    return make(end_silence=0.4, end_silence_complete=0.2,
                request_end=WholePhrase(), **kwargs)


async def test_a_whole_request_ends_after_the_shorter_quiet() -> None:
    rec = request_aware()
    updates = await feed_frames(rec, SPEECH * 30 + SILENCE * 25)
    (final,) = [u for u in updates if u.is_final]
    assert final.reason == "request" and final.text == "상담원 연결해 주세요"
    assert final.audio_seconds == pytest.approx((30 + 10) * 0.02)


async def test_words_that_are_no_whole_request_keep_listening_after_the_try() -> None:
    """At 0.2 s the utterance is decoded to its end ("상담원 연결해": not a request); the
    same audio is decoded again, so the final at 0.4 s still has the words."""
    rec = request_aware()
    updates = await feed_frames(rec, SPEECH * 20 + SILENCE * 19)
    assert not any(u.is_final for u in updates)
    updates = await feed_frames(rec, SILENCE * 5)
    (final,) = [u for u in updates if u.is_final]
    assert final.reason == "silence" and final.text == "상담원 연결해"
    assert final.audio_seconds == pytest.approx((20 + 20) * 0.02)


async def test_the_caller_going_on_after_a_tried_end_is_one_utterance() -> None:
    rec = request_aware()
    updates = await feed_frames(rec, SPEECH * 20 + SILENCE * 12 + SPEECH * 10 + SILENCE * 12)
    (final,) = [u for u in updates if u.is_final]
    assert final.reason == "request" and final.text == "상담원 연결해 주세요"
    assert final.audio_seconds == pytest.approx((20 + 12 + 10 + 10) * 0.02)


class FinalCountingKaldi(FakeKaldi):
    finals = 0

    def FinalResult(self) -> str:
        FinalCountingKaldi.finals += 1
        return self.Result()


async def test_the_early_end_is_tried_once_per_run_of_quiet() -> None:
    FinalCountingKaldi.finals = 0
    missed = TURN_ENDINGS.snapshot().get("request_missed", 0)
    rec = StreamingRecognizer(object(), '["상담원"]', recognizer_factory=FinalCountingKaldi,
                              end_silence=0.4, end_silence_complete=0.1,
                              request_end=NeverWhole())
    await feed_frames(rec, SPEECH * 20 + SILENCE * 19)
    assert FinalCountingKaldi.finals == 1
    assert TURN_ENDINGS.snapshot()["request_missed"] == missed + 1  # on /metrics
    (final,) = [u for u in await feed_frames(rec, SILENCE) if u.is_final]
    assert final.reason == "silence" and FinalCountingKaldi.finals == 2


async def test_no_early_end_is_tried_where_the_partial_says_it_is_not_worth_it() -> None:
    FinalCountingKaldi.finals = 0
    rec = StreamingRecognizer(object(), '["상담원"]', recognizer_factory=FinalCountingKaldi,
                              end_silence=0.4, end_silence_complete=0.1,
                              request_end=WholePhrase(worth_trying=False))
    (final,) = [u for u in await feed_frames(rec, SPEECH * 30 + SILENCE * 20) if u.is_final]
    assert final.reason == "silence" and FinalCountingKaldi.finals == 1


async def test_without_a_request_check_the_shorter_quiet_does_nothing() -> None:
    rec = make(end_silence=0.4, end_silence_complete=0.2)
    updates = await feed_frames(rec, SPEECH * 30 + SILENCE * 25)
    (final,) = [u for u in updates if u.is_final]
    assert final.reason == "silence" and final.audio_seconds == pytest.approx((30 + 20) * 0.02)
