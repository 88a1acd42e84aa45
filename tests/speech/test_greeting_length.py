"""Issue 13: the greeting is short. Measured on the audio espeak-ng really makes (the same
synthesiser, voice and speed the IVR plays), not on the text."""

from __future__ import annotations

import array
from pathlib import Path

import pytest

from speech.prompts import load_all
from speech.tts import SAMPLE_RATE, PromptSynthesizer, pcm_seconds

MANDARIN_LIMIT_S = 5.0
"""At most about 5 s of Mandarin speech (with the silence timeout, the queue join <= 6 s)."""
OTHER_LIMIT_S = 6.0
VOICE_RMS = 300
"""A 20 ms frame louder than this is voice."""


def voice_ends_s(pcm: bytes) -> float:
    """Where the last voiced 20 ms frame ends."""
    samples = array.array("h", pcm)
    frame = SAMPLE_RATE // 50
    last = 0
    for start in range(0, len(samples), frame):
        chunk = samples[start:start + frame]
        if chunk and (sum(s * s for s in chunk) / len(chunk)) ** 0.5 > VOICE_RMS:
            last = start + len(chunk)
    return last / SAMPLE_RATE


@pytest.mark.parametrize("lang, limit", [("cmn", MANDARIN_LIMIT_S), ("en", OTHER_LIMIT_S),
                                         ("ko", OTHER_LIMIT_S)])
async def test_the_greeting_is_short(espeak: str, prompt_cache: Path, lang: str,
                                     limit: float) -> None:
    packs = load_all()
    synth = PromptSynthesizer(prompt_cache, packs=packs, espeak=espeak)
    try:
        for speech in (True, False):
            pcm = await synth.audio(lang, "greeting", packs[lang].render("greeting",
                                                                         speech=speech))
            spoken = voice_ends_s(pcm)
            print(f"greeting {lang} ({'speech' if speech else 'keys'}): {pcm_seconds(pcm):.2f} s "
                  f"of audio, voice ends at {spoken:.2f} s")
            assert 2.0 < spoken <= pcm_seconds(pcm) <= limit
    finally:
        await synth.close()
