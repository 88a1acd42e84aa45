"""Which words so far may end a listening turn after the shorter quiet (speech.endpointing),
against the real language packs' grammars (every word known to the stand-in vocabulary)."""

import pytest

from speech.endpointing import GrammarRequestEnd, completes_request, ends_with_digit
from speech.grammar import LanguageGrammars
from speech.prompts import LanguagePack


class EveryWord:
    def vosk_model_find_word(self, word: str) -> int:
        return 1


@pytest.fixture(scope="module")
def korean() -> LanguageGrammars:
    return LanguageGrammars(LanguagePack.load("ko"), EveryWord())


@pytest.mark.parametrize(("grammar", "text", "complete"), [
    ("intake", "상담원 연결해 주세요", True),
    ("intake", "민원 확인", True),
    ("intake", "상담원", False),            # "상담원 연결해 주세요" may follow
    ("intake", "상담원 연결해", False),      # half a phrase
    ("intake", "운영 시간", False),          # "운영 시간 안내" may follow
    ("intake", "이 육 일", False),           # a case number goes on
    ("intake", "상담원 연결해 넷", False),    # ends with a digit
    ("intake", "민원 여덟", False),          # ends with a digit
    ("intake", "하나 민원 연결해 주세요", True),  # the model's reading, taken for a person
    ("intake", "", False),
    ("menu", "운영 시간 안내", True),
    ("menu", "다시", False),                 # "다시 들려 주세요"
    ("status_menu", "종료", True),
    ("yes_no", "네", True),
    ("yesno", "아니요", True),
    ("rating", "오", True),                  # a digit is a whole rating
    ("rating", "매우", False),
    ("rating", "매우 만족", True),
    ("digits", "일 이 삼 사", False),        # numbers never end early
    ("topic", "쓰레기", False),              # nor do questions
    ("language", "영어", True),
])
def test_whole_requests(korean: LanguageGrammars, grammar: str, text: str,
                        complete: bool) -> None:
    assert completes_request(text, lang="ko", grammar=grammar, grammars=korean) is complete


@pytest.mark.parametrize(("lang", "grammar", "text", "complete"), [
    ("en", "menu", "agent", True),
    ("en", "menu", "check", False),          # "check status", "check my case"
    ("en", "menu", "check status", True),
    ("en", "yes_no", "yes", True),
    ("en", "intake", "two six one", False),
    ("cmn", "menu", "转人工", True),
    ("cmn", "menu", "我想查一下我的工单", True),
    ("cmn", "rating", "五", True),
    ("cmn", "intake", "幺三五", False),
])
def test_whole_requests_in_the_other_packs(lang: str, grammar: str, text: str,
                                           complete: bool) -> None:
    grammars = LanguageGrammars(LanguagePack.load(lang), EveryWord())
    assert completes_request(text, lang=lang, grammar=grammar, grammars=grammars) is complete


def test_a_longer_phrase_continues_the_last_words(korean: LanguageGrammars) -> None:
    assert korean.continues("intake", "네 상담원")
    assert korean.continues("menu", "운영 시간")
    assert not korean.continues("menu", "운영 시간 안내")
    assert not korean.continues("intake", "상담원 연결해 주세요")


def test_ends_with_digit() -> None:
    assert ends_with_digit("민원 번호 이 육", "ko")
    assert not ends_with_digit("상담원 연결해 주세요", "ko")
    assert ends_with_digit("我要 三", "cmn") and not ends_with_digit("", "en")


def test_a_number_in_progress_is_not_worth_decoding_to_its_end(korean: LanguageGrammars) -> None:
    greeting = GrammarRequestEnd("ko", "intake", korean)
    assert greeting.may_complete("상담원 연결해 오 일")  # a request's tail misread: try
    assert not greeting.may_complete("이 육 일 이")       # a case number's first group
    assert greeting.completes("상담원 연결해 주세요") and not greeting.completes("상담원")
