"""SpeechStack wiring with the real Korean model and no Mandarin or English model."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline.settings import load_settings
from speech.models import SpeechModels
from speech.stack import SpeechStack


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HOTLINE_SPEECH__PREWARM_PROMPTS", "false")
    return load_settings(fill_secrets=False)


async def test_keypad_only_languages_are_worded_for_keys(settings, korean_models: SpeechModels,
                                                         espeak: str) -> None:
    stack = await SpeechStack.start(settings, models=korean_models)
    try:
        health = stack.health()
        assert health["speech_languages"] == ["ko"]
        assert health["keypad_only_languages"] == ["cmn", "en"]
        assert "install-model cmn" in health["languages"]["cmn"]["reason"]
        assert stack.recognizer("cmn", grammar="menu") is None
        assert stack.recognizer("ko", grammar="menu", call_id="c1") is not None
        assert stack.recognizer("ko", prompt_id="ask_case_number_short") is not None
        assert stack.grammar_json("ko", "intake") == stack.grammar_for("ko", "greeting")
        assert stack.understand("ko", "intake", "영어").language == "en"
        assert stack.grammar_json("ko", "yesno") == stack.grammar_for("ko", "confirm_case_number")
        assert stack.understand("ko", "status_menu", "상담원 연결해 주세요").intent == "agent"
        assert "说" not in stack.render("cmn", "ask_case_number")
        assert "말씀" in stack.render("ko", "ask_case_number")
        assert stack.grammar_for("ko", "confirm_case_number") is not None
        audio = await stack.prompt_audio("en", "goodbye")
        assert len(audio) > 8000
        assert (Path(settings.state_dir) / "prompt-cache" / "en").is_dir()
    finally:
        await stack.close()
