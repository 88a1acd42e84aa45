"""Streaming recognition of one call's audio with vosk, endpointed by the stream itself.

One ``StreamingRecognizer`` per call (vosk recognizers are stateful and not thread-safe;
the Model behind them is shared). ``feed`` takes the caller's 8 kHz s16le audio as it
arrives and returns an update when something changed:

- the first non-empty partial result (``speech_started``): the barge-in signal, stop the
  prompt that is playing;
- a changed partial result;
- a final result when vosk's endpointer decides the utterance ended (AcceptWaveform returned
  True after trailing silence), or when the utterance reached ``max_utterance`` seconds;
- with ``end_silence`` set (seconds; None by default), a final result with reason
  ``silence`` once that much quiet audio followed the caller's first words. Quiet is 26 dB
  below the turn's loudest audio and under ``QUIET_RMS_MAX``. vosk's own endpointer follows
  the model's conf/model.conf rules, which vosk 0.3.45 cannot change per recognizer; with the
  Korean model it ends an utterance 0.6-1.0 s after the last word (bench/speech_turns.py);
- with ``end_silence_complete`` and a ``request_end`` (speech.endpointing) as well, a final
  result with reason ``request`` after that shorter quiet, when the words decoded to their
  end are a whole request; if they are not, the same audio is decoded again and the turn
  goes on (semantic endpointing; BENCHMARKS.md, session 30: spoken turns at 80 calls p95
  472 -> 336 ms);
- a final ``no_speech`` result when ``no_speech_timeout`` seconds of audio went by without
  any word.

With ``alternatives`` set (n > 0) a final result also carries vosk's n best readings of the
utterance with their likelihoods (``Hypothesis``), best first, so that the caller of the
recognizer can prefer a lower reading that makes sense over a top one that does not (see
``speech.understanding.understand_readings``); partial results are unchanged.

Both timeouts count audio fed (bytes / 16000 per second), never wall-clock time, so they
behave the same in tests that feed audio faster than real time. AcceptWaveform releases the
GIL, so it runs on a thread pool (one passed in, or a shared module default), never on the
event loop.

Two things keep the pool's queue short when many calls listen at once (``[speech]``
``voice_gate_rms`` and ``min_chunk``): before the caller's first words, audio quieter than
the gate is not decoded at all (only its last 0.3 s is kept, and decoded ahead of the first
loud chunk, so no word onset is lost; the gate stays open a second after loud audio), and
audio goes to vosk in chunks of at least ``min_chunk`` seconds rather than per 20 ms frame.
A caller listening to a prompt in silence then costs no thread hop at all.

The end of an utterance is not held back by that chunking: quiet is measured 20 ms frame by
frame as audio arrives, and the frame that completes ``end_silence`` sends what is pending
to vosk at once, with the final decode in the same trip to the pool and ahead of ordinary
chunks (``submit_urgent``, speech.metered_pool). Measured with ``bench.load`` at 80 calls
(BENCHMARKS.md, session 29; with the queue's AMI variables sent together): spoken turns p50
499 -> 460 ms, p95 554 -> 512 ms over 104 turns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import operator
import os
import sys
import threading
import warnings
from array import array
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from speech.metered_pool import MeteredThreadPool
from speech.turn_endings import TURN_ENDINGS

log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 8000
BYTES_PER_SECOND: Final = SAMPLE_RATE * 2

EndReason = Literal["endpoint", "silence", "request", "max_utterance", "no_speech", "flush"]
"""Why an utterance ended: vosk's endpointer, ``end_silence`` of quiet, a whole request
after the shorter ``end_silence_complete``, the length cap, nothing said, or flushed."""

QUIET_RATIO: Final = 0.05
"""``end_silence``: audio is quiet below this fraction of the turn's loudest RMS (-26 dB)..."""
QUIET_RMS_MAX: Final = 1000.0
"""...and below this RMS (about -30 dBFS), whatever the peak."""
GATE_PREROLL_SECONDS: Final = 0.3
"""Quiet audio kept before the first loud chunk and decoded with it (word onsets)."""
GATE_HANG_SECONDS: Final = 1.0
"""Once loud audio opened the gate, this much quiet (and no word) closes it again."""

