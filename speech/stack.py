"""The speech side of the hotline, built once by the composition root and passed to the IVR.

    speech = await SpeechStack.start(settings)      # models loaded, packs checked
    audio = await speech.prompt_audio("ko", "main_menu")
    rec = speech.recognizer("ko", grammar="menu", call_id=call_id)   # None: keypad only
    update = await rec.feed(pcm)    # partial (barge-in) / final
    meaning = speech.understand("ko", "menu", update.text)   # .intent, .digits, .yes...
    ...
    await speech.close()

Static prompts are synthesised in a background task after start-up (``prewarm_task``); a
call that needs one sooner gets it on demand, sharing the same synthesis.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speech.endpointing import GrammarRequestEnd, ends_with_digit
from speech.grammar import (
    N_BEST,
    LanguageGrammars,
    build_grammars,
    grammar_kind,
    prompt_grammar,
)
from speech.languages import LANGUAGES, Language, check_language
from speech.models import SpeechModels
from speech.prompts import LanguagePack, load_all
from speech.recognizer import Hypothesis, StreamingRecognizer
from speech.tts import PromptSynthesizer, prewarm_all
from speech.understanding import Understanding, understand, understand_readings

if TYPE_CHECKING:
    from speech.settings import SpeechHost, SpeechSettings

log = logging.getLogger(__name__)


def prompt_cache_dir(settings: SpeechHost) -> Path:
    return settings.speech.prompt_cache_dir or settings.state_dir / "prompt-cache"


def prompt_override_dir(settings: SpeechHost) -> Path:
    return settings.speech.prompt_override_dir or settings.state_dir / "prompts"


def installed_models_dir(settings: SpeechHost) -> Path:
    return settings.speech.installed_models_dir or settings.state_dir / "speech-models"


@dataclass(eq=False)
class SpeechStack:
    config: SpeechSettings
    models: SpeechModels
    packs: dict[Language, LanguagePack]
    grammars: dict[str, LanguageGrammars]
    synth: PromptSynthesizer
    executor: Executor | None = None
    prewarm_task: asyncio.Task[int] | None = field(default=None, repr=False)

    @classmethod
    async def start(cls, settings: SpeechHost, *, models: SpeechModels | None = None,
                    executor: Executor | None = None) -> SpeechStack:
        """Load packs (raises LanguagePackError if one is broken) and models (never raises
        for a bad model: that language becomes keypad only), then start prewarming."""
        packs = load_all(prompt_override_dir(settings))
        models = models or SpeechModels.from_settings(settings)
        await models.load()
        grammars = build_grammars(models, packs)
        synth = PromptSynthesizer(prompt_cache_dir(settings), prompt_override_dir(settings),
                                  packs=packs)
        stack = cls(settings.speech, models, packs, grammars, synth, executor)
        if settings.speech.prewarm_prompts:
            stack.prewarm_task = asyncio.get_running_loop().create_task(
                prewarm_all(synth, packs.values()), name="speech-prewarm")
            stack.prewarm_task.add_done_callback(_log_prewarm_failure)
        return stack

    def has_speech(self, lang: str) -> bool:
        return self.models.has_speech(lang)

    def pack(self, lang: str) -> LanguagePack:
        return self.packs[check_language(lang)]

    def render(self, lang: str, prompt_id: str, **variables: Any) -> str:
        """Prompt text, worded for keypad-only callers when ``lang`` has no recognizer."""
        return self.pack(lang).render(prompt_id, speech=self.has_speech(lang), **variables)

    async def prompt_audio(self, lang: str, prompt_id: str, **variables: Any) -> bytes:
        """8 kHz s16le PCM of a prompt (recording, cache or espeak-ng)."""
        return await self.synth.audio(lang, prompt_id, self.render(lang, prompt_id, **variables))

    def recognizer(self, lang: str, *, grammar: str | None = None, prompt_id: str | None = None,
                   call_id: str = "-") -> StreamingRecognizer | None:
        """A new recognizer for one call, listening with a grammar named by kind (``menu``,
        ``yesno``, ``digits``...) or by the prompt it answers; None when ``lang`` is keypad
        only. Switch grammars for the next prompt with ``await rec.reset(grammar_json)``."""
        if not self.has_speech(lang):
            return None
        grammar_json = None
        if grammar is not None:
            grammar_json = self.grammar_json(lang, grammar)
        elif prompt_id is not None:
            grammar_json = self.grammar_for(lang, prompt_id)
        digits = grammar in ("digits", "intake") or (prompt_id or "").startswith(
            ("ask_case", "ask_phone", "greeting"))
        kind = grammar_kind(grammar) if grammar is not None else (
            prompt_grammar(prompt_id) if prompt_id is not None else None)
        grammars = self.grammars.get(lang)
        request_end = (GrammarRequestEnd(lang, kind, grammars)
                       if kind and grammar_json and grammars is not None else None)
        return StreamingRecognizer(
            self.models.model(lang), grammar_json, executor=self.executor, call_id=call_id,
            no_speech_timeout=self.config.no_speech_timeout,
            max_utterance=self.config.max_utterance,
            end_silence=self.config.end_silence,
            # Where a number may be said, a pause after a digit is not yet the end of it.
            end_silence_after_digits=self.config.end_silence_digits if digits else None,
            ends_with_digit=functools.partial(ends_with_digit, lang=lang) if digits else None,
            # A whole request ("an agent, please") needs no more thought: answered sooner.
            end_silence_complete=self.config.end_silence_complete,
            request_end=request_end,
            voice_gate_rms=self.config.voice_gate_rms, min_chunk=self.config.min_chunk,
            alternatives=N_BEST.get(kind, 0) if kind and grammar_json else 0)

    def grammar_for(self, lang: str, prompt_id: str) -> str | None:
        grammars = self.grammars.get(lang)
        return grammars.for_prompt(prompt_id) if grammars else None

    def grammar_json(self, lang: str, grammar: str) -> str | None:
        """The vosk grammar of a kind (``menu``, ``status_menu``, ``yesno``, ``digits``,
        ``rating``, ``language``) for ``lang``; None means free decoding."""
        grammars = self.grammars.get(lang)
        return grammars.json(grammar) if grammars else None

    def understand(self, lang: str, grammar: str, text: str,
                   readings: Sequence[Hypothesis] = ()) -> Understanding:
        """What ``text`` means after a prompt listening with ``grammar``; with the
        recognizer's n best ``readings``, the best of them that is made of the grammar's
        whole phrases and means something (``understand_readings``), else ``text``."""
        grammars = self.grammars.get(lang)
        if readings and grammars is not None:
            chosen = understand_readings(
                readings, lang, grammar, lambda t: grammars.reads_as_phrases(grammar, t))
            if chosen is not None:
                return chosen
        return understand(text, lang, grammar)

    def health(self) -> dict[str, Any]:
        """Per language: speech or keypad only and why; and whether prompts are ready."""
        prewarm = self.prewarm_task
        return {
            "languages": self.models.status(),
            "speech_languages": list(self.models.languages_with_speech),
            "keypad_only_languages": [lang for lang in LANGUAGES if not self.has_speech(lang)],
            "prompts_prewarmed": bool(prewarm and prewarm.done() and not prewarm.cancelled()
                                      and prewarm.exception() is None),
        }

    async def close(self) -> None:
        if self.prewarm_task is not None and not self.prewarm_task.done():
            self.prewarm_task.cancel()
            await asyncio.gather(self.prewarm_task, return_exceptions=True)
        await self.synth.close()


def _log_prewarm_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("prompt prewarm failed; prompts will be synthesised on demand",
                  exc_info=task.exception())
