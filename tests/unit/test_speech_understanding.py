import pytest

from speech.recognizer import Hypothesis
from speech.understanding import Understanding, understand, understand_readings


@pytest.mark.parametrize(
    ("text", "lang", "grammar", "expected"),
    [
        ("转人工", "cmn", "menu", Understanding("转人工", intent="agent")),
        ("查进度 再见", "cmn", "status_menu", Understanding("查进度 再见", intent="end")),
        ("맞 아요", "ko", "yesno", Understanding("맞 아요", yes=True)),
        ("no", "en", "yes_no", Understanding("no", yes=False)),
        ("double five one", "en", "digits", Understanding("double five one", digits="551")),
        ("非常满意", "cmn", "rating", Understanding("非常满意", rating=5)),
        ("English", "en", "language", Understanding("English", language="en")),
    ],
)
def test_understand_by_grammar(text: str, lang: str, grammar: str,
                               expected: Understanding) -> None:
    assert understand(text, lang, grammar) == expected


def test_unknown_grammar_is_an_error() -> None:
    with pytest.raises(KeyError):
        understand("x", "en", "weather")


# --- the greeting: the best reading made of whole phrases (issue 13) -----------------------

KO_INTAKE = {("민원", "조회"), ("민원", "확인"), ("상담원", "연결해", "주세요"), ("상담원",),
             ("여덟",), ("이",), ("육",), ("일",), ("공",)}
EN_INTAKE = {("check", "status"), ("case", "status"), ("agent",), ("six",), ("one",),
             ("two",), ("four",)}


def whole(phrases: set[tuple[str, ...]]):
    def check(text: str) -> bool:
        words = tuple(text.split())
        reached = [True] + [False] * len(words)
        for i in range(len(words)):
            for j in range(i + 1, len(words) + 1):
                if reached[i] and words[i:j] in phrases:
                    reached[j] = True
        return bool(words) and reached[-1]
    return check


def readings(*pairs: tuple[str, float]) -> list[Hypothesis]:
    return [Hypothesis(text, likelihood) for text, likelihood in pairs]


@pytest.mark.parametrize(("heard", "lang", "phrases", "intent", "digits"), [
    # the bench's caller: a request cut off by a digit, the request a hair behind
    (readings(("민원 여덟", 120.4), ("민원 조회", 120.0)), "ko", KO_INTAKE, "check_status", ""),
    (readings(("check six", 88.0), ("check status", 86.5)), "en", EN_INTAKE, "check_status",
     ""),
    # the first reading already means something: kept, whole phrases or not
    (readings(("상담원 연결해 주세요", 140.0), ("민원 조회", 139.9)), "ko", KO_INTAKE, "agent", ""),
    (readings(("하나 상담원 주세요", 140.0), ("민원 조회", 139.9)), "ko", KO_INTAKE, "agent", "1"),
    # a number is something too
    (readings(("이 육 일 이", 99.0), ("민원 조회", 98.0)), "ko", KO_INTAKE, None, "2612"),
    (readings(("one two four six", 70.0),), "en", EN_INTAKE, None, "1246"),
])
def test_the_best_whole_reading_that_means_something(heard, lang, phrases, intent,
                                                     digits) -> None:
    u = understand_readings(heard, lang, "intake", whole(phrases))
    assert u is not None and (u.intent, u.digits) == (intent, digits)


@pytest.mark.parametrize("heard", [
    readings(("민원 여덟", 120.4), ("민원 조회", 117.0)),  # too far behind the best
    readings(("민원 여덟", 120.4), ("민원 일", 120.3)),    # nothing means anything
    readings(("민원 여덟", 120.4), ("조회 민원", 120.3)),  # a request, but not whole phrases
    # a few digits behind the best are no case number (CI: "상담원 연결해 주세요" taken as
    # "아홉 여덟 넷 영", then "invalid number" instead of a person)
    readings(("연결해 여덟", 80.0), ("이 육 일 이", 79.5)),
    readings(),
])
def test_no_reading_is_preferred_to_the_first(heard: list[Hypothesis]) -> None:
    # ... and the IVR understands the first reading as it is ("민원 여덟": nothing, the queue)
    assert understand_readings(heard, "ko", "intake", whole(KO_INTAKE)) is None


def test_a_whole_case_number_heard_second_is_taken() -> None:
    heard = readings(("민원 여덟", 80.0), ("일 이 육 일 이 이 공 공 공 일 육", 79.5))
    u = understand_readings(heard, "ko", "intake", whole(KO_INTAKE))
    assert u is not None and u.digits == "12612200016"


def test_a_request_for_a_person_heard_second_is_taken_as_such() -> None:
    heard = readings(("이 여덟", 60.0), ("상담원", 59.0))
    u = understand_readings(heard, "ko", "intake", whole(KO_INTAKE))
    assert u is not None and u.intent == "agent"


@pytest.mark.parametrize(("text", "lang", "intent"), [
    ("민원 조회", "ko", "check_status"), ("민원 확인", "ko", "check_status"),
    ("접수 번호 조회", "ko", "check_status"), ("진행 상황 알려주세요", "ko", "check_status"),
    ("상담원 바꿔 주세요", "ko", "agent"), ("직원 연결해 주세요", "ko", "agent"),
    ("check my case", "en", "check_status"), ("status of my case", "en", "check_status"),
    ("what is the status of my complaint", "en", "check_status"),
    ("speak to a person", "en", "agent"),
    ("查进度", "cmn", "check_status"), ("转人工", "cmn", "agent"),
])
def test_greeting_requests_in_three_languages(text: str, lang: str, intent: str) -> None:
    assert understand(text, lang, "intake").intent == intent