_default_executor: ThreadPoolExecutor | None = None
_default_executor_lock = threading.Lock()


def default_executor() -> ThreadPoolExecutor:
    """The shared recognition thread pool, created on first use (one thread per core)."""
    global _default_executor
    with _default_executor_lock:
        if _default_executor is None:
            _default_executor = MeteredThreadPool(  # metered: the busy share on /metrics
                max_workers=os.cpu_count() or 2, thread_name_prefix="vosk")
        return _default_executor


class RequestEnd(Protocol):
    """Whether the words so far may end a turn after the shorter quiet (speech.endpointing
    implements it for a grammar)."""

    def may_complete(self, partial: str) -> bool:
        """Cheap, on the partial reading: worth decoding to the end to find out."""
        ...

    def completes(self, text: str) -> bool:
        """On the final decode: the words are a whole request."""
        ...


@dataclass(frozen=True, slots=True)
class RecognizedWord:
    word: str
    confidence: float
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """One of vosk's n best readings of an utterance."""

    text: str
    likelihood: float
    """Total log-likelihood (acoustic and grammar); only differences between the readings
    of one utterance mean anything."""


@dataclass(frozen=True, slots=True)
class RecognitionUpdate:
    text: str
    is_final: bool
    speech_started: bool = False
    """True on the one update where the caller's first word appeared (barge-in)."""
    confidence: float | None = None
    """Final results: mean per-word confidence (0..1); None when there are no words. With
    ``alternatives``: the first reading's share of the n best readings' probability."""
    words: tuple[RecognizedWord, ...] = ()
    reason: EndReason | None = None
    """Final results: why the utterance ended."""
    audio_seconds: float = 0.0
    """Audio fed since the utterance (listening turn) began."""
    alternatives: tuple[Hypothesis, ...] = ()
    """Final results of a recognizer asked for ``alternatives``: the n best readings, best
    first (the first is ``text``)."""


def _python_rms(pcm: bytes) -> float:
    samples = array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return math.sqrt(sum(map(operator.mul, samples, samples)) / len(samples)) if samples else 0.0


def _c_rms() -> Any:
    """audioop.rms (C; stdlib up to 3.12, the audioop-lts package after), or None."""
    if sys.byteorder == "big":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    return lambda pcm: float(audioop.rms(pcm, 2)) if pcm else 0.0


_rms = _c_rms() or _python_rms
"""RMS of s16le audio, in C where available: it runs on the event loop for every chunk."""


@dataclass(frozen=True, slots=True)
class _Final:
    text: str
    words: tuple[RecognizedWord, ...] = ()
    alternatives: tuple[Hypothesis, ...] = ()
    confidence: float | None = None


def _words(entries: Any, confidence: float | None = None) -> tuple[RecognizedWord, ...]:
    return tuple(
        RecognizedWord(w.get("word", ""),
                       float(w.get("conf", confidence if confidence is not None else 0.0)),
                       float(w.get("start", 0.0)), float(w.get("end", 0.0)))
        for w in entries or ()
    )


def _parse_final(raw: str) -> _Final:
    """vosk's final result: one reading with per-word confidences, or (with
    SetMaxAlternatives) the n best readings with their likelihoods."""
    data = json.loads(raw)
    if "alternatives" not in data:
        words = _words(data.get("result"))
        confidence = (sum(w.confidence for w in words) / len(words)) if words else None
        return _Final(" ".join(data.get("text", "").split()), words, (), confidence)
    hypotheses = [(" ".join(str(a.get("text", "")).split()), a)
                  for a in data.get("alternatives") or ()]
    hypotheses = [(text, a) for text, a in hypotheses if text]
    if not hypotheses:
        return _Final("")
    alternatives = tuple(Hypothesis(text, float(a.get("confidence", 0.0)))
                         for text, a in hypotheses)
    # The readings' share of the n-best probability mass: how sure the decoder was of the
    # first (vosk gives no per-word confidences with alternatives).
    best = alternatives[0].likelihood
    confidence = 1.0 / sum(math.exp(min(0.0, h.likelihood - best)) for h in alternatives)
    top = hypotheses[0]
    return _Final(top[0], _words(top[1].get("result"), confidence), alternatives, confidence)


