"""Properties of spoken case numbers in cmn, en and ko: what a caller says parses back to the
digits they meant, on the path the IVR uses (recognized text -> ``understand(..., "digits")``
-> ``CallFlow`` -> Damm check).

The example tables live in test_speech_numbers.py and test_case_numbers.py; here hypothesis
builds utterances the way callers say (and recognizers write) numbers: digit by digit with
each language's variants, pairs as tens ("二十八", "twenty-eight", "이십삼"), English runs
("double oh"), Arabic and full-width digits, fillers around the number and Korean endings.
Where a way of saying is ambiguous by design the strategies avoid it; each such restriction
is commented where it is made.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.cases.numbers import CASE_NUMBER_LENGTH, damm_digit, is_valid_case_number, make_case_number
from ivr.flows.menu import (
    Action,
    Begin,
    CallFlow,
    Collect,
    Keys,
    LookupCase,
    RecordFailure,
    Speech,
    State,
)
from speech.languages import LANGUAGES, Language
from speech.number_words import cmn_number, en_number, ko_number, say_number_digits
from speech.numbers import spoken_digits
from speech.understanding import understand

FAST = settings(max_examples=100, deadline=None)

DIGITS = "0123456789"
FULL_WIDTH = {d: chr(ord(d) + 0xFEE0) for d in DIGITS}
"""0 -> ０: callers who type, and recognizers that emit full-width digits."""

digit_runs = st.lists(st.tuples(st.sampled_from(DIGITS), st.integers(1, 4)), max_size=8).map(
    lambda runs: "".join(d * n for d, n in runs))
"""Digits in runs (2200017, 500): what double/triple, 二十 or "five hundred" are said for."""
digit_strings = st.one_of(st.text(alphabet=DIGITS, max_size=24), digit_runs)
case_numbers = st.one_of(
    # any 10-digit body (leading zeros too) with its Damm check digit
    st.one_of(st.text(alphabet=DIGITS, min_size=10, max_size=10),
              digit_runs.map(lambda digits: (digits + "0" * 10)[:10]))
    .map(lambda body: body + damm_digit(body)),
    # the numbers the CRM actually issues
    st.builds(make_case_number, st.dates(date(2000, 1, 1), date(2099, 12, 31)),
              st.integers(1, 9999)),
)


@dataclass(frozen=True)
class Piece:
    """Part of an utterance and the digits it stands for."""

    text: str
    digits: str


@dataclass(frozen=True)
class Said:
    lang: Language
    text: str
    digits: str


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


# --- Mandarin -----------------------------------------------------------------------------

_CMN_WORDS: dict[str, tuple[str, ...]] = {
    "0": ("零", "洞", "〇", "○"),
    "1": ("一", "幺", "壹"),
    "2": ("二", "两", "贰", "俩"),
    "3": ("三", "叁"),
    "4": ("四", "肆"),
    "5": ("五", "伍"),
    "6": ("六", "陆"),
    "7": ("七", "拐", "柒"),
    "8": ("八", "捌"),
    "9": ("九", "玖"),
}
_CMN_TENS_DIGIT = set("一二两三四五六七八九")
_CMN_UNITS_DIGIT = set("一二三四五六七八九")


def _cmn_pieces(digits: str, i: int) -> list[Piece]:
    d = digits[i]
    out = [Piece(w, d) for w in (*_CMN_WORDS[d], d, FULL_WIDTH[d])]
    if d != "0" and i + 1 < len(digits):  # a pair as a number: 十五, 二十八, 三十, 十
        pair = digits[i : i + 2]
        out.append(Piece(cmn_number(int(pair)), pair))
        if d == "1":
            out.append(Piece("一" + cmn_number(int(pair)), pair))  # 一十五
    return out


def _cmn_needs_gap(before: str, after: str) -> bool:
    # Ambiguous by design when written together: 二 + 十八 reads as 二十八 (28, not 2 18),
    # and 二十 + 八 as 二十八 (not 20 8). A pause (space or comma) keeps them apart.
    return ((before[-1] in _CMN_TENS_DIGIT and after[0] == "十")
            or (before[-1] == "十" and after[0] in _CMN_UNITS_DIGIT))


_CMN_BEFORE = ("", "我的号码是", "工单号是", "嗯", "呃 那个", "我查一下，号码是",
               "喂，你好，我的工单号码是")
_CMN_AFTER = ("", "谢谢", "。", "就这些")


# --- English ------------------------------------------------------------------------------

_EN_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_EN_WORDS: dict[str, tuple[str, ...]] = {
    d: (_EN_ONES[int(d)], d, FULL_WIDTH[d]) for d in DIGITS
}
_EN_WORDS["0"] += ("oh", "o", "nought")
_EN_TEENS = {"ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
             "seventeen", "eighteen", "nineteen"}
_EN_ROUND_TENS = {"twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"}


def _en_pieces(digits: str, i: int) -> list[Piece]:
    d = digits[i]
    out = [Piece(w, d) for w in _EN_WORDS[d]]
    run = len(digits[i:]) - len(digits[i:].lstrip(d))
    for n, word in ((2, "double"), (3, "triple")):
        if run >= n:
            out += [Piece(f"{word} {w}", d * n) for w in _EN_WORDS[d]]
    if d != "0" and i + 1 < len(digits):  # ten, fifteen, twenty, twenty-eight
        pair = digits[i : i + 2]
        words = en_number(int(pair))
        out += [Piece(words, pair), Piece(words.replace("-", " "), pair)]
    for zeros in (2, 3):  # five hundred, five thousand
        block = digits[i : i + zeros + 1]
        if d != "0" and block == d + "0" * zeros:
            out.append(Piece(en_number(int(block)), block))
    return out


def _en_clash(before: str, after: str) -> bool:
    # Ambiguous by design whatever the pause: "twenty one" is 21, never 20 then 1, so a
    # round ten is never followed by a word for 1..9 ("twenty oh" / "twenty zero" are fine).
    # Likewise "five hundred" then "twenty-eight" is 528, never 500 then 28: a word for 1..99
    # after "hundred" or "thousand" completes that number.
    last = _fold(before).lower().replace("-", " ").split()[-1]
    first = _fold(after).lower().replace("-", " ").split()[0]
    if last in ("hundred", "thousand"):
        return first in _EN_ONES[1:] or first in _EN_ROUND_TENS or first in _EN_TEENS
    return last in _EN_ROUND_TENS and first in _EN_ONES[1:]


_EN_BEFORE = ("", "my number is", "um", "uh, it's", "the case number is",
              "hi, I'm calling about case")
_EN_AFTER = ("", "thanks", "thank you", "please", "that's it")


# --- Korean -------------------------------------------------------------------------------

_KO_SINO = ("공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구")
_KO_NATIVE = ("", "하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉")
_KO_WORDS: dict[str, tuple[str, ...]] = {
    d: (_KO_SINO[int(d)], d, FULL_WIDTH[d]) + ((_KO_NATIVE[int(d)],) if d != "0" else ())
    for d in DIGITS
}
_KO_WORDS["0"] += ("영", "빵")
_KO_WORDS["6"] += ("륙",)
_KO_NONZERO = (*_KO_SINO[1:], "륙", *_KO_NATIVE[1:], *"123456789")
_KO_TWO_TO_NINE = (*_KO_SINO[2:], "륙", *_KO_NATIVE[2:], *"23456789")


def _ko_pieces(digits: str, i: int) -> list[Piece]:
    d = digits[i]
    out = [Piece(w, d) for w in _KO_WORDS[d]]
    if d != "0" and i + 1 < len(digits):  # 십, 십오, 이십, 이십삼
        pair = digits[i : i + 2]
        out.append(Piece(ko_number(int(pair)), pair))
    return out


def _ko_needs_gap(before: str, after: str) -> bool:
    # Ambiguous by design in one word: 이십 + 삼 is 이십삼 (23, not 20 3) and 삼 + 십오 is
    # 삼십오 (35, not 3 15). Between words (eojeol) they stay apart.
    before, after = _fold(before), _fold(after)
    return ((before.endswith("십") and after.startswith(_KO_NONZERO))
            or (after.startswith("십") and before.endswith(_KO_TWO_TO_NINE)))


def _has_final_consonant(syllable: str) -> bool:
    return "가" <= syllable <= "힣" and (ord(syllable) - ord("가")) % 28 != 0


def _ko_endings(text: str) -> tuple[str, ...]:
    """Endings that may follow the number in the same word, by the last syllable."""
    last = _fold(text)[-1]
    counter = ("번", "번이에요", "번입니다", "번이요")  # 칠번이에요: "it is number …7"
    if not "가" <= last <= "힣":
        return ("입니다", "이에요", "예요", "요", *counter)
    if _has_final_consonant(last):
        return ("입니다", "이에요", "이고요", "이요", *counter)
    if last == "이":
        # Ambiguous by design: 이 (2) + 예요 / 요 sounds and reads as the ending 이예요 / 이요
        # after the previous digit (공일이요: 01 or 012?). Only 입니다 and 번 are clear.
        return ("입니다", *counter)
    return ("입니다", "예요", "요", *counter)


_KO_BEFORE = ("", "제 번호는", "접수 번호는", "음", "어 그러니까", "네 저기요")
_KO_AFTER = ("", "감사합니다", "확인 부탁드려요")


# --- utterances ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    pieces: Callable[[str, int], list[Piece]]
    separators: tuple[str, ...]
    """Between pieces; "" writes them as one word."""
    needs_gap: Callable[[str, str], bool]
    """Pieces that must not be written as one word (a separator keeps them apart)."""
    clash: Callable[[str, str], bool]
    """Pieces that must not follow each other at all."""
    before: tuple[str, ...]
    after: tuple[str, ...]


def _never(before: str, after: str) -> bool:
    return False


STYLES: dict[Language, Style] = {
    "cmn": Style(_cmn_pieces, ("", " ", "，", "、", ", "), _cmn_needs_gap, _never,
                 _CMN_BEFORE, _CMN_AFTER),
    "en": Style(_en_pieces, (" ", ", ", "-", "... "), _never, _en_clash, _EN_BEFORE, _EN_AFTER),
    "ko": Style(_ko_pieces, ("", " ", ", "), _ko_needs_gap, _never, _KO_BEFORE, _KO_AFTER),
}


@st.composite
def said(draw: st.DrawFn, lang: Language, digits: st.SearchStrategy[str] = digit_strings
         ) -> Said:
    """``digits`` said the way a caller of ``lang`` might say them."""
    style = STYLES[lang]
    number = draw(digits)
    text = ""
    prev: str | None = None
    i = 0
    while i < len(number):
        options = [p for p in style.pieces(number, i)
                   if prev is None or not style.clash(prev, p.text)]
        piece = draw(st.sampled_from(options))
        words = piece.text
        if lang == "en":
            words = draw(st.sampled_from((str.lower, str.title, str.upper)))(words)
        if prev is not None:
            gaps = [s for s in style.separators if s or not style.needs_gap(prev, words)]
            text += draw(st.sampled_from(gaps))
        text += words
        prev = words
        i += len(piece.digits)
    if lang == "ko" and text and draw(st.booleans()):
        # an ending, in the same word (일이삼사입니다) or as its own (일이삼사 입니다)
        text += draw(st.sampled_from(("", " "))) + draw(st.sampled_from(_ko_endings(text)))
    space = "" if lang == "cmn" else " "
    parts = [draw(st.sampled_from(style.before)), text, draw(st.sampled_from(style.after))]
    return Said(lang, space.join(p for p in parts if p), number)


def said_in_any_language(digits: st.SearchStrategy[str] = digit_strings
                         ) -> st.SearchStrategy[Said]:
    return st.sampled_from(LANGUAGES).flatmap(lambda lang: said(lang, digits))


def full_width(text: str) -> str:
    """ASCII as typed on a CJK keyboard: "twenty 8" -> "ｔｗｅｎｔｙ　８"."""
    return "".join("\u3000" if ch == " " else chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch
                   for ch in text)


def hear_case_number(text: str, lang: str) -> tuple[CallFlow, list[Action]]:
    """The IVR's path for a spoken case number: ask for it, understand the recognized text
    with the grammar the flow listened with, and give the flow what ``ivr.voice`` gives it."""
    flow = CallFlow()
    flow.step(Begin("13800138000", lang))
    ask = flow.step(Keys("1"))[-1]
    assert isinstance(ask, Collect) and ask.prompt == "ask_case_number"
    heard = understand(text, lang, ask.grammar)
    return flow, flow.step(Speech(text, intent=heard.intent, digits=heard.digits or "",
                                  yes=heard.yes))


# --- round trip ---------------------------------------------------------------------------


@FAST
@given(digit_strings)
def test_read_back_digits_parse_to_the_same_digits(digits: str) -> None:
    for lang in LANGUAGES:
        assert spoken_digits(say_number_digits(digits, lang), lang) == digits


@FAST
@given(st.lists(st.text(alphabet=DIGITS, min_size=1, max_size=5), min_size=1, max_size=4),
       st.sampled_from(("-", " ", "/", ") ")))
def test_read_back_grouped_numbers_parse_to_their_digits(groups: list[str], sep: str) -> None:
    for lang in LANGUAGES:
        assert spoken_digits(say_number_digits(sep.join(groups), lang), lang) == "".join(groups)


@FAST
@given(case_numbers)
def test_read_back_case_numbers_are_understood_as_themselves(number: str) -> None:
    for lang in LANGUAGES:
        spoken = say_number_digits(number, lang)
        assert understand(spoken, lang, "digits").digits == number
        assert is_valid_case_number(number)


@FAST
@given(st.integers(0, 99))
def test_numbers_below_a_hundred_parse_as_their_digits(n: int) -> None:
    assert spoken_digits(cmn_number(n), "cmn") == str(n)
    assert spoken_digits(en_number(n), "en") == str(n)
    assert spoken_digits(ko_number(n), "ko") == str(n)


@FAST
@given(st.integers(100, 9999))
def test_numbers_said_with_hundreds_and_thousands_parse_as_their_digits(n: int) -> None:
    # 一百零五, 两千零二十六, "two thousand twenty-six", 이천이십육: a group of a case number
    # said as a number
    assert spoken_digits(cmn_number(n), "cmn") == str(n)
    assert spoken_digits(cmn_number(n, counting=True), "cmn") == str(n)
    assert spoken_digits(en_number(n), "en") == str(n)
    assert spoken_digits(en_number(n).replace("hundred ", "hundred and "), "en") == str(n)
    assert spoken_digits(ko_number(n), "ko") == str(n)


@FAST
@given(st.lists(st.integers(100, 9999), min_size=2, max_size=4))
def test_groups_said_as_numbers_with_pauses_parse_to_the_whole_number(groups: list[int]) -> None:
    digits = "".join(map(str, groups))
    assert spoken_digits("，".join(cmn_number(g) for g in groups), "cmn") == digits
    assert spoken_digits(" ".join(ko_number(g) for g in groups), "ko") == digits


# --- the way callers say numbers ----------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
@FAST
@given(data=st.data())
def test_callers_ways_of_saying_digits_parse_to_those_digits(lang: Language,
                                                             data: st.DataObject) -> None:
    utterance = data.draw(said(lang), label="said")
    assert spoken_digits(utterance.text, lang) == utterance.digits


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_pair_said_as_tens_next_to_every_digit_word(lang: Language) -> None:
    """Exhaustive over the small space where tens meet digits (random utterances reach a
    given combination, e.g. "twenty" then "nought", only rarely): 10..99 as tens, before and
    after each way of saying each digit, written apart and, where unambiguous, together."""
    style = STYLES[lang]
    for n in range(10, 100):
        for d in DIGITS:
            for digits in (f"{n}{d}", f"{d}{n}"):
                for a in style.pieces(digits, 0):
                    rest = style.pieces(digits, len(a.digits)) if len(a.digits) < 3 else []
                    for b in rest:
                        if len(a.digits) + len(b.digits) != 3 or style.clash(a.text, b.text):
                            continue
                        for sep in {style.separators[0], style.separators[-1]}:
                            if sep or not style.needs_gap(a.text, b.text):
                                text = a.text + sep + b.text
                                assert spoken_digits(text, lang) == digits, text


@FAST
@given(said_in_any_language(case_numbers))
def test_a_spoken_case_number_reaches_confirmation(utterance: Said) -> None:
    flow, actions = hear_case_number(utterance.text, utterance.lang)
    assert flow.state is State.CONFIRM_CASE
    assert flow.candidate == utterance.digits
    assert actions[-1] == Collect("confirm_case_number", "yesno", 1,
                                  {"digits": utterance.digits})


@st.composite
def misspoken_case_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A case number and the same number with one wrong digit or two adjacent digits swapped."""
    number = draw(case_numbers)
    swaps = [i for i in range(CASE_NUMBER_LENGTH - 1) if number[i] != number[i + 1]]
    if swaps and draw(st.booleans()):
        i = draw(st.sampled_from(swaps))
        return number, number[:i] + number[i + 1] + number[i] + number[i + 2 :]
    i = draw(st.integers(0, CASE_NUMBER_LENGTH - 1))
    wrong = str((int(number[i]) + draw(st.integers(1, 9))) % 10)
    return number, number[:i] + wrong + number[i + 1 :]


