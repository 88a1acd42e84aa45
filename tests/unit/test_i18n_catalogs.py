"""The message catalogs: every message id the interface uses has a zh_CN translation, the
fragments agree, placeholders survive translation, and the names of codes and phrases come
out in the reader's language."""

from __future__ import annotations

import re

import pytest

from crm.i18n import catalogs
from crm.i18n.catalogs import LOCALES_DIR, normalize, read_fragments, translator
from crm.i18n.extraction import untranslated, used_msgids
from crm.i18n.labels import CLOSED_LOOP, LABELS
from crm.i18n.phrases import Label, Phrase
from tests.zh_pages import not_chinese

_PLACEHOLDER = re.compile(r"%\([a-z_]+\)s|\{[a-z_]+\}")


def test_every_message_the_interface_uses_has_a_chinese_translation() -> None:
    missing = untranslated("zh_CN")
    assert not missing, "untranslated (python -m crm.i18n.extraction lists them):\n" + "\n".join(
        f"{where}: {msgid}" for msgid, where in sorted(missing.items()))


def test_the_extraction_finds_templates_scripts_and_labels() -> None:
    where = {w.split(":")[0] for _, w in used_msgids()}
    assert "crm/web/templates/console/base.html" in where
    assert "crm/i18n/labels.py" in where


def test_fragments_agree_and_keep_placeholders() -> None:
    seen: dict[tuple[str | None, str], tuple[str, str]] = {}
    for name, fragment in read_fragments(LOCALES_DIR / "zh_CN").items():
        for message in fragment:
            if not message.id:
                continue
            assert isinstance(message.string, str) and message.string.strip(), \
                f"{name}.po: {message.id!r} has no translation"
            assert sorted(_PLACEHOLDER.findall(message.id)) == sorted(
                _PLACEHOLDER.findall(message.string)), f"{name}.po: {message.id!r}"
            key = (message.context, message.id)
            if key in seen:
                assert seen[key][1] == message.string, \
                    f"{message.id!r}: {seen[key][0]}.po and {name}.po differ"
            seen[key] = (name, message.string)


@pytest.mark.parametrize(("given", "expected"), [
    ("zh-CN", "zh_CN"), ("zh_cn", "zh_CN"), ("zh", "zh_CN"), ("en-US", "en"), ("en", "en"),
    ("fr", None), ("", None), (None, None)])
def test_locale_names_are_normalised(given: str | None, expected: str | None) -> None:
    assert normalize(given) == expected


def test_codes_have_names_in_both_languages() -> None:
    zh, en = translator("zh_CN"), translator("en")
    assert zh.label("stage", "in_progress") == "办理中"
    assert en.label("stage", "in_progress") == "In handling"
    assert zh.label("language", "ko") == "韩语"
    assert zh.label("stage", "no_such_stage") == "no_such_stage"  # shown, never dropped
    assert zh.label("stage", None) == ""
    for kind, table in LABELS.items():
        for code in table:
            assert not not_chinese(zh.label(kind, code)), (kind, code, zh.label(kind, code))


def test_the_closed_loop_is_named_in_order() -> None:
    zh = translator("zh_CN")
    assert [zh.label("stage", s) for s in CLOSED_LOOP] == [
        "已受理", "已派单", "办理中", "已办结", "已结案", "回访", "已评价"]


def test_a_phrase_renders_in_each_language_and_survives_json() -> None:
    phrase = Phrase("Language {language} (by {by})",
                    {"language": Label("language", "ko"), "by": Label("channel", "keys")})
    again = Phrase.from_json(phrase.to_json())
    assert again == phrase
    assert translator("en").phrase(again) == "Language Korean (by keys)"


def test_the_default_is_chinese_and_unknown_locales_fall_back_to_it() -> None:
    assert translator(None).locale == catalogs.DEFAULT_LOCALE == "zh_CN"
    assert translator("fr").locale == "zh_CN"
    assert translator("en").gettext("Sign in") == "Sign in"
    assert translator("zh_CN").gettext("Sign in") == "登录"


def test_the_chinese_check_finds_english_and_codes() -> None:
    assert not_chinese("<p>已受理</p><script>var x = 'English words';</script>") == []
    assert not_chinese('<p>状态 in_progress</p>')
    assert not_chinese('<input placeholder="Search">')
    assert not_chinese("<p>坐席 Alice</p>", allowed={"Alice"}) == []