class StreamingRecognizer:
    """Recognizes one call's speech, one utterance (listening turn) at a time.

    ``reset(grammar)`` starts a new turn, optionally with another grammar (a JSON list of
    phrases, see ``speech.grammar``; None decodes freely). Do not call ``feed`` concurrently.
    """

    def __init__(
        self,
        model: Any,
        grammar: str | None = None,
        *,
        sample_rate: int = SAMPLE_RATE,
        executor: Executor | None = None,
        no_speech_timeout: float | None = 6.0,
        max_utterance: float | None = 15.0,
        end_silence: float | None = None,
        alternatives: int = 0,
        call_id: str = "-",
        recognizer_factory: Any = None,
        voice_gate_rms: float | None = None,
        min_chunk: float = 0.0,
        end_silence_after_digits: float | None = None,
        ends_with_digit: Callable[[str], bool] | None = None,
        end_silence_complete: float | None = None,
        request_end: RequestEnd | None = None,
    ) -> None:
        self._model = model
        self._grammar = grammar
        self._sample_rate = sample_rate
        self._bytes_per_second = sample_rate * 2
        self._executor = executor
        self.no_speech_timeout = no_speech_timeout
        self.max_utterance = max_utterance
        self.end_silence = end_silence
        self.alternatives = alternatives
        self.end_silence_after_digits = end_silence_after_digits
        """When the words so far end with a digit (``ends_with_digit``), wait this long
        instead: callers pause between the groups of a number, not after "an agent"."""
        self._ends_with_digit = ends_with_digit
        self.end_silence_complete = end_silence_complete
        """After this much quiet the words so far are decoded to the end once: when they make
        a whole request (``request_end``, see speech.endpointing) that is the answer;
        otherwise the same utterance is decoded again and listening goes on."""
        self._request_end = request_end
        self._call_id = call_id
        self._factory = recognizer_factory
        self.voice_gate_rms = voice_gate_rms
        self._min_chunk_bytes = int(min_chunk * self._bytes_per_second)
        self._preroll_bytes = int(GATE_PREROLL_SECONDS * self._bytes_per_second)
        self._hang_bytes = int(GATE_HANG_SECONDS * self._bytes_per_second)
        self.gated_bytes = 0
        """Audio the voice gate kept from vosk (all turns)."""
        self._rec: Any = None
        self._grammar_applied: str | None = None
        self._lock = asyncio.Lock()
        self._pending = b""
        self._measured = 0
        """Bytes of ``_pending`` already measured for quiet."""
        self._heard = bytearray()
        """The audio vosk was given since its utterance began (worker thread): decoded again
        when an early end was tried and the words were not a whole request."""
        self._reset_turn()

    # -- turn state -----------------------------------------------------------------------

    def _reset_turn(self) -> None:
        self._turn_bytes = 0
        self._speech_at_bytes: int | None = None
        self._last_partial = ""
        self._done = False
        self._peak_rms = 0.0
        self._quiet_bytes = 0
        self._gate_open = False
        self._gate_quiet = 0
        self._preroll = b""
        self._tried_early = False
        """The early end was tried in this run of quiet."""

    @property
    def audio_seconds(self) -> float:
        return self._turn_bytes / self._bytes_per_second

    @property
    def speech_started(self) -> bool:
        return self._speech_at_bytes is not None

    @property
    def done(self) -> bool:
        """A final result was returned for this turn; ``reset`` starts the next one."""
        return self._done

    async def reset(self, grammar: str | Literal[False] | None = False) -> None:
        """Start a new listening turn; pass a grammar (or None for free decoding) to switch."""
        async with self._lock:
            if grammar is not False:
                self._grammar = grammar
            rec = self._rec
            if rec is not None:
                await self._run(self._reset_vosk, rec)
            self._pending = b""
            self._measured = 0
            self._reset_turn()

    def _reset_vosk(self, rec: Any) -> None:
        rec.Reset()
        self._heard.clear()
        if self._grammar != self._grammar_applied:
            if self._grammar is None:
                self._rec = None  # vosk cannot drop a grammar: a fresh recognizer decodes freely
            else:
                rec.SetGrammar(self._grammar)
                self._grammar_applied = self._grammar

    # -- vosk calls (worker thread) -------------------------------------------------------

    def _ensure(self) -> Any:
        if self._rec is None:
            if self._factory is not None:
                rec = self._factory(self._model, self._sample_rate, self._grammar)
            else:
                from vosk import KaldiRecognizer

                rec = (KaldiRecognizer(self._model, self._sample_rate, self._grammar)
                       if self._grammar is not None
                       else KaldiRecognizer(self._model, self._sample_rate))
            rec.SetWords(True)
            if self.alternatives:
                rec.SetMaxAlternatives(self.alternatives)
            self._rec = rec
            self._grammar_applied = self._grammar
        return self._rec

    def _take(self, rec: Any, pcm: bytes) -> bool:
        """AcceptWaveform, keeping the utterance's audio where an early end may be tried;
        True when vosk endpointed (its utterance begins anew)."""
        if self._request_end is not None:
            self._heard += pcm
        if rec.AcceptWaveform(pcm):
            self._heard.clear()
            return True
        return False

    def _accept(self, pcm: bytes) -> tuple[bool, str]:
        rec = self._ensure()
        if self._take(rec, pcm):
            return True, rec.Result()
        return False, rec.PartialResult()

    def _final(self) -> str:
        self._heard.clear()
        return self._ensure().FinalResult()

    async def _run(self, fn: Any, *args: Any, urgent: bool = False) -> Any:
        """Run a vosk call on the pool; ``urgent`` ones (the end of an utterance, which the
        caller waits for) go before the chunks other calls submitted earlier, where the
        pool has that lane (speech.metered_pool)."""
        executor = self._executor or default_executor()
        submit_urgent = getattr(executor, "submit_urgent", None) if urgent else None
        if submit_urgent is not None:
            return await asyncio.wrap_future(submit_urgent(fn, *args))
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    # -- public ---------------------------------------------------------------------------

    async def feed(self, pcm: bytes) -> RecognitionUpdate | None:
        """Recognize the next chunk of caller audio; an update when anything changed.

        After a final result the turn is over: further audio is ignored (returns None)
        until ``reset``.
        """
        async with self._lock:
            if self._done:
                return None
            pcm = self._pending + pcm
            usable = len(pcm) - len(pcm) % 2
            if self.end_silence is not None and usable > self._measured:
                self._measure_quiet(pcm[self._measured:usable])
                self._measured = usable
            ending = ("final" if self._quiet_done(self._last_partial)
                      else "try" if self._early_end_due() else None)
            if not usable or (usable < self._min_chunk_bytes and not ending):
                self._pending = pcm
                return None
            pcm, self._pending, self._measured = pcm[:usable], pcm[usable:], 0
            self._turn_bytes += len(pcm)
            if self._gated(pcm):
                return await self._check_timeouts()
            if self._preroll:
                pcm, self._preroll = self._preroll + pcm, b""
            if ending:
                # The quiet that ends the utterance is complete (or the shorter one after
                # which a whole request may end it): decode the rest and the final result
                # in one trip to the pool, not two (bench.load: speech turns).
                return await self._accept_and_end(pcm, early=ending == "try")
            endpoint, raw = await self._run(self._accept, pcm)
            if endpoint:
                return await self._endpointed(raw)
            return self._partial(json.loads(raw).get("partial", "")) or await self._check_timeouts()

    async def _accept_and_end(self, pcm: bytes, *, early: bool = False
                              ) -> RecognitionUpdate | None:
        if early:
            self._tried_early = True
        job = self._accept_then_try if early else self._accept_then_final
        kind, raw, final_raw = await self._run(job, pcm, urgent=True)
        if kind == "endpoint":
            return await self._endpointed(raw)
        update = self._partial(json.loads(raw).get("partial", ""))
        if final_raw is None:
            # The last words changed to ones that wait longer (a digit), or were not yet a
            # whole request: not the end yet.
            return update or await self._check_timeouts()
        final = _parse_final(final_raw)
        if final.text:
            return self._finish(final, "request" if early else "silence")
        self._last_partial = ""  # the words did not survive the final decode: keep listening
        self._quiet_bytes = 0
        return update or await self._check_timeouts()

    async def _endpointed(self, raw: str) -> RecognitionUpdate | None:
        """vosk's own endpointer ended the utterance: its result, or (silence endpointed,
        nothing decoded) keep listening."""
        final = _parse_final(raw)
        if final.text:
            return self._finish(final, "endpoint")
        self._last_partial = ""
        return await self._check_timeouts()

    def _accept_then_final(self, pcm: bytes) -> tuple[str, str, str | None]:
        """Worker thread: decode the last chunk, then take the final result unless vosk
        endpointed on its own or the words now end with a digit that waits longer."""
        rec = self._ensure()
        if self._take(rec, pcm):
            return "endpoint", rec.Result(), None
        raw = rec.PartialResult()
        partial = " ".join(str(json.loads(raw).get("partial", "")).split())
        if not self._quiet_done(partial or self._last_partial):
            return "partial", raw, None
        self._heard.clear()
        return "partial", raw, rec.FinalResult()

    def _accept_then_try(self, pcm: bytes) -> tuple[str, str, str | None]:
        """Worker thread: decode the last chunk and the utterance to its end; keep that final
        result when it is a whole request, else decode the utterance's audio again so that
        listening goes on as if it had not been tried (the cost of a miss: one decode of the
        utterance so far, about 20 ms of a pool thread per second of speech with the
        greeting's grammar)."""
        rec = self._ensure()
        if self._take(rec, pcm):
            return "endpoint", rec.Result(), None
        raw = rec.PartialResult()
        final_raw = rec.FinalResult()
        if self._request_end is not None and self._request_end.completes(
                _parse_final(final_raw).text):
            self._heard.clear()
            return "partial", raw, final_raw
        heard, self._heard = bytes(self._heard), bytearray()
        TURN_ENDINGS.count("request_missed")
        rec.Reset()
        if self._take(rec, heard):
            return "endpoint", rec.Result(), None
        return "partial", rec.PartialResult(), None

    def _early_end_due(self) -> bool:
        """Quiet reached ``end_silence_complete`` after the caller's words, the early end was
        not yet tried in this run of quiet, and the partial reading makes it worth trying (a
        number in progress is not: a miss costs a decode of the whole utterance, 60-100 ms
        of a pool thread for a spoken case number, against 14 ms for a hit)."""
        return (self._request_end is not None and self.end_silence_complete is not None
                and self.end_silence is not None and self._speech_at_bytes is not None
                and not self._tried_early
                and self._quiet_bytes >= self.end_silence_complete * self._bytes_per_second
                and self._request_end.may_complete(self._last_partial))

    def _silence_needed(self, words: str) -> float | None:
        """Seconds of quiet that end the utterance after these words (None: vosk's
        endpointer decides)."""
        if (self.end_silence_after_digits is not None and self._ends_with_digit is not None
                and self._ends_with_digit(words)):
            return self.end_silence_after_digits
        return self.end_silence

    def _quiet_done(self, words: str) -> bool:
        """The caller spoke and then was quiet long enough to end the utterance (asked for
        every frame: the words are looked at only once the shorter quiet is reached)."""
        if self._speech_at_bytes is None or self.end_silence is None:
            return False  # without end_silence no quiet is measured: vosk's endpointer decides
        shortest = min(self.end_silence, self.end_silence_after_digits or math.inf)
        if self._quiet_bytes < shortest * self._bytes_per_second:
            return False
        needed = self._silence_needed(words)
        return needed is not None and self._quiet_bytes >= needed * self._bytes_per_second

    def _gated(self, pcm: bytes) -> bool:
        """True when this chunk is quiet audio before the caller's first words: kept out of
        vosk (its tail kept as pre-roll for the first loud chunk)."""
        if self.voice_gate_rms is None or self._speech_at_bytes is not None:
            return False
        if _rms(pcm) >= self.voice_gate_rms:
            self._gate_open, self._gate_quiet = True, 0
            return False
        if self._gate_open:
            self._gate_quiet += len(pcm)
            if self._gate_quiet < self._hang_bytes:
                return False
            self._gate_open = False
        self._preroll = (self._preroll + pcm)[-self._preroll_bytes:]
        self.gated_bytes += len(pcm)
        return True

    def _measure_quiet(self, pcm: bytes) -> None:
        """Count the quiet run at the end of the audio, 20 ms frame by frame as it arrives
        (not per decoded chunk): the end of speech is seen within a frame of it."""
        step = self._bytes_per_second // 50
        for start in range(0, len(pcm), step):
            frame = pcm[start:start + step]
            rms = _rms(frame)
            self._peak_rms = max(self._peak_rms, rms)
            quiet = rms < min(QUIET_RMS_MAX, QUIET_RATIO * self._peak_rms)
            if quiet:
                self._quiet_bytes += len(frame)
            else:
                self._quiet_bytes, self._tried_early = 0, False

    def _partial(self, partial: str) -> RecognitionUpdate | None:
        partial = " ".join(partial.split())
        if not partial or partial == self._last_partial:
            return None
        self._last_partial = partial
        started = self._speech_at_bytes is None
        if started:
            self._speech_at_bytes = self._turn_bytes
            log.debug("call %s: speech started after %.2f s: %r", self._call_id,
                      self.audio_seconds, partial)
        return RecognitionUpdate(partial, False, speech_started=started,
                                 audio_seconds=self.audio_seconds)

    async def _check_timeouts(self) -> RecognitionUpdate | None:
        seconds = self.audio_seconds
        if (self._speech_at_bytes is None and self.no_speech_timeout is not None
                and seconds >= self.no_speech_timeout):
            self._done = True
            await self._run(self._final)  # clear vosk's buffers for the next turn
            TURN_ENDINGS.count("no_speech")
            return RecognitionUpdate("", True, reason="no_speech", audio_seconds=seconds)
        if self.max_utterance is not None and seconds >= self.max_utterance:
            return await self._flush("max_utterance")
        return None

    async def _flush(self, reason: EndReason) -> RecognitionUpdate:
        final = _parse_final(await self._run(self._final, urgent=True))
        if not final.text:
            self._done = True
            TURN_ENDINGS.count("no_speech" if reason != "flush" else reason)
            return RecognitionUpdate("", True, reason="no_speech" if reason != "flush" else reason,
                                     audio_seconds=self.audio_seconds)
        return self._finish(final, reason)

    def _finish(self, final: _Final, reason: EndReason) -> RecognitionUpdate:
        self._done = True
        TURN_ENDINGS.count(reason)
        text, words, confidence = final.text, final.words, final.confidence
        started = self._speech_at_bytes is None
        if started:
            self._speech_at_bytes = self._turn_bytes
        log.debug("call %s: final %r conf=%s (%s, %.2f s)", self._call_id, text, confidence,
                  reason, self.audio_seconds)
        return RecognitionUpdate(text, True, speech_started=started, confidence=confidence,
                                 words=words, reason=reason, audio_seconds=self.audio_seconds,
                                 alternatives=final.alternatives)

    async def finish(self) -> RecognitionUpdate | None:
        """Flush the utterance (caller pressed a key, hung up, or the prompt gave up).

        Returns the final result of whatever was said, with reason ``flush`` (empty text
        when nothing was), or None when this turn already ended.
        """
        async with self._lock:
            if self._done or self._rec is None:
                self._done = True
                return None
            return await self._flush("flush")
