"""Spoken numbers and answers: recognized words -> digits / yes-no / rating, and back to words.

Pure functions. Recognizers return words separated by spaces (the Mandarin models segment
words, the Korean model splits at eojeol boundaries); callers may also type text, so Arabic
and full-width digits are accepted everywhere (NFKC folds full-width to ASCII).
"""

from __future__ import annotations

import re
import unicodedata

from speech.languages import check_language
from speech.number_words import say_count, say_date, say_number_digits

__all__ = ["rating", "say_count", "say_date", "say_number_digits", "spoken_digits", "yes_no"]

# --- Mandarin ----------------------------------------------------------------------------

_CMN_DIGITS = {
    "零": "0", "〇": "0", "○": "0", "洞": "0",
    "一": "1", "幺": "1", "壹": "1",
    "二": "2", "两": "2", "贰": "2", "俩": "2",
    "三": "3", "叁": "3", "四": "4", "肆": "4", "五": "5", "伍": "5",
    "六": "6", "陆": "6", "七": "7", "柒": "7", "拐": "7", "八": "8", "捌": "8",
    "九": "9", "玖": "9",
}
_CMN_TENS_RE = re.compile(r"([一二两三四五六七八九])?十([一二三四五六七八九])?")
_CMN_FILLERS = (
    "一下", "一个", "一点", "一些", "一共", "一样", "一遍", "一次", "一起", "一般", "统一",
    "第一", "唯一", "万一", "一直", "两个", "三个",
)
"""Words that contain a numeral but are not part of a spoken number (我查一下, 第一个)."""


_CMN_NONZERO = "一幺壹二两贰俩三叁四肆五伍六陆七柒拐八捌九玖"
_CMN_ZERO = "零〇○洞"
_CMN_MULTIPLIERS = {"十": 10, "百": 100, "千": 1000}
_CMN_COMPOUND_RE = re.compile(
    rf"(?:[{_CMN_NONZERO}]千(?:[{_CMN_ZERO}]?[{_CMN_NONZERO}]百)?|[{_CMN_NONZERO}]百)"
    rf"(?:[{_CMN_ZERO}]?[{_CMN_NONZERO}]?十)?(?:[{_CMN_ZERO}]?[{_CMN_NONZERO}])?")
"""A number said with 百 or 千: 一百二十三, 三百零五, 两千零二十六, 三百五 (350)."""


