from datetime import date

import pytest

from speech.languages import UnknownLanguageError
from speech.number_words import cmn_number, en_number, en_ordinal, ko_number
from speech.numbers import (
    rating,
    say_count,
    say_date,
    say_number_digits,
    spoken_digits,
    yes_no,
)


@pytest.mark.parametrize(
    ("text", "lang", "digits"),
    [
        # Mandarin: phone-style 幺, 两, 洞/拐, capital numerals, Arabic and full-width digits
        ("幺三五", "cmn", "135"),
        ("幺 三 五 两 零", "cmn", "13520"),
        ("一三八零零一三八零零零", "cmn", "13800138000"),
        ("两两", "cmn", "22"),
        ("洞拐", "cmn", "07"),
        ("〇一", "cmn", "01"),
        ("壹贰叁肆伍陆柒捌玖零", "cmn", "1234567890"),
        ("１２３４", "cmn", "1234"),
        ("12 34", "cmn", "1234"),
        ("我的号码是幺二三四", "cmn", "1234"),
        ("嗯 我查一下 五六七", "cmn", "567"),
        ("第一个是九", "cmn", "9"),
        ("二十八", "cmn", "28"),
        ("十五", "cmn", "15"),
        ("三十", "cmn", "30"),
        ("一百二十三", "cmn", "123"),
        ("三百零五", "cmn", "305"),
        ("三百五", "cmn", "350"),
        ("两千零二十六年 幺幺二二", "cmn", "20261122"),
        ("老百姓 千万", "cmn", ""),
        ("", "cmn", ""),
        ("你好", "cmn", ""),
        # English: oh/o, double/triple, fillers, teens and tens, digits
        ("one two three four", "en", "1234"),
        ("oh one two", "en", "012"),
        ("o seven", "en", "07"),
        ("double five one", "en", "551"),
        ("my number is oh one two triple nine", "en", "012999"),
        ("double oh seven", "en", "007"),
        ("um it's four five six", "en", "456"),
        ("twenty eight", "en", "28"),
        ("twenty-eight fifty", "en", "2850"),
        ("nineteen", "en", "19"),
        ("five hundred", "en", "500"),
        ("one hundred twenty three", "en", "123"),
        ("two thousand and five", "en", "2005"),
        ("twenty five hundred", "en", "2500"),
        ("two thousand three hundred forty-one", "en", "2341"),
        ("five hundred oh two", "en", "50002"),
        ("Zero Nine", "en", "09"),
        ("1 2 3", "en", "123"),
        ("double 5", "en", "55"),
        ("twenty nought five", "en", "2005"),
        ("١٢ 3", "en", "3"),
        ("nothing here", "en", ""),
        # Korean: Sino and native digits, 공 for zero, endings, tens
        ("공 일 공", "ko", "010"),
        ("영", "ko", "0"),
        ("일 이 삼 사", "ko", "1234"),
        ("일이삼사", "ko", "1234"),
        ("일이삼사입니다", "ko", "1234"),
        ("제 번호는 오 육 칠 팔 이에요", "ko", "5678"),
        ("하나 둘 셋 넷", "ko", "1234"),
        ("다섯 여섯 일곱 여덟 아홉", "ko", "56789"),
        ("육 륙", "ko", "66"),
        ("빵일", "ko", "01"),
        ("이십삼", "ko", "23"),
        ("십오", "ko", "15"),
        ("구십", "ko", "90"),
        ("１２", "ko", "12"),
        ("번호요", "ko", ""),
        ("이에요", "ko", ""),
        ("칠번이에요", "ko", "7"),
        ("일이삼번입니다", "ko", "123"),
        ("백이십삼", "ko", "123"),
        ("이천이십육 일일이이", "ko", "20261122"),
        ("삼백오번입니다", "ko", "305"),
        ("일이삼백", "ko", "12300"),
        ("천천히", "ko", ""),
    ],
)
def test_spoken_digits(text: str, lang: str, digits: str) -> None:
    assert spoken_digits(text, lang) == digits


@pytest.mark.parametrize(
    ("text", "lang", "answer"),
    [
        ("对", "cmn", True), ("是", "cmn", True), ("是的", "cmn", True), ("好", "cmn", True),
        ("好的", "cmn", True), ("确认", "cmn", True), ("没错", "cmn", True),
        ("对 对 对", "cmn", True), ("嗯 是的", "cmn", True), ("正确", "cmn", True),
        ("不对", "cmn", False), ("不是", "cmn", False), ("错了", "cmn", False),
        ("不", "cmn", False), ("不是的", "cmn", False), ("不对不对", "cmn", False),
        ("不正确", "cmn", False), ("不是 是", "cmn", None), ("今天天气", "cmn", None),
        ("", "cmn", None),
        ("yes", "en", True), ("Yeah", "en", True), ("correct", "en", True),
        ("that's right", "en", True), ("yes that is right", "en", True), ("yep", "en", True),
        ("no", "en", False), ("nope", "en", False), ("wrong", "en", False),
        ("that's not right", "en", False), ("not correct", "en", False),
        ("no that's wrong", "en", False), ("yes no", "en", None), ("banana", "en", None),
        ("네", "ko", True), ("예", "ko", True), ("맞아요", "ko", True), ("맞 아요", "ko", True),
        ("네 맞습니다", "ko", True), ("아니요", "ko", False), ("아니", "ko", False),
        ("아니 요", "ko", False), ("틀려요", "ko", False), ("틀려 요", "ko", False),
        ("안 맞아요", "ko", False), ("아닙니다", "ko", False), ("네 아니요", "ko", None),
        ("뭐라고요", "ko", None),
    ],
)
def test_yes_no(text: str, lang: str, answer: bool | None) -> None:
    assert yes_no(text, lang) is answer