@FAST
@given(st.data())
def test_a_misspoken_case_number_is_caught_and_asked_again(data: st.DataObject) -> None:
    number, wrong = data.draw(misspoken_case_numbers(), label="number, misspoken")
    utterance = data.draw(said_in_any_language(st.just(wrong)), label="said")
    flow, actions = hear_case_number(utterance.text, utterance.lang)
    assert understand(utterance.text, utterance.lang, "digits").digits == wrong != number
    assert not is_valid_case_number(wrong)
    assert flow.state is State.CASE_NUMBER
    assert RecordFailure("invalid_number") in actions
    assert not any(isinstance(a, LookupCase) for a in actions)
    asked = actions[-1]
    assert isinstance(asked, Collect) and asked.prompt == "case_number_invalid"


# --- robustness ---------------------------------------------------------------------------

_VOCABULARY = sorted(
    {w for words in _CMN_WORDS.values() for w in words}
    | {w for words in _EN_WORDS.values() for w in words}
    | {w for words in _KO_WORDS.values() for w in words}
    | {"十", "百", "十八", "二十", "一下", "两个", "第一", "统一", "twenty", "ninety",
       "eleven", "hundred", "thousand", "double", "triple", "nil", "십", "이십", "번", "이요",
       "이예요", "입니다", "요", "번이요", "는"}
)
_CHARACTERS = st.one_of(
    st.characters(),  # anything but surrogates, control characters included
    st.characters(categories=["Nd", "No", "Nl"]),  # digits and numerals of every script
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK ideographs
    st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),  # Hangul syllables
    st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),  # conjoining jamo
    st.characters(min_codepoint=0xFF00, max_codepoint=0xFFEF),  # full/half-width forms
    st.sampled_from(" -,\u3000\t\n\x00"),
)
# Lists of characters, not st.text(_CHARACTERS): text() merges the alphabets into one range
# and would draw from the whole of Unicode evenly, seldom from the parts above.
_SNIPPETS = st.one_of(st.lists(_CHARACTERS, max_size=4).map("".join), st.sampled_from(_VOCABULARY))
arbitrary_text = st.one_of(
    st.text(),
    st.lists(_SNIPPETS, max_size=12).map("".join),
    st.lists(_SNIPPETS, max_size=12).map(" ".join),
)


