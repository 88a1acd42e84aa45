"""Adapter from the call flow's needs (prompt audio, listening turns) to the speech stack."""

from __future__ import annotations

from typing import Any

from ivr.flows.menu import Speech
from speech.recognizer import StreamingRecognizer
from speech.stack import SpeechStack


class StackRecognition:
    """One listening turn: feeds audio, reports barge-in and the caller's final words."""

    def __init__(self, stack: SpeechStack, lang: str, grammar: str,
                 recognizer: StreamingRecognizer) -> None:
        self._stack = stack
        self._lang = lang
        self._grammar = grammar
        self._recognizer = recognizer
        self._result: Speech | None = None

    async def feed(self, pcm: bytes) -> str | None:
        if self._result is not None:
            return None
        update = await self._recognizer.feed(pcm)
        if update is None:
            return None
        if update.is_final:
            if update.text.strip():
                # The reading understood: the recognizer's best, or a close second that is
                # made of whole phrases when the best is not (speech.understanding).
                u = self._stack.understand(self._lang, self._grammar, update.text,
                                           update.alternatives)
                self._result = Speech(u.text, intent=u.intent, digits=u.digits or "",
                                      yes=u.yes, confidence=update.confidence,
                                      language=u.language, rating=u.rating)
                return "final"
            return None
        return "partial" if update.speech_started else None

    def result(self) -> Speech | None:
        return self._result

    async def close(self) -> None:
        """Nothing to release: a recognizer holds no OS resources and is dropped with us."""


class StackVoice:
    def __init__(self, stack: SpeechStack) -> None:
        self.stack = stack

    async def prompt_audio(self, lang: str, prompt: str, vars: dict[str, Any]) -> bytes:
        return await self.stack.prompt_audio(lang, prompt, **vars)

    async def transcribe(self, lang: str, pcm: bytes, *, call_id: str = "-") -> str | None:
        """Free decoding of recorded speech (a survey comment); None when ``lang`` has no
        recognizer. Runs at roughly real time on a small machine: call it after the caller
        has gone, not while they wait."""
        recognizer = self.stack.recognizer(lang, call_id=call_id)
        if recognizer is None:
            return None
        texts: list[str] = []
        step = 16000  # one second of 8 kHz s16le per feed
        for start in range(0, len(pcm), step):
            update = await recognizer.feed(pcm[start:start + step])
            if update is not None and update.is_final:
                if update.text:
                    texts.append(update.text)
                await recognizer.reset()
        last = await recognizer.finish()
        if last is not None and last.text:
            texts.append(last.text)
        return " ".join(texts)

    def recognition(self, lang: str, grammar: str) -> StackRecognition | None:
        recognizer = self.stack.recognizer(lang, grammar=grammar)
        if recognizer is None:
            return None
        return StackRecognition(self.stack, lang, grammar, recognizer)
