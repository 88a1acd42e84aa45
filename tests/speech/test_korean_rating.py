"""The real Korean vosk model hearing a spoken survey rating under the rating grammar.

Measured with espeak-ng's Korean voice (Nov 2026): 매우 만족 and 만족 are heard right;
보통 (heard 오), 불만족 (오 만족) and 매우 불만족 (매우 오) are not -- espeak's voice, not
a caller's, so only the two measured phrases are asserted here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from speech.grammar import LanguageGrammars
from speech.models import SpeechModels
from speech.numbers import rating
from speech.prompts import LanguagePack
from speech.recognizer import BYTES_PER_SECOND, StreamingRecognizer
from speech.tts import PromptSynthesizer

FRAME = 320


@pytest.mark.parametrize(("phrase", "score"), [("매우 만족", 5), ("만족", 4)])
async def test_spoken_rating_is_understood(korean_models: SpeechModels, prompt_cache: Path,
                                           phrase: str, score: int) -> None:
    grammars = LanguageGrammars(LanguagePack.load("ko"), korean_models.model("ko"))
    pcm = await PromptSynthesizer(prompt_cache).audio("ko", None, phrase)
    audio = bytes(BYTES_PER_SECOND // 5) + pcm + bytes(BYTES_PER_SECOND * 3 // 2)
    rec = StreamingRecognizer(korean_models.model("ko"), grammars.json("rating"))
    final = None
    for i in range(0, len(audio), FRAME):
        update = await rec.feed(audio[i:i + FRAME])
        if update is not None and update.is_final:
            final = update
            break
    assert final is not None and final.reason == "endpoint"
    assert rating(final.text, "ko") == score, final.text


async def test_comment_transcription_decodes_freely_where_there_is_a_model(
        korean_models: SpeechModels, tmp_path: Path) -> None:
    """The words are not asserted: free decoding of espeak's Korean is mostly wrong."""
    from hotline.settings import Settings
    from ivr.voice import StackVoice
    from speech.stack import SpeechStack

    settings = Settings(state_dir=tmp_path, speech={"prewarm_prompts": False})
    stack = await SpeechStack.start(settings, models=korean_models)
    try:
        voice = StackVoice(stack)
        pcm = await stack.synth.audio("ko", None, "상담원이 아주 친절했습니다")
        text = await voice.transcribe("ko", bytes(8000) + pcm + bytes(16000))
        assert isinstance(text, str) and text.strip()
        assert await voice.transcribe("cmn", pcm) is None  # no Mandarin model here
    finally:
        await stack.close()
