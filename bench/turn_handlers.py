"""The two AudioSocket call handlers the speech benchmark compares, on the real MediaServer.

``StreamingTurns`` is the IVR's own path: every turn is ``IvrCall.perform([Collect(...)])``,
so the prompt plays with barge-in while the turn's streaming recognizer (``StackVoice`` ->
``SpeechStack.recognizer`` with the pack's grammar, fed frame by frame on the recognition
thread pool) already listens, and ``_gather`` returns as soon as vosk's endpointer closes the
utterance; the next turn's prompt is the answer.

``RecordThenRecognize`` is the common alternative: play the prompt, then record the caller
until ``end_silence`` seconds of low energy, then decode the recording with a fresh
KaldiRecognizer (same model, same grammar, same thread pool), then answer.

Both answer with the same prompt audio, and both count the audio they hand to vosk and the
wall time of each recognizer call (per 20 ms frame when streaming, per utterance when not).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import operator
import time
from array import array
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from ivr.audiosocket.protocol import Audio, Hangup
from ivr.audiosocket.session import Closed, MediaSession
from ivr.flows.menu import Collect, Input, Speech
from ivr.menu_call import CallerGone, IvrCall, IvrDeps
from ivr.voice import StackRecognition, StackVoice
from speech.recognizer import BYTES_PER_SECOND
from speech.stack import SpeechStack


@dataclass
class HandlerStats:
    heard: dict[str, list[str | None]] = field(default_factory=dict)
    """Call id -> the intent understood at each turn (None: nothing understood)."""
    texts: dict[str, list[str]] = field(default_factory=dict)
    audio_seconds: float = 0.0
    """Caller audio handed to vosk."""
    recognize_wall: list[float] = field(default_factory=list)
    """Wall time of each recognizer call, thread-pool queueing included."""

    def record(self, call_id: str, text: str, intent: str | None) -> None:
        self.heard.setdefault(call_id, []).append(intent)
        self.texts.setdefault(call_id, []).append(text)


# --- the IVR's streaming path ----------------------------------------------------------------


class TimedRecognition:
    """Wraps the IVR's ``StackRecognition`` to time each ``feed`` (one 20 ms frame)."""

    def __init__(self, inner: StackRecognition, stats: HandlerStats) -> None:
        self._inner = inner
        self._stats = stats

    async def feed(self, pcm: bytes) -> str | None:
        started = time.perf_counter()
        try:
            return await self._inner.feed(pcm)
        finally:
            self._stats.recognize_wall.append(time.perf_counter() - started)
            self._stats.audio_seconds += len(pcm) / BYTES_PER_SECOND

    def result(self) -> Speech | None:
        return self._inner.result()

    async def close(self) -> None:
        await self._inner.close()


class BenchVoice(StackVoice):
    """The IVR's voice adapter, plus fixed benchmark prompts and timed recognition.

    ``end_silence`` (when not None) is set on each recognizer SpeechStack builds, to measure
    ``StreamingRecognizer.end_silence`` before the stack configures it.
    """

    def __init__(self, stack: SpeechStack, prompts: dict[str, bytes], stats: HandlerStats,
                 *, end_silence: float | None = None) -> None:
        super().__init__(stack)
        self.prompts = prompts
        self.stats = stats
        self.end_silence = end_silence

    async def prompt_audio(self, lang: str, prompt: str, vars: dict[str, Any]) -> bytes:
        if prompt in self.prompts:
            return self.prompts[prompt]
        return await super().prompt_audio(lang, prompt, vars)

    def recognition(self, lang: str, grammar: str) -> TimedRecognition | None:  # type: ignore[override]
        recognizer = self.stack.recognizer(lang, grammar=grammar)  # as StackVoice does
        if recognizer is None:
            return None
        if self.end_silence is not None:
            recognizer.end_silence = self.end_silence
        return TimedRecognition(StackRecognition(self.stack, lang, grammar, recognizer),
                                self.stats)