@settings(max_examples=200, deadline=None)
@given(arbitrary_text)
def test_any_text_gives_only_ascii_digits(text: str) -> None:
    for lang in LANGUAGES:
        digits = spoken_digits(text, lang)
        assert all(ch in DIGITS for ch in digits), (lang, digits)
        assert understand(text, lang, "digits").digits == digits


@FAST
@given(arbitrary_text)
def test_unicode_normal_forms_parse_alike(text: str) -> None:
    for lang in LANGUAGES:
        digits = spoken_digits(text, lang)
        for form in ("NFC", "NFD", "NFKC", "NFKD"):
            assert spoken_digits(unicodedata.normalize(form, text), lang) == digits


@FAST
@given(said_in_any_language())
def test_width_and_composition_variants_of_an_utterance_parse_alike(utterance: Said) -> None:
    # full-width ASCII (typed text), decomposed Hangul (NFD from some systems), both at once
    for variant in (full_width(utterance.text), unicodedata.normalize("NFD", utterance.text),
                    unicodedata.normalize("NFKD", full_width(utterance.text))):
        assert spoken_digits(variant, utterance.lang) == utterance.digits


def test_the_fillers_carry_no_digits() -> None:
    """The strategies' fillers must not add digits of their own (a guard on the strategies)."""
    for lang, style in STYLES.items():
        for filler in style.before + style.after:
            assert spoken_digits(filler, lang) == "", (lang, filler)
