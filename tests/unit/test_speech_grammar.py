import json
import logging

import pytest

from speech.grammar import (
    PROMPT_GRAMMAR,
    LanguageGrammars,
    build_grammars,
    check_vocabulary,
    pack_phrases,
)
from speech.prompts import PROMPT_IDS, LanguagePack


class FakeVocabulary:
    def __init__(self, words: set[str]) -> None:
        self.words = words
        self.lookups = 0

    def vosk_model_find_word(self, word: str) -> int:
        self.lookups += 1
        return 1 if word in self.words else -1


def test_phrases_with_unknown_words_are_dropped_whole() -> None:
    vocab = FakeVocabulary({"상담원", "연결해", "주세요", "민원", "조회"})
    kept, dropped = check_vocabulary(vocab, ["상담원 연결해 주세요", "민원 조회", "운영 시간"])
    assert kept == ["상담원 연결해 주세요", "민원 조회"]
    assert dropped == {"운영", "시간"}


def test_segmentation_splits_into_the_fewest_known_words() -> None:
    vocab = FakeVocabulary({"맞", "아요", "연결해", "주세요", "人工", "服务", "人", "工"})
    kept, dropped = check_vocabulary(vocab, ["맞아요", "연결해주세요", "人工服务", "없는말"],
                                     segment=True)
    assert kept == ["맞 아요", "연결해 주세요", "人工 服务"]
    assert dropped == {"없는말"}


def test_without_segmentation_unknown_tokens_are_dropped() -> None:
    kept, dropped = check_vocabulary(FakeVocabulary({"맞", "아요"}), ["맞아요"])
    assert (kept, dropped) == ([], {"맞아요"})


def test_duplicates_and_blank_phrases_are_removed() -> None:
    kept, _ = check_vocabulary(FakeVocabulary({"yes"}), ["yes", "yes", "  "])
    assert kept == ["yes"]


def test_language_grammars_log_dropped_words_and_add_unk(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    pack = LanguagePack.load("en")
    words = {w for kind in ("menu", "yes_no", "digits", "rating")
             for p in pack_phrases(pack, kind) for w in p.split()}
    words -= {"operator"}
    vocab = FakeVocabulary(words | {"[unk]"})
    with caplog.at_level(logging.WARNING, logger="speech.grammar"):
        grammars = LanguageGrammars(pack, vocab)
    assert "operator" in caplog.text
    menu = json.loads(grammars.json("menu") or "[]")
    assert "operator" not in menu and "agent" in menu and menu[-1] == "[unk]"
    assert grammars.dropped["menu"] == {"operator"}
    assert grammars.for_prompt("confirm_case_number") == grammars.json("yes_no")
    assert grammars.for_prompt("confirm_case_number_short") == grammars.json("yesno")
    assert grammars.for_prompt("ask_case_number_keys") == grammars.json("digits")
    assert grammars.for_prompt("greeting") == grammars.json("intake")
    assert grammars.for_prompt("goodbye") is None
    intake = json.loads(grammars.json("intake") or "[]")
    # the greeting hears a case number or a request; languages are switched by key
    assert {"check my case", "agent", "service information", "five"} <= set(intake)
    assert "goodbye" not in intake and "repeat" not in intake and "korean" not in intake
    status = json.loads(grammars.json("status_menu") or "[]")
    assert "goodbye" in status and "repeat" in status and "check my case" not in status
    with pytest.raises(KeyError, match="unknown grammar"):
        grammars.json("nonsense")


def test_empty_grammar_means_free_decoding() -> None:
    grammars = LanguageGrammars(LanguagePack.load("ko"), FakeVocabulary(set()))
    assert grammars.json("menu") is None


def test_prompt_grammar_names_real_prompts() -> None:
    assert set(PROMPT_GRAMMAR) <= set(PROMPT_IDS)


def test_build_grammars_only_for_languages_with_speech() -> None:
    class Models:
        def has_speech(self, lang: str) -> bool:
            return lang == "ko"

        def model(self, lang: str) -> FakeVocabulary:
            return FakeVocabulary({"네"})

    grammars = build_grammars(Models(), {"ko": LanguagePack.load("ko"),
                                         "en": LanguagePack.load("en")})
    assert set(grammars) == {"ko"}
    assert grammars["ko"].phrases("yes_no") == ["네"]


@pytest.mark.parametrize(("lang", "text", "whole"), [
    ("ko", "민원 조회", True),
    ("ko", "이 육 일 이 공", True),        # a digit string: one-digit phrases in a row
    ("ko", "민원 조회 이 육", True),
    ("ko", "민원 여덟", False),             # a request cut off by a digit (issue 13)
    ("ko", "하나 민원 조회 주세요", False),  # 주세요 alone is no phrase
    ("ko", "", False),
    ("en", "check status", True),
    ("en", "check six", False),
    ("en", "one two oh four", True),
])
def test_readings_made_of_whole_phrases(lang: str, text: str, whole: bool) -> None:
    pack = LanguagePack.load(lang)
    words = {w for p in pack_phrases(pack, "intake") for w in p.split()}
    grammars = LanguageGrammars(pack, FakeVocabulary(words))
    assert grammars.reads_as_phrases("intake", text) is whole


def test_only_the_greeting_asks_for_several_readings() -> None:
    from speech.grammar import GRAMMAR_KINDS, N_BEST
    assert {kind for kind in GRAMMAR_KINDS if N_BEST.get(kind, 0) > 1} == {"intake"}