@pytest.mark.parametrize(
    ("text", "lang", "score"),
    [
        ("非常满意", "cmn", 5), ("满意", "cmn", 4), ("一般", "cmn", 3), ("不满意", "cmn", 2),
        ("基本满意", "cmn", 3),
        ("非常不满意", "cmn", 1), ("五", "cmn", 5), ("我给三分", "cmn", 3), ("九", "cmn", None),
        ("very satisfied", "en", 5), ("satisfied", "en", 4), ("neutral", "en", 3),
        ("dissatisfied", "en", 2), ("very dissatisfied", "en", 1), ("four", "en", 4),
        ("매우 만족", "ko", 5), ("만족", "ko", 4), ("보통", "ko", 3), ("불만족", "ko", 2),
        ("매우 불만족", "ko", 1), ("오", "ko", 5), ("하나", "ko", 1), ("뭐", "ko", None),
    ],
)
def test_rating(text: str, lang: str, score: int | None) -> None:
    assert rating(text, lang) == score


@pytest.mark.parametrize(
    ("number", "lang", "words"),
    [
        ("1234", "cmn", "幺二三四"),
        ("12345", "cmn", "幺二三四五"),
        ("26112200017", "cmn", "二六幺，幺二二零，零零幺七"),
        ("010-1234", "cmn", "零幺零，幺二三四"),
        ("1234", "en", "one two three four"),
        ("26112200017", "en", "two six one, one two two zero, zero zero one seven"),
        ("1030", "ko", "일 공 삼 공"),
        ("010-1234-5678", "ko", "공 일 공, 일 이 삼 사, 오 육 칠 팔"),
    ],
)
def test_say_number_digits(number: str, lang: str, words: str) -> None:
    assert say_number_digits(number, lang) == words


def test_spoken_round_trip_of_case_numbers() -> None:
    for lang in ("cmn", "en", "ko"):
        assert spoken_digits(say_number_digits("26112200017", lang), lang) == "26112200017"


@pytest.mark.parametrize(
    ("day", "lang", "with_year", "words"),
    [
        (date(2026, 11, 29), "cmn", False, "十一月二十九日"),
        (date(2026, 11, 29), "cmn", True, "二零二六年十一月二十九日"),
        (date(2026, 2, 2), "cmn", False, "二月二日"),
        (date(2026, 10, 10), "cmn", False, "十月十日"),
        (date(2026, 11, 29), "en", False, "November twenty-ninth"),
        (date(2026, 11, 29), "en", True, "November twenty-ninth, twenty twenty-six"),
        (date(2005, 1, 1), "en", True, "January first, two thousand five"),
        (date(2026, 3, 22), "en", False, "March twenty-second"),
        (date(2026, 11, 29), "ko", False, "십일월 이십구일"),
        (date(2026, 6, 1), "ko", False, "유월 일일"),
        (date(2026, 10, 3), "ko", False, "시월 삼일"),
        (date(2026, 11, 29), "ko", True, "이천이십육년 십일월 이십구일"),
    ],
)
def test_say_date(day: date, lang: str, with_year: bool, words: str) -> None:
    assert say_date(day, lang, with_year=with_year) == words


@pytest.mark.parametrize(
    ("n", "cmn", "en", "ko"),
    [
        (0, "零", "zero", "영"),
        (1, "一", "one", "한"),
        (2, "两", "two", "두"),
        (11, "十一", "eleven", "열한"),
        (20, "二十", "twenty", "스무"),
        (22, "二十二", "twenty-two", "스물두"),
        (105, "一百零五", "one hundred five", "백오"),
        (2000, "两千", "two thousand", "이천"),
        (20000, "两万", "twenty thousand", "이만"),
    ],
)
def test_say_count(n: int, cmn: str, en: str, ko: str) -> None:
    assert (say_count(n, "cmn"), say_count(n, "en"), say_count(n, "ko")) == (cmn, en, ko)


@pytest.mark.parametrize(
    ("n", "words"),
    [(10, "十"), (110, "一百一十"), (1010, "一千零一十"), (100005, "十万零五"),
     (100010000, "一亿零一万"), (12345, "一万二千三百四十五")],
)
def test_cmn_number(n: int, words: str) -> None:
    assert cmn_number(n) == words


def test_other_number_words() -> None:
    assert ko_number(15000) == "만 오천"
    assert ko_number(29) == "이십구"
    assert en_number(1_000_001) == "one million one"
    assert [en_ordinal(n) for n in (1, 2, 3, 12, 20, 21, 100)] == [
        "first", "second", "third", "twelfth", "twentieth", "twenty-first", "one hundredth"]


def test_unknown_language_is_rejected() -> None:
    with pytest.raises(UnknownLanguageError, match="cmn, en, ko"):
        spoken_digits("1", "fr")
