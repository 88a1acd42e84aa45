"""Numbers to words for the prompt voice: digit strings, counts and dates in cmn, en and ko.

Pure functions; ``speech.numbers`` re-exports the public ones.
"""

from __future__ import annotations

from datetime import date

from speech.languages import check_language

# --- Mandarin ----------------------------------------------------------------------------

_CMN_DIGIT_WORDS = "零一二三四五六七八九"
_CMN_PHONE_DIGIT_WORDS = "零幺二三四五六七八九"
"""Digit by digit (phone and case numbers): 1 is 幺 so it cannot be heard as 7 (七)."""


def _cmn_section(sec: int, *, first: bool, counting: bool) -> str:
    """0 < sec < 10000 in words; ``first``: the number's first section (十五, not 一十五)."""
    out: list[str] = []
    zero = False
    for pos, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = sec // pos % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        if d == 1 and unit == "十" and first and not out:
            word = ""
        elif d == 2 and counting and unit in ("千", "百"):
            word = "两"
        else:
            word = _CMN_DIGIT_WORDS[d]
        out.append(word + unit)
    return "".join(out)


def cmn_number(n: int, *, counting: bool = False) -> str:
    """Mandarin words for an integer: 10 -> 十, 105 -> 一百零五, 1010 -> 一千零一十.

    ``counting`` uses 两 for a 2 before a measure word or 百/千/万/亿 (两个, 两千, 两万).
    """
    if n < 0:
        return "负" + cmn_number(-n, counting=counting)
    if n == 0:
        return "零"
    if n == 2 and counting:
        return "两"
    sections: list[int] = []
    while n:
        sections.append(n % 10000)
        n //= 10000
    big_units = ("", "万", "亿", "万亿")
    out: list[str] = []
    zero = False
    for idx in range(len(sections) - 1, -1, -1):
        sec = sections[idx]
        if sec == 0:
            zero = bool(out)
            continue
        if out and (zero or sec < 1000):
            out.append("零")
        words = _cmn_section(sec, first=not out, counting=counting)
        if counting and sec == 2 and idx > 0:
            words = "两"
        out.append(words + big_units[idx])
        zero = False
    return "".join(out)


# --- Korean (Sino-Korean numbers) --------------------------------------------------------

_KO_DIGIT_WORDS = ("영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구")
_KO_PHONE_DIGIT_WORDS = ("공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구")


def _ko_section(n: int) -> str:
    units = ("천", "백", "십", "")
    out = []
    for pos, ch in enumerate(f"{n:04d}"):
        d = int(ch)
        if d == 0:
            continue
        unit = units[pos]
        out.append(("" if d == 1 and unit else _KO_DIGIT_WORDS[d]) + unit)
    return "".join(out)


def ko_number(n: int) -> str:
    """Sino-Korean words: 29 -> 이십구, 10000 -> 만, 15000 -> 만 오천."""
    if n < 0:
        return "마이너스 " + ko_number(-n)
    if n == 0:
        return "영"
    sections: list[int] = []
    while n:
        sections.append(n % 10000)
        n //= 10000
    big_units = ("", "만", "억", "조")
    out = []
    for idx in range(len(sections) - 1, -1, -1):
        sec = sections[idx]
        if sec == 0:
            continue
        words = "" if sec == 1 and idx == 1 else _ko_section(sec)
        out.append(words + big_units[idx])
    return " ".join(out)


_KO_NATIVE_UNITS = ("", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉")
_KO_NATIVE_TENS = ("", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔")


def ko_native_count(n: int) -> str:
    """Native Korean before a counter, 1..99 (두 건, 열한 자리, 스무 명); else Sino-Korean."""
    if not 0 < n < 100:
        return ko_number(n)
    tens, units = divmod(n, 10)
    if n == 20:
        return "스무"
    return _KO_NATIVE_TENS[tens] + _KO_NATIVE_UNITS[units]


# --- English -----------------------------------------------------------------------------

_EN_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen",
)
_EN_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_EN_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
_EN_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}


