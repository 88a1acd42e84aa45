import tomllib
from datetime import date, datetime
from pathlib import Path

import jinja2
import pytest

from speech.grammar import INTAKE_INTENTS, pack_phrases
from speech.intents import language_choice, match_intent
from speech.languages import LANGUAGES
from speech.numbers import rating, spoken_digits, yes_no
from speech.prompts import (
    CONFIRM_KEYS,
    GREETING_INFO_KEY,
    GREETING_LANGUAGE_KEYS,
    PROMPT_IDS,
    STAGES,
    STATUS_MENU_KEYS,
    LanguagePack,
    LanguagePackError,
    load_all,
)

SAMPLE_VARS = {
    "digits": "26112200017",
    "case_number": "26112200017",
    "stage": "in_progress",
    "department": "Housing",
    "deadline": date(2026, 11, 29),
    "update": "repair booked",
}


@pytest.fixture(scope="module")
def packs() -> dict[str, LanguagePack]:
    return load_all()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_pack_has_every_prompt_stage_and_grammar(lang: str) -> None:
    text = (Path(__file__).parents[2] / "speech" / "language_packs" / f"{lang}.toml").read_text()
    data = tomllib.loads(text)
    assert set(data["prompts"]) == set(PROMPT_IDS)
    assert set(data["stages"]) == set(STAGES)
    assert data["language"] == lang


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("speech", [True, False])
def test_every_prompt_renders(packs: dict[str, LanguagePack], lang: str, speech: bool) -> None:
    pack = packs[lang]
    for pid in PROMPT_IDS:
        text = pack.render(pid, speech=speech, **SAMPLE_VARS)
        assert text and "{" not in text and "\n" not in text, (pid, text)


def test_static_and_dynamic_prompts(packs: dict[str, LanguagePack]) -> None:
    for pack in packs.values():
        assert not pack.is_static("confirm_case_number")
        assert not pack.is_static("status_full")
        assert pack.is_static("greeting") and pack.is_static("service_info")
        assert len(pack.static_prompt_ids) >= 17


def test_missing_variable_is_an_error(packs: dict[str, LanguagePack]) -> None:
    with pytest.raises(jinja2.UndefinedError):
        packs["cmn"].render("confirm_case_number")


def test_mandarin_prompts_read_numbers_and_dates_as_words(packs: dict[str, LanguagePack]) -> None:
    pack = packs["cmn"]
    assert pack.render("confirm_case_number", digits="26112200017").startswith(
        "您输入的工单号是二六幺，幺二二零，零零幺七。正确请说“是”或按1")
    status = pack.render("status_full", **{**SAMPLE_VARS, "department": "住建局",
                                            "deadline": datetime(2026, 11, 29, 9, 0)})
    assert "正在办理" in status and "住建局" in status and "十一月二十九日" in status
    assert "幺二三四五" in pack.render("survey_return_visit_intro")


def test_optional_status_parts_are_left_out(packs: dict[str, LanguagePack]) -> None:
    text = packs["en"].render("status_full", case_number="1234", stage="resolved",
                              department=None, deadline=None, update=None)
    assert text == "Your case one two three four is resolved."
    # the call flow passes stage, department, deadline and update, and no case number
    text = packs["ko"].render("status_full", stage="closed", department=None, deadline=None,
                              update="완료")
    assert text == "민원의 현재 상태는 종결입니다. 최근 진행 내용은 완료입니다."


def test_keypad_wording_does_not_ask_to_speak(packs: dict[str, LanguagePack]) -> None:
    assert "说" not in packs["cmn"].render("ask_case_number", speech=False)
    assert "say" not in packs["en"].render("confirm_case_number", speech=False, digits="1")
    assert "say" in packs["en"].render("confirm_case_number", speech=True, digits="1")


def test_the_greeting_offers_the_other_languages_once(packs: dict[str, LanguagePack]) -> None:
    """Each language's greeting names the keys of the other languages, each in its own
    language, and not its own; configured keys replace the defaults."""
    offers = {"en": "For English press 8", "ko": "한국어 9번"}
    for lang, pack in packs.items():
        text = pack.render("greeting")
        for other, offer in offers.items():
            assert text.count(offer) == (0 if other == lang else 1), (lang, text)
    text = packs["cmn"].render("greeting", language_keys={"en": "5", "ko": "6", "cmn": "7"})
    assert "For English press 5" in text and "한국어 6번" in text and "普通话" not in text
    assert "说" not in packs["cmn"].render("greeting", speech=False)


def test_the_greeting_is_short(packs: dict[str, LanguagePack]) -> None:
    """Words, not seconds (tests/speech/test_greeting_length.py measures the audio): the
    Mandarin greeting stays a single short sentence plus the language offers."""
    text = packs["cmn"].render("greeting")
    assert len(text) <= 50, text
    assert packs["cmn"].rate_for("greeting") > packs["cmn"].rate
    assert packs["cmn"].rate_for("goodbye") == packs["cmn"].rate


