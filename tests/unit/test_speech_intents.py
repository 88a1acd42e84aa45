import pytest

from speech.intents import INTENTS, MIN_SCORE, keywords, language_choice, match_intent


@pytest.mark.parametrize(
    ("text", "lang", "intent"),
    [
        # Mandarin, as typed and as a recognizer segments it
        ("我想查一下我的工单", "cmn", "check_status"),
        ("我 想 查 一下 我 的 工单", "cmn", "check_status"),
        ("查进度", "cmn", "check_status"),
        ("我反映的问题处理得怎么样了", "cmn", "check_status"),
        ("工单状态", "cmn", "check_status"),
        ("转人工", "cmn", "agent"),
        ("人工服务", "cmn", "agent"),
        ("我要找人工", "cmn", "agent"),
        ("找工作人员", "cmn", "agent"),
        ("客服", "cmn", "agent"),
        ("服务信息", "cmn", "service_info"),
        ("你们几点上班", "cmn", "service_info"),
        ("服务中心在哪里", "cmn", "service_info"),
        ("办公时间", "cmn", "service_info"),
        ("再说一遍", "cmn", "repeat"),
        ("没听清", "cmn", "repeat"),
        ("重听", "cmn", "repeat"),
        ("没有了 谢谢 再见", "cmn", "end"),
        ("不用了", "cmn", "end"),
        # English
        ("I want to talk to someone", "en", "agent"),
        ("can I speak to a real person", "en", "agent"),
        ("Operator!", "en", "agent"),
        ("customer service please", "en", "agent"),
        ("check my case", "en", "check_status"),
        ("what's the status of my complaint", "en", "check_status"),
        ("progress", "en", "check_status"),
        ("what are your opening hours", "en", "service_info"),
        ("where is the service center", "en", "service_info"),
        ("address", "en", "service_info"),
        ("can you repeat that", "en", "repeat"),
        ("say that again", "en", "repeat"),
        ("no thanks goodbye", "en", "end"),
        ("that's all", "en", "end"),
        # Korean, with particles and as the model splits words
        ("상담원 연결해 주세요", "ko", "agent"),
        ("상담원과 통화하고 싶어요", "ko", "agent"),
        ("상담사", "ko", "agent"),
        ("직원 바꿔 주세요", "ko", "agent"),
        ("민원 조회", "ko", "check_status"),
        ("민원 조회해 주세요", "ko", "check_status"),
        ("제 민원 처리 결과", "ko", "check_status"),
        ("진행 상황", "ko", "check_status"),
        ("운영 시간", "ko", "service_info"),
        ("센터 주소 알려 주세요", "ko", "service_info"),
        ("다시 들려 주세요", "ko", "repeat"),
        ("들려 주세요", "ko", "repeat"),
        ("반복", "ko", "repeat"),
        ("종료", "ko", "end"),
        ("안녕히 계세요", "ko", "end"),
    ],
)
def test_intents_match_from_words(text: str, lang: str, intent: str) -> None:
    match = match_intent(text, lang)
    assert match.intent == intent, match
    assert match.score >= MIN_SCORE
    assert match.matched


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("今天天气不错", "cmn"), ("", "cmn"), ("查", "cmn"), ("时间", "cmn"),
        ("the weather is nice", "en"), ("check", "en"), ("", "en"),
        ("안녕하세요", "ko"), ("시간", "ko"), ("", "ko"),
    ],
)
def test_unknown_or_weak_text_has_no_intent(text: str, lang: str) -> None:
    assert match_intent(text, lang).intent is None


def test_long_keywords_win_over_their_parts() -> None:
    match = match_intent("人工服务", "cmn")
    assert match.matched == ("人工服务",)  # not 人工 + 服务 (service_info)
    assert match_intent("customer service", "en").matched == ("customer service",)


def test_a_tie_between_intents_is_no_intent() -> None:
    # 1.0 for repeat (再说) against 1.0 for agent (客服): ask again rather than guess
    assert match_intent("再说 客服", "cmn").intent is None


def test_keyword_tables_cover_every_intent_in_every_language() -> None:
    for lang in ("cmn", "en", "ko"):
        table = keywords(lang)
        assert set(table) == set(INTENTS)
        assert all(max(words.values()) >= MIN_SCORE for words in table.values())


def test_allowed_intents_restrict_the_choice() -> None:
    assert match_intent("查进度 再见", "cmn").intent == "check_status"
    assert match_intent("查进度 再见", "cmn", allowed=("repeat", "agent", "end")).intent == "end"


@pytest.mark.parametrize(
    ("text", "lang", "choice"),
    [("普通话", "cmn", "cmn"), ("我要说英语", "cmn", "en"), ("韩国语", "cmn", "ko"),
     ("English please", "en", "en"), ("Korean", "en", "ko"), ("mandarin", "en", "cmn"),
     ("한국어", "ko", "ko"), ("영어로 해 주세요", "ko", "en"),
     ("英语 韩语", "cmn", None), ("hello", "en", None)],
)
def test_language_choice(text: str, lang: str, choice: str | None) -> None:
    assert language_choice(text, lang) == choice
