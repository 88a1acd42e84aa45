"""A caller's words at the greeting as bench.intake's callers say them: espeak-ng words
trimmed of their silence, over low line noise, through G.711 u-law and back, fed in 20 ms
frames to the recognizer the stack builds for the greeting and read as ivr.voice reads it."""

from __future__ import annotations

import audioop
import random
from pathlib import Path
from typing import Any

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


def greeting_stack(models: SpeechModels, prompt_cache: Path, **settings: Any) -> SpeechStack:
    """A speech stack on the session's models and prompt cache (no prewarming)."""
    packs = load_all()
    return SpeechStack(SpeechSettings(prewarm_prompts=False, **settings), models, packs,
                       build_grammars(models, packs), PromptSynthesizer(prompt_cache, packs=packs))


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