class StreamingTurns:
    """MediaServer handler: IvrCall turns (prompt with barge-in, streaming recognition)."""

    def __init__(self, deps: IvrDeps, stats: HandlerStats, *, prompt: str,
                 grammar: str) -> None:
        self.deps = deps
        self.stats = stats
        self.collect = Collect(prompt=prompt, grammar=grammar)

    async def __call__(self, session: MediaSession) -> None:
        call = IvrCall(session, self.deps)
        try:
            while True:
                result: Input | None = await call.perform([self.collect])
                if isinstance(result, Speech):
                    self.stats.record(call.call_id, result.text, result.intent)
                else:
                    self.stats.record(call.call_id, "", None)
        except CallerGone:
            return


# --- record, then recognize ------------------------------------------------------------------


def frame_rms(pcm: bytes) -> float:
    samples = array("h", pcm[: len(pcm) - len(pcm) % 2])
    if not samples:
        return 0.0
    return math.sqrt(sum(map(operator.mul, samples, samples)) / len(samples))


class RecordThenRecognize:
    """MediaServer handler: prompt, record until ``end_silence`` s of quiet, decode, answer."""

    def __init__(
        self,
        stack: SpeechStack,
        stats: HandlerStats,
        *,
        lang: str,
        grammar: str,
        prompt_pcm: bytes,
        executor: Executor,
        end_silence: float = 1.0,
        speech_rms: float = 300.0,
        pre_roll: float = 0.3,
    ) -> None:
        self.stack = stack
        self.stats = stats
        self.lang = lang
        self.grammar = grammar
        self.grammar_json = stack.grammar_json(lang, grammar)
        self.model = stack.models.model(lang)
        self.prompt_pcm = prompt_pcm
        self.executor = executor
        self.end_silence_bytes = int(end_silence * BYTES_PER_SECOND)
        self.speech_rms = speech_rms
        self.pre_roll_frames = max(1, round(pre_roll / 0.02))
        self.no_speech_bytes = int(stack.config.no_speech_timeout * BYTES_PER_SECOND)
        self.max_utterance_bytes = int(stack.config.max_utterance * BYTES_PER_SECOND)

    async def __call__(self, session: MediaSession) -> None:
        call_id = str(session.call_id)
        while await self._play(session):
            pcm = await self._record(session)
            if pcm is None:
                return
            text = await self._recognize(pcm) if pcm else ""
            intent = self.stack.understand(self.lang, self.grammar, text).intent if text else None
            self.stats.record(call_id, text, intent)

    async def _play(self, session: MediaSession) -> bool:
        """Play the prompt (no barge-in); caller audio meanwhile is not recorded."""
        play = asyncio.create_task(session.play(self.prompt_pcm, interruptible=False))
        try:
            while not play.done():
                event = await session.next_event(timeout=0.1)
                if isinstance(event, Closed | Hangup):
                    return False
            return play.result()
        finally:
            if not play.done():
                play.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await play

    async def _record(self, session: MediaSession) -> bytes | None:
        """The utterance (with pre-roll and the trailing quiet), b"" for none, None: hung up."""
        before: deque[bytes] = deque(maxlen=self.pre_roll_frames)
        recorded = bytearray()
        heard = quiet = 0
        while True:
            event = await session.next_event(timeout=1.0)
            if isinstance(event, Closed | Hangup) or (event is None and session.closed):
                return None
            if not isinstance(event, Audio):
                continue
            pcm = event.pcm
            loud = frame_rms(pcm) >= self.speech_rms
            if not recorded:
                before.append(pcm)
                heard += len(pcm)
                if loud:
                    recorded += b"".join(before)
                elif heard >= self.no_speech_bytes:
                    return b""
                continue
            recorded += pcm
            quiet = 0 if loud else quiet + len(pcm)
            if quiet >= self.end_silence_bytes or len(recorded) >= self.max_utterance_bytes:
                return bytes(recorded)

    async def _recognize(self, pcm: bytes) -> str:
        started = time.perf_counter()
        raw = await asyncio.get_running_loop().run_in_executor(self.executor, self._decode, pcm)
        self.stats.recognize_wall.append(time.perf_counter() - started)
        self.stats.audio_seconds += len(pcm) / BYTES_PER_SECOND
        return " ".join(json.loads(raw).get("text", "").split())

    def _decode(self, pcm: bytes) -> str:
        from vosk import KaldiRecognizer

        rec = (KaldiRecognizer(self.model, 8000, self.grammar_json) if self.grammar_json
               else KaldiRecognizer(self.model, 8000))
        rec.AcceptWaveform(pcm)
        return rec.FinalResult()
