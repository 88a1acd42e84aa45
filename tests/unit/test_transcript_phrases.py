"""The pop's IVR transcript is kept as phrases: English for the API and the records, and the
sentence in each agent's own language on the desk."""

from __future__ import annotations

from crm.i18n.catalogs import translator
from crm.i18n.phrases import Label
from crm.live.screen_pop import TranscriptLine, summarise_ivr, transcript_phrase
from crm.telephony.steps import (
    CallbackDialling,
    KeysEntered,
    LanguageChosen,
    RouteChosen,
    StatusTold,
    VerificationResult,
)

ZH = translator("zh_CN")
EN = translator("en")


def test_keys_read_in_chinese_and_english() -> None:
    phrase = transcript_phrase(KeysEntered("1"))
    assert phrase is not None
    assert ZH.phrase(phrase) == "按键：1"
    assert EN.phrase(phrase) == "Keyed: 1"


def test_codes_in_a_line_are_named_in_the_readers_language() -> None:
    chosen = transcript_phrase(LanguageChosen("yue", "keys"))
    assert chosen is not None
    assert chosen.values["language"] == Label("language", "yue")
    assert ZH.phrase(chosen) == "语言：粤语（来自按键）"
    assert EN.phrase(chosen) == "Language Cantonese (by keys)"
    told = transcript_phrase(StatusTold("26112000012", "in_progress", verified=True))
    assert told is not None
    assert ZH.phrase(told) == "已告知工单 26112000012 状态为办理中（完整进度）"
    routed = transcript_phrase(RouteChosen("agent", "asked"))
    assert routed is not None and ZH.phrase(routed) == "转至人工坐席（来电人要求）"
    verified = transcript_phrase(VerificationResult(by="calling_number"))
    assert verified is not None and EN.phrase(verified) == "Caller verified by calling number"
    callback = transcript_phrase(CallbackDialling(7, 2, "abandoned", "agent_first"))
    assert callback is not None and "第 2 次" in ZH.phrase(callback)


def test_a_line_keeps_english_text_and_renders_per_reader() -> None:
    summary = summarise_ivr([{"at": None, "kind": "keys", "detail": {"keys": "1"}}])
    line = summary.transcript[0]
    assert isinstance(line, TranscriptLine) and line.text == "Keyed: 1"
    assert line.to_json() == {"at": None, "kind": "keys", "text": "Keyed: 1"}
    assert line.to_json(ZH)["text"] == "按键：1"
    assert line.to_json(EN)["text"] == "Keyed: 1"
    assert TranscriptLine(None, "keys", "Keyed: 2").text_in(ZH) == "Keyed: 2"  # no phrase
