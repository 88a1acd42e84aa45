"""Domain errors carry their message as a phrase: ``str(exc)`` is the English text (logs, the
open API, the CLI), and the console and desk render it in their reader's language
(crm.web.errors.for_reader)."""

from __future__ import annotations

from datetime import date

import pytest
from aiohttp.test_utils import make_mocked_request

from crm.cases.service import check_number, check_transition
from crm.errors import HotlineError, InvalidInput, InvalidTransition, PermissionDenied
from crm.i18n.catalogs import translator
from crm.i18n.phrases import Label, Labels, Phrase
from crm.reports.satisfaction import ReportFilter
from crm.web.errors import INTERNAL, for_reader, reply_for
from crm.web.session import SignInResult

ZH, EN = translator("zh_CN"), translator("en")


def test_the_english_text_is_the_message_and_the_phrase_is_kept() -> None:
    exc = InvalidTransition("accepted", "closed", ["dispatched"])
    assert str(exc) == exc.message == ("a case cannot go from accepted to closed; from accepted "
                                       "it may go to: dispatched")
    assert exc.phrase is not None
    assert ZH.phrase(exc.phrase) == "工单不能从“已受理”转到“已结案”；“已受理”之后只能转到：已派单"
    closed = InvalidTransition("closed", "accepted", [])
    assert str(closed).endswith("it may go to: none (the case is closed)")
    assert ZH.phrase(closed.phrase).endswith("之后不能再转（工单已结案）")  # type: ignore[arg-type]


def test_a_list_of_codes_is_named_in_each_language() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_transition("accepted", "xyz")
    exc = caught.value
    assert str(exc) == ("unknown stage 'xyz'; stages: accepted, dispatched, in_progress, "
                        "resolved, closed")
    assert ZH.phrase(exc.phrase) == (  # type: ignore[arg-type]
        "未知阶段 'xyz'；可选阶段：已受理、已派单、办理中、已办结、已结案")
    assert EN.phrase(exc.phrase) == (  # type: ignore[arg-type]
        "unknown stage 'xyz'; stages: Accepted, Dispatched, In handling, Replied, Closed")


def test_a_field_is_named_and_a_value_kept_as_given() -> None:
    with pytest.raises(InvalidInput) as caught:
        ReportFilter.from_query({"since": "2026-13-01"}, today=date(2026, 12, 6))
    exc = caught.value
    assert str(exc) == "since='2026-13-01' is not a date (YYYY-MM-DD)"
    assert ZH.phrase(exc.phrase) == (  # type: ignore[arg-type]
        "起始日期的值 '2026-13-01' 不是日期（格式：年-月-日，如 2026-01-31）")


def test_a_plain_text_error_has_no_phrase() -> None:
    exc = HotlineError("the phones are down {not a placeholder}")
    assert exc.phrase is None and str(exc) == "the phones are down {not a placeholder}"


def test_phrases_with_lists_and_phrases_inside_survive_json() -> None:
    phrase = Phrase("{act}: {stages} ({role})",
                    {"act": Phrase("a return"), "stages": Labels("stage", ("accepted", "closed")),
                     "role": Label("role", "admin")})
    again = Phrase.from_json(phrase.to_json())
    assert again == phrase
    assert again.render() == "a return: accepted, closed (admin)"
    assert ZH.phrase(again) == "申请退回: 已受理、已结案 (管理员)"


@pytest.mark.parametrize(("lang", "expected"), [
    ("zh_CN", "'123' 不是有效的工单号（11 位数字，含正确的校验位）"),
    ("en", "'123' is not a case number (11 digits with a valid check digit)")])
def test_the_reply_is_in_the_reader_s_language(lang: str, expected: str) -> None:
    request = make_mocked_request("GET", f"/?lang={lang}")
    with pytest.raises(InvalidInput) as caught:
        check_number("123")
    reply = for_reader(request, reply_for(caught.value))
    assert (reply.status, reply.code, reply.message) == (400, "invalid_case_number", expected)
    assert reply_for(caught.value).message == (  # the open API's: English
        "'123' is not a case number (11 digits with a valid check digit)")


def test_plain_texts_and_internal_errors_are_read_as_message_ids() -> None:
    zh = make_mocked_request("GET", "/?lang=zh_CN")
    assert for_reader(zh, INTERNAL).message == "内部错误"
    denied = PermissionDenied("sign in to the console first")  # a known id, raised plainly
    assert for_reader(zh, reply_for(denied)).message == "请先登录主管控制台"
    odd = PermissionDenied("no translation for this")
    assert for_reader(zh, reply_for(odd)).message == "no translation for this"


def test_the_sign_in_page_says_why_in_its_language() -> None:
    waiting = SignInResult(None, 429, Phrase("too many failed sign-ins, try again in {seconds} s",
                                             {"seconds": 7}), 7)
    assert waiting.explain("账号或密码错误。", ZH) == "登录失败次数过多，请 7 秒后重试。"
    assert waiting.explain("Wrong.", EN) == waiting.explain("Wrong.") == (
        "Too many failed sign-ins, try again in 7 s.")