def _en_below_thousand(n: int) -> str:
    parts = []
    if n >= 100:
        parts.append(f"{_EN_ONES[n // 100]} hundred")
        n %= 100
    if n >= 20:
        tens = _EN_TENS[n // 10]
        parts.append(f"{tens}-{_EN_ONES[n % 10]}" if n % 10 else tens)
    elif n:
        parts.append(_EN_ONES[n])
    return " ".join(parts)


def en_number(n: int) -> str:
    """English words: 123 -> one hundred twenty-three (US style, no "and")."""
    if n < 0:
        return "minus " + en_number(-n)
    if n == 0:
        return "zero"
    parts = []
    for value, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= value:
            parts.append(f"{en_number(n // value)} {name}")
            n %= value
    if n:
        parts.append(_en_below_thousand(n))
    return " ".join(parts)


def en_ordinal(n: int) -> str:
    """twenty-ninth, first, twelfth, one hundredth."""
    words = en_number(n)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    head, last = words[:cut], words[cut:]
    if last in _EN_ORDINAL_IRREGULAR:
        last = _EN_ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + last


def _en_year(year: int) -> str:
    if 2000 <= year <= 2009:
        return en_number(year)
    high, low = divmod(year, 100)
    if low == 0:
        return f"{en_number(high)} hundred"
    return f"{en_number(high)} {'oh ' if low < 10 else ''}{en_number(low)}"


# --- public ------------------------------------------------------------------------------


def _groups(number: str) -> list[str]:
    """Split a number for reading: at its own separators, else 3-4-4 like a phone number."""
    raw = "".join(ch if ch.isdigit() else " " for ch in number).split()
    if len(raw) > 1:
        return raw
    digits = raw[0] if raw else ""
    if len(digits) <= 4:
        return [digits] if digits else []
    head = len(digits) % 4 or 4
    if head == 1:
        head = 5 if len(digits) == 5 else 3
    groups = [digits[:head]]
    groups += [digits[i : i + 4] for i in range(head, len(digits), 4)]
    return groups


def say_number_digits(number: str, lang: str) -> str:
    """A case or phone number read digit by digit, in groups with a pause between them.

    cmn uses 幺 for 1 (二零二六幺幺二二), ko reads 0 as 공, en says "zero".
    """
    lang = check_language(lang)
    groups = _groups(number)
    if lang == "cmn":
        return "，".join("".join(_CMN_PHONE_DIGIT_WORDS[int(d)] for d in g) for g in groups)
    if lang == "ko":
        return ", ".join(" ".join(_KO_PHONE_DIGIT_WORDS[int(d)] for d in g) for g in groups)
    return ", ".join(" ".join(_EN_ONES[int(d)] for d in g) for g in groups)


def say_count(n: int, lang: str) -> str:
    """A quantity before a measure word: cmn 两 for 2 (两个), ko native (두 건, 열한 자리)."""
    lang = check_language(lang)
    if lang == "cmn":
        return cmn_number(n, counting=True)
    if lang == "ko":
        return ko_native_count(n)
    return en_number(n)


def say_date(day: date, lang: str, *, with_year: bool = False) -> str:
    """A date as words: 十一月二十九日, November twenty-ninth, 십일월 이십구일."""
    lang = check_language(lang)
    if lang == "cmn":
        text = f"{cmn_number(day.month)}月{cmn_number(day.day)}日"
        if with_year:
            year = "".join(_CMN_DIGIT_WORDS[int(d)] for d in str(day.year))
            text = f"{year}年{text}"
        return text
    if lang == "ko":
        month = {6: "유", 10: "시"}.get(day.month) or ko_number(day.month)
        text = f"{month}월 {ko_number(day.day)}일"
        if with_year:
            text = f"{ko_number(day.year).replace(' ', '')}년 {text}"
        return text
    text = f"{_EN_MONTHS[day.month - 1]} {en_ordinal(day.day)}"
    if with_year:
        text = f"{text}, {_en_year(day.year)}"
    return text