def test_recording_name_only_for_the_static_text(packs: dict[str, LanguagePack]) -> None:
    pack = packs["en"]
    assert pack.recording_name("greeting", pack.render("greeting")) == "greeting"
    keys_text = pack.render("ask_case_number", speech=False)
    assert pack.recording_name("ask_case_number", keys_text) == "ask_case_number.keys"
    assert pack.recording_name("greeting", "something else") is None
    text = pack.render("confirm_case_number", digits="1")
    assert pack.recording_name("confirm_case_number", text) is None


def test_unknown_stage_is_spoken_as_is(packs: dict[str, LanguagePack]) -> None:
    assert packs["en"].render("status_stage_only", stage="on_hold") == "Your case is on_hold."


@pytest.mark.parametrize("lang", LANGUAGES)
def test_grammar_phrases_parse_to_their_meaning(packs: dict[str, LanguagePack], lang: str) -> None:
    pack = packs[lang]
    for intent, phrases in pack.menu_phrases().items():
        for phrase in phrases:
            assert match_intent(phrase, lang).intent == intent, (lang, phrase)
    for intent, phrases in pack.intake_phrases().items():
        for phrase in phrases:
            assert match_intent(phrase, lang, INTAKE_INTENTS).intent == intent, (lang, phrase)
    for phrase in pack.grammar_phrases("yes"):
        assert yes_no(phrase, lang) is True, phrase
    for phrase in pack.grammar_phrases("no"):
        assert yes_no(phrase, lang) is False, phrase
    for phrase in pack.grammar_phrases("rating"):
        assert rating(phrase, lang) in range(1, 6), phrase
    for phrase in pack.grammar_phrases("language"):
        assert language_choice(phrase, lang) is not None, phrase
    for phrase in pack.grammar_phrases("digits"):
        if phrase not in ("double", "triple"):
            assert spoken_digits(phrase, lang), phrase
    assert pack_phrases(pack, "yes_no")


def test_operator_override_merges_tables(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text(
        '[context]\nopening_hours = "every day from eight to eight"\n'
        '[prompts]\ngoodbye = "Bye now."\n')
    pack = LanguagePack.load("en", tmp_path)
    assert pack.render("goodbye") == "Bye now."
    assert "every day from eight to eight" in pack.render("service_info")
    assert pack.render("greeting").startswith("Hello")  # untouched prompts stay


def test_broken_pack_lists_every_problem() -> None:
    with pytest.raises(LanguagePackError) as err:
        LanguagePack.from_dict("en", {"prompts": {"greeting": "{% if %}", "bogus": "x"}})
    message = str(err.value)
    for fragment in ("missing prompt 'goodbye'", "unknown prompt 'bogus'",
                     "missing stage name 'closed'", "missing grammar list 'menu'",
                     "prompt 'greeting': template error"):
        assert fragment in message


def test_bad_override_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "ko.toml").write_text("[prompts\n")
    with pytest.raises(LanguagePackError, match=r"ko\.toml"):
        LanguagePack.load("ko", tmp_path)


def test_announced_keys_are_the_call_flows_keys() -> None:
    from ivr.flows import menu as call_flow
    from ivr.settings import HOTLINE_LANGUAGES, IntakeSettings

    assert {k: v for v, k in STATUS_MENU_KEYS.items()} == call_flow.STATUS_MENU_KEYS
    assert {k: v == "yes" for v, k in CONFIRM_KEYS.items()} == call_flow.YES_NO_KEYS
    # The greeting synthesised ahead (static) is the one the IVR plays by default.
    intake = call_flow.IntakeKeys()
    assert intake.greeting_vars() == {"language_keys": dict(GREETING_LANGUAGE_KEYS),
                                      "info_key": GREETING_INFO_KEY}
    settings = IntakeSettings()
    assert dict(settings.language_keys) == dict(intake.languages)
    assert settings.service_info_key == intake.service_info
    assert settings.check_status_key == intake.check_status
    assert settings.silence_timeout == intake.silence_timeout
    assert HOTLINE_LANGUAGES == LANGUAGES


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_re_prompt_of_the_call_flow_exists(packs: dict[str, LanguagePack],
                                                 lang: str) -> None:
    pack = packs[lang]
    collected = ("ask_case_number", "case_number_invalid",
                 "case_not_found", "confirm_case_number", "ask_phone_last4",
                 "after_status_menu")
    for pid in collected:
        for variant in ("", "_short", "_keys"):
            pack.resolve(pid + variant)  # KeyError names a missing one
            pack.render(pid + variant, **SAMPLE_VARS)
    assert pack.render("greeting_keys") == pack.render("greeting", speech=False)
    assert pack.render("ask_phone_last4_keys") == pack.render("ask_phone_last4", speech=False)
    assert pack.is_static("ask_case_number_keys")
    with pytest.raises(KeyError):
        pack.resolve("nonsense_short")
    with pytest.raises(KeyError):
        pack.render("nonsense")