def _cmn_compound(match: re.Match[str]) -> str:
    value, pending, last, zero = 0, None, 1, False
    for ch in match.group(0):
        if ch in _CMN_ZERO:
            zero = True
        elif ch in _CMN_MULTIPLIERS:
            last = _CMN_MULTIPLIERS[ch]
            value += (pending if pending is not None else 1) * last
            pending, zero = None, False
        else:
            pending = int(_CMN_DIGITS[ch])
    if pending is not None:  # 三百五 is 350 and 两千三 2300; 三百零五 is 305
        value += pending * (last // 10 if last >= 100 and not zero else 1)
    return str(value)


def _cmn_tens(match: re.Match[str]) -> str:
    tens = _CMN_DIGITS[match.group(1)] if match.group(1) else "1"
    units = _CMN_DIGITS[match.group(2)] if match.group(2) else "0"
    return tens + units


def _cmn_digits(text: str) -> str:
    for filler in _CMN_FILLERS:
        text = text.replace(filler, " ")
    text = _CMN_COMPOUND_RE.sub(_cmn_compound, text)
    text = _CMN_TENS_RE.sub(_cmn_tens, text)
    return "".join(_CMN_DIGITS.get(ch, ch if ch.isascii() and ch.isdigit() else "")
                   for ch in text)


# --- English -----------------------------------------------------------------------------

_EN_DIGITS = {
    "zero": "0", "oh": "0", "o": "0", "nought": "0", "naught": "0", "nil": "0",
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}
_EN_TEENS = {
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
}
_EN_TENS = {
    "twenty": "2", "thirty": "3", "forty": "4", "fifty": "5", "sixty": "6", "seventy": "7",
    "eighty": "8", "ninety": "9",
}
_EN_REPEAT = {"double": 2, "triple": 3}
_EN_TOKEN_RE = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+")
"""ASCII digits only: \\d would also take other scripts' digits (٣, ५) and return them as-is."""


def _en_tokens(text: str) -> list[str]:
    return _EN_TOKEN_RE.findall(text.lower().replace("-", " "))


_EN_SCALES = {"hundred": 100, "thousand": 1000}


def _en_below(tokens: list[str], i: int, scale: int) -> tuple[int, int]:
    """The words after "hundred"/"thousand" that complete the number: (value, next index).

    "and" may come first; after "thousand" a further "<digit> hundred" belongs to it too.
    A zero word ("five hundred oh two") or an Arabic digit is not taken: it is said digit
    by digit.
    """
    start = i
    if i < len(tokens) and tokens[i] == "and":
        i += 1
    value = 0
    if (scale == 1000 and i + 1 < len(tokens) and tokens[i + 1] == "hundred"
            and _EN_DIGITS.get(tokens[i], "0") != "0"):
        value, i = int(_EN_DIGITS[tokens[i]]) * 100, i + 2
        if i < len(tokens) and tokens[i] == "and":
            i += 1
    if i < len(tokens) and tokens[i] in _EN_TEENS:
        return value + int(_EN_TEENS[tokens[i]]), i + 1
    if i < len(tokens) and tokens[i] in _EN_TENS:
        value += int(_EN_TENS[tokens[i]]) * 10
        i += 1
        if i < len(tokens) and _EN_DIGITS.get(tokens[i], "0") != "0":
            value += int(_EN_DIGITS[tokens[i]])
            i += 1
        return value, i
    if i < len(tokens) and _EN_DIGITS.get(tokens[i], "0") != "0":
        return value + int(_EN_DIGITS[tokens[i]]), i + 1
    return (value, i) if value else (0, start)


def _en_digits(text: str) -> str:
    tokens = _en_tokens(text)
    out: list[str] = []
    repeat = 1
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok in _EN_REPEAT:
            repeat = _EN_REPEAT[tok]
            continue
        if tok.isdigit():
            out.append(tok * repeat if len(tok) == 1 else tok)
        elif tok in _EN_DIGITS:
            out.append(_EN_DIGITS[tok] * repeat)
        elif tok in _EN_TEENS:
            out.append(_EN_TEENS[tok])
        elif tok in _EN_TENS:
            units = "0"
            if i < len(tokens) and _EN_DIGITS.get(tokens[i], "0") != "0":  # not "twenty nought"
                units = _EN_DIGITS[tokens[i]]
                i += 1
            out.append(_EN_TENS[tok] + units)
        elif tok in _EN_SCALES and out:
            if out[-1].isdigit() and len(out[-1]) <= 2 and out[-1] != "0" * len(out[-1]):
                # one hundred twenty-three, two thousand and five, twenty five hundred
                rest, i = _en_below(tokens, i, _EN_SCALES[tok])
                out[-1] = str(int(out[-1]) * _EN_SCALES[tok] + rest)
            else:
                out.append("0" * (len(str(_EN_SCALES[tok])) - 1))
        else:
            continue  # filler: "my", "number", "is", "um", ...
        repeat = 1
    return "".join(out)


# --- Korean ------------------------------------------------------------------------------

_KO_UNITS = {
    "하나": "1", "다섯": "5", "여섯": "6", "일곱": "7", "여덟": "8", "아홉": "9",
    "둘": "2", "셋": "3", "넷": "4",
    "영": "0", "공": "0", "빵": "0", "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5",
    "육": "6", "륙": "6", "칠": "7", "팔": "8", "구": "9", "십": "T", "백": "H", "천": "K",
}
_KO_MULTIPLIERS = {"T": 10, "H": 100, "K": 1000}
_KO_UNITS_LONGEST_FIRST = sorted(_KO_UNITS, key=len, reverse=True)
_KO_SUFFIXES = (
    "입니다", "이에요", "이예요", "예요", "에요", "이요", "이고요", "이고", "요", "번이요",
    "번", "은", "는", "고",
)
"""Endings stripped from a token before it is read as digits (일이삼사입니다 -> 일이삼사)."""
_KO_TOKEN_RE = re.compile(r"[0-9가-힣]+")


def _ko_token_digits(token: str) -> str | None:
    """The digits a whole token spells, or None when any part of it is not a number word."""
    if token in _KO_SUFFIXES:
        return None
    for suffix in _KO_SUFFIXES:
        if token.endswith(suffix) and len(token) > len(suffix):
            token = token[: -len(suffix)]
            break
    if len(token) > 1:
        token = token.removesuffix("번")  # 칠번이에요 -> 칠번 -> 칠
    units: list[str] = []
    i = 0
    while i < len(token):
        if token[i].isdigit():
            units.append(token[i])
            i += 1
            continue
        for word in _KO_UNITS_LONGEST_FIRST:
            if token.startswith(word, i):
                units.append(_KO_UNITS[word])
                i += len(word)
                break
        else:
            return None
    if "H" in units or "K" in units:
        return _ko_compound(units)
    out: list[str] = []
    i = 0
    while i < len(units):
        unit = units[i]
        after = units[i + 1] if i + 1 < len(units) else None
        if unit == "T":  # bare 십: 십 -> 10, 십오 -> 15
            if after is not None and after not in ("T", "0"):
                out.append("1" + after)
                i += 2
            else:
                out.append("10")
                i += 1
        elif after == "T" and unit not in ("0", "1"):  # 이십 -> 20, 이십삼 -> 23
            last = units[i + 2] if i + 2 < len(units) else None
            if last is not None and last not in ("T", "0"):
                out.append(unit + last)
                i += 3
            else:
                out.append(unit + "0")
                i += 2
        else:
            out.append(unit)
            i += 1
    return "".join(out)


def _ko_compound(units: list[str]) -> str:
    """A number said with 백 or 천 (백이십삼 123, 이천이십육 2026); digits said one by one
    before it stay digits (일이삼백 -> 12 then 300)."""
    chunks: list[str] = []
    value, pending = 0, None
    for unit in units:
        if unit in _KO_MULTIPLIERS:
            value += (int(pending) if pending is not None else 1) * _KO_MULTIPLIERS[unit]
            pending = None
        elif pending is not None or (unit == "0" and value):
            chunks.append(str(value + int(pending)) if pending is not None else str(value))
            value, pending = 0, unit
        else:
            pending = unit
    if value or pending is not None:
        chunks.append(str(value + (int(pending) if pending is not None else 0)))
    return "".join(chunks)


def _ko_digits(text: str) -> str:
    out = []
    for token in _KO_TOKEN_RE.findall(text):
        digits = _ko_token_digits(token)
        if digits:
            out.append(digits)
    return "".join(out)


def spoken_digits(text: str, lang: str) -> str:
    """The digits a caller said: "幺三五 两零" -> "13520", "double five one" -> "551".

    Words that are not numbers are ignored ("我的号码是…", "my number is…", "번호는…").
    """
    lang = check_language(lang)
    text = unicodedata.normalize("NFKC", text)
    if lang == "cmn":
        return _cmn_digits(text)
    if lang == "ko":
        return _ko_digits(text)
    return _en_digits(text)


# --- yes / no ----------------------------------------------------------------------------

_YES_NO_PHRASES: dict[str, dict[str, bool]] = {
    "cmn": {
        "对": True, "是": True, "是的": True, "好": True, "好的": True, "确认": True,
        "没错": True, "正确": True, "对的": True, "嗯": True, "可以": True, "行": True,
        "没问题": True, "不错": True,
        "不对": False, "不是": False, "错了": False, "错": False, "不": False,
        "不正确": False, "否": False, "不行": False, "不确认": False, "没有": False,
    },
    "en": {
        "yes": True, "yeah": True, "yep": True, "yup": True, "correct": True, "right": True,
        "sure": True, "ok": True, "okay": True, "confirm": True, "affirmative": True,
        "that's right": True, "that is right": True, "that's correct": True,
        "no": False, "nope": False, "nah": False, "wrong": False, "incorrect": False,
        "not right": False, "not correct": False, "that's wrong": False,
        "that's not right": False, "that is not right": False, "negative": False,
    },
    "ko": {
        "네": True, "예": True, "응": True, "맞아요": True, "맞습니다": True, "맞아": True,
        "맞네요": True, "그래요": True, "좋아요": True, "확인": True,
        "아니요": False, "아니오": False, "아니": False, "아닙니다": False, "아니에요": False,
        "틀려요": False, "틀렸어요": False, "틀립니다": False, "안 맞아요": False,
        "아닌데요": False,
    },
}


def _scan(text: str, phrases: dict[str, bool], *, words: bool) -> list[bool]:
    """Longest-first phrase matches; ``words`` matches whole tokens (English, Korean)."""
    found: list[bool] = []
    ordered = sorted(phrases, key=len, reverse=True)
    if words:
        tokens = _EN_TOKEN_RE.findall(text.lower()) if text.isascii() else text.split()
        i = 0
        while i < len(tokens):
            for phrase in ordered:
                parts = phrase.split()
                if tokens[i : i + len(parts)] == parts:
                    found.append(phrases[phrase])
                    i += len(parts)
                    break
            else:
                i += 1
        return found
    i = 0
    while i < len(text):
        for phrase in ordered:
            if text.startswith(phrase, i):
                found.append(phrases[phrase])
                i += len(phrase)
                break
        else:
            i += 1
    return found


def _ko_yes_no_tokens(text: str) -> list[bool]:
    found: list[bool] = []
    phrases = _YES_NO_PHRASES["ko"]
    tokens = _KO_TOKEN_RE.findall(text)
    for i, tok in enumerate(tokens):
        if tok == "안" and i + 1 < len(tokens) and tokens[i + 1].startswith("맞"):
            found.append(False)
            tokens[i + 1] = ""
        elif tok in phrases:
            found.append(phrases[tok])
        elif tok.startswith(("아니", "아닙", "아닌", "틀")):
            found.append(False)
        elif tok.startswith("맞"):
            found.append(True)
    return found


def yes_no(text: str, lang: str) -> bool | None:
    """True for yes (对/是的/yes/네), False for no (不对/no/아니요), None when unclear or mixed."""
    lang = check_language(lang)
    text = unicodedata.normalize("NFKC", text).strip()
    if lang == "cmn":
        found = _scan(text.replace(" ", ""), _YES_NO_PHRASES["cmn"], words=False)
    elif lang == "ko":
        found = _ko_yes_no_tokens(text)
    else:
        found = _scan(text.replace("’", "'"), _YES_NO_PHRASES["en"], words=True)
    if not found:
        return None
    return found[0] if all(v == found[0] for v in found) else None


# --- survey rating (1..5) ----------------------------------------------------------------

_RATING_PHRASES: dict[str, dict[str, int]] = {
    "cmn": {
        "非常满意": 5, "很满意": 5, "特别满意": 5, "满意": 4, "比较满意": 4, "基本满意": 3,
        "还可以": 3,
        "一般": 3, "还行": 3, "不太满意": 2, "不满意": 2, "很不满意": 1, "非常不满意": 1,
        "五星": 5, "四星": 4, "三星": 3, "两星": 2, "二星": 2, "一星": 1,
    },
    "en": {
        "very satisfied": 5, "excellent": 5, "satisfied": 4, "good": 4, "okay": 3, "average": 3,
        "neutral": 3, "dissatisfied": 2, "unsatisfied": 2, "poor": 2, "bad": 2,
        "very dissatisfied": 1, "very poor": 1, "terrible": 1, "very bad": 1,
    },
    "ko": {
        "매우 만족": 5, "아주 만족": 5, "만족": 4, "보통": 3, "불만족": 2, "불만": 2,
        "매우 불만족": 1, "아주 불만족": 1,
    },
}


def rating(text: str, lang: str) -> int | None:
    """A satisfaction score 1..5 from a number ("五", "four", "오") or a phrase ("非常满意")."""
    lang = check_language(lang)
    text = unicodedata.normalize("NFKC", text).strip()
    phrases = _RATING_PHRASES[lang]
    compact = text.replace(" ", "").lower()
    for phrase in sorted(phrases, key=len, reverse=True):
        key = phrase.replace(" ", "") if lang != "en" else phrase
        if (key in compact) if lang != "en" else re.search(rf"\b{key}\b", text.lower()):
            return phrases[phrase]
    digits = spoken_digits(text, lang)
    if len(digits) == 1 and "1" <= digits <= "5":
        return int(digits)
    return None
