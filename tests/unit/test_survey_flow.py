"""The satisfaction survey as a pure state machine: transitions, rating by key and voice,
re-prompts, hang-ups; and the calling-hours arithmetic of return visits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from crm.surveys.return_visits import CallingHours, RetryPolicy
from crm.surveys.service import extension_of
from crm.telephony.steps import SurveyCommented, SurveyRated, SurveyStarted
from ivr.flows.menu import Collect, Keys, Log, NoInput, Say, SetLanguage, Speech
from ivr.flows.survey import (
    BeginSurvey,
    CallerLeft,
    CommentTaken,
    EndSurvey,
    NoComment,
    RecordComment,
    RecordRating,
    SurveyFlow,
    SurveyState,
    rating_from,
)
from speech.understanding import understand


def kinds(actions: list) -> list[str]:
    return [type(a).__name__ for a in actions]


def started(kind: str = "after_call", language: str = "cmn", **kw: str) -> SurveyFlow:
    flow = SurveyFlow()
    flow.step(BeginSurvey(kind, language, **kw))
    return flow


def test_after_call_survey_starts_in_the_callers_language() -> None:
    flow = SurveyFlow()
    actions = flow.step(BeginSurvey("after_call", "ko"))
    assert actions[0] == SetLanguage("ko")
    assert Say("survey_intro") in actions
    assert actions[-1] == Collect("survey_rating", "rating")
    assert flow.state is SurveyState.RATING and flow.language == "ko"


def test_return_visit_intro_names_the_case() -> None:
    actions = SurveyFlow().step(BeginSurvey("return_visit", "cmn", "26112200017"))
    assert Say("survey_return_visit_intro", {"case_number": "26112200017"}) in actions
    assert Log(SurveyStarted("return_visit")) in actions


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown survey kind"):
        SurveyFlow().step(BeginSurvey("poll"))


@pytest.mark.parametrize("key", ["1", "2", "3", "4", "5"])
def test_a_key_rates_and_asks_for_a_comment(key: str) -> None:
    flow = started()
    actions = flow.step(Keys(key))
    assert RecordRating(int(key), "keys") in actions
    assert isinstance(actions[-1], RecordComment)
    assert flow.state is SurveyState.COMMENT and flow.score == int(key)


@pytest.mark.parametrize(
    ("text", "lang", "score"),
    [("非常满意", "cmn", 5), ("满意", "cmn", 4), ("基本满意", "cmn", 3), ("不满意", "cmn", 2),
     ("非常不满意", "cmn", 1), ("四", "cmn", 4),
     ("very satisfied", "en", 5), ("satisfied", "en", 4), ("neutral", "en", 3),
     ("dissatisfied", "en", 2), ("very dissatisfied", "en", 1), ("two", "en", 2),
     ("매우 만족", "ko", 5), ("만족", "ko", 4), ("보통", "ko", 3), ("불만족", "ko", 2),
     ("매우 불만족", "ko", 1)],
)
def test_a_spoken_rating_in_each_language(text: str, lang: str, score: int) -> None:
    heard = Speech(text, rating=understand(text, lang, "rating").rating, language=lang)
    flow = started(language=lang)
    actions = flow.step(heard)
    assert RecordRating(score, "speech") in actions
    assert Log(SurveyRated(score, "speech")) in actions


@pytest.mark.parametrize("inp", [Keys("0"), Keys("6"), Keys("#"), Keys(""), Speech("再见")])
def test_no_rating_is_no_match(inp: Keys | Speech) -> None:
    assert rating_from(inp) is None
    flow = started()
    actions = flow.step(inp)
    assert Say("no_match") in actions
    assert actions[-1] == Collect("survey_rating_short", "rating")
    assert flow.state is SurveyState.RATING


def test_misses_reprompt_shorter_then_for_keys_then_end_without_a_score() -> None:
    flow = started()
    first = flow.step(NoInput())
    assert Say("no_input") in first and first[-1] == Collect("survey_rating_short", "rating")
    second = flow.step(Keys("9"))
    assert second[-1] == Collect("survey_rating_keys", "rating")
    third = flow.step(NoInput())
    assert third[-1] == EndSurvey("no_answer")
    assert not any(isinstance(a, RecordRating) for a in first + second + third)
    assert flow.state is SurveyState.DONE and flow.score is None
    assert flow.step(Keys("5")) == []


def test_comment_then_thanks_and_end_rated() -> None:
    flow = started()
    flow.step(Keys("4"))
    actions = flow.step(CommentTaken(7.34))
    assert Log(SurveyCommented(7.3)) in actions
    assert Say("survey_thanks") in actions and actions[-1] == EndSurvey("rated")
    assert flow.state is SurveyState.DONE


def test_no_comment_still_thanks() -> None:
    flow = started()
    flow.step(Keys("2"))
    assert kinds(flow.step(NoComment())) == ["Log", "Say", "EndSurvey"]


def test_hanging_up_before_rating_is_no_answer_not_a_score() -> None:
    flow = started()
    actions = flow.step(CallerLeft())
    assert actions[-1] == EndSurvey("no_answer")
    assert not any(isinstance(a, RecordRating | Say) for a in actions)
    assert flow.state is SurveyState.DONE


def test_hanging_up_during_the_comment_keeps_the_rating() -> None:
    flow = started()
    flow.step(Keys("5"))
    assert flow.step(CallerLeft()) == [EndSurvey("rated")]


def test_input_out_of_place_is_ignored() -> None:
    flow = SurveyFlow()
    assert flow.step(Keys("5")) == []  # not begun
    flow = started()
    assert flow.step(CommentTaken(3.0)) == []  # no comment asked yet
    assert flow.step(BeginSurvey()) == []  # begun once only


@pytest.mark.parametrize(
    ("interface", "extension"),
    [("PJSIP/2001", "2001"), ("Local/2002@hotline-agents/n", "2002"), ("SIP/3001-0001", "3001"),
     ("", None), (None, None), ("PJSIP/agent-x", None)],
)
def test_agent_extension_from_the_member_interface(interface: str | None,
                                                   extension: str | None) -> None:
    assert extension_of(interface) == extension


# -- calling hours ----------------------------------------------------------------------------
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


def test_calling_hours_window() -> None:
    hours = CallingHours.parse("09:00-20:00", "Asia/Shanghai")
    assert not hours.contains(at(8, 59))
    assert hours.contains(at(9, 0)) and hours.contains(at(19, 59))
    assert not hours.contains(at(20, 0))
    assert hours.next_opening(at(12)) == at(12)
    assert hours.next_opening(at(7)) == at(9)
    assert hours.next_opening(at(21)) == at(9, day=3)
    assert CallingHours.parse("00:00-24:00", "UTC").contains(at(23, 59))


def test_retry_lands_inside_the_calling_hours() -> None:
    policy = RetryPolicy(3, timedelta(minutes=120), CallingHours.parse("09:00-20:00",
                                                                       "Asia/Shanghai"))
    assert policy.next_attempt(at(10)) == at(12)
    assert policy.next_attempt(at(19)) == at(9, day=3)
    assert RetryPolicy(retry_after=timedelta(minutes=5)).next_attempt(at(23)) == at(23, 5)


# -- settings -----------------------------------------------------------------------------------
def test_survey_settings_defaults_and_validation(tmp_path, monkeypatch) -> None:
    from hotline.settings import SettingsError, load_settings

    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    survey = load_settings().survey
    assert (survey.enabled, survey.fatigue_days, survey.calling_hours, survey.max_attempts) == (
        True, 30, "09:00-20:00", 3)
    assert survey.return_visit_interval == 0  # return visits run from the CLI by default
    bad = tmp_path / "bad.toml"
    bad.write_text('[survey]\ncalling_hours = "20:00-09:00"\n')
    with pytest.raises(SettingsError, match="start before end"):
        load_settings(bad)
    bad.write_text('[survey]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(SettingsError, match="unknown timezone"):
        load_settings(bad)
    bad.write_text('[survey]\ndial = "PJSIP/13800138000@pstn-gateway"\n')
    with pytest.raises(SettingsError, match="must contain"):
        load_settings(bad)
    monkeypatch.setenv("HOTLINE_SURVEY__FATIGUE_DAYS", "7")
    assert load_settings().survey.fatigue_days == 7


async def test_no_return_visits_when_surveys_are_disabled(tmp_path) -> None:
    from hotline.settings import Settings
    from hotline.surveys import run_return_visits

    settings = Settings(state_dir=tmp_path, survey={"enabled": False},
                        ami={"port": 1})  # nothing listens there: it must not be used
    assert await run_return_visits(settings) == []
