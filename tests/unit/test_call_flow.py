"""The IVR flow's state machine, without Asterisk: each input gives the expected actions."""

from datetime import UTC, date, datetime

from crm.case_lookup import CaseStatus
from crm.case_numbers import make_case_number
from ivr.call_flow import (
    Begin,
    CallFlow,
    Collect,
    Keys,
    Log,
    LookupCase,
    LookupResult,
    NoInput,
    RecordFailure,
    Route,
    Say,
    SetLanguage,
    Speech,
    State,
)

NUMBER = make_case_number(date(2026, 11, 20), 1)
CASE = CaseStatus(NUMBER, "in_progress", "住房保障科", datetime(2026, 11, 27, tzinfo=UTC),
                  "维修人员已上门", "13800138000")


def kinds(actions: list) -> list[str]:
    return [type(a).__name__ for a in actions]


def prompts(actions: list) -> list[str]:
    return [a.prompt for a in actions if isinstance(a, Say | Collect)]


def routed(actions: list) -> str | None:
    return next((a.route for a in actions if isinstance(a, Route)), None)


def to_case_prompt(flow: CallFlow, caller: str = "13800138000", lang: str | None = "cmn"):
    flow.step(Begin(caller, lang))
    return flow.step(Keys("1"))


def test_known_resident_skips_language_menu() -> None:
    flow = CallFlow()
    actions = flow.step(Begin("13800138000", "ko"))
    assert SetLanguage("ko") in actions
    assert prompts(actions) == ["greeting", "main_menu"]
    assert flow.state is State.MAIN_MENU


def test_language_chosen_by_key_then_junk_key_reprompts() -> None:
    flow = CallFlow()
    assert prompts(flow.step(Begin("999", None))) == ["greeting", "language_menu"]
    assert prompts(flow.step(Keys("7"))) == ["no_match", "language_menu_short"]
    actions = flow.step(Keys("2"))
    assert SetLanguage("en") in actions and flow.state is State.MAIN_MENU


def test_keyed_case_verified_by_calling_number_hears_full_status() -> None:
    flow = CallFlow()
    assert prompts(to_case_prompt(flow)) == ["ask_case_number"]
    assert prompts(flow.step(Keys(NUMBER + "#"))) == ["confirm_case_number"]
    assert flow.step(Keys("1"))[-1] == LookupCase(NUMBER)
    actions = flow.step(LookupResult(CASE))
    assert Log("verified", {"by": "calling_number"}) in actions
    assert prompts(actions) == ["status_full", "after_status_menu"]
    assert routed(flow.step(Keys("3"))) == "end"


def test_wrong_check_digit_is_asked_again_not_looked_up() -> None:
    flow = CallFlow()
    to_case_prompt(flow)
    bad = NUMBER[:-1] + str((int(NUMBER[-1]) + 1) % 10)
    actions = flow.step(Keys(bad + "#"))
    assert "case_number_invalid" in prompts(actions)
    assert not any(isinstance(a, LookupCase) for a in actions)
    assert RecordFailure("invalid_number") in actions
    assert flow.state is State.CASE_NUMBER


def test_unverified_caller_hears_stage_only() -> None:
    flow = CallFlow()
    to_case_prompt(flow, caller="13911112222")
    flow.step(Keys(NUMBER))
    flow.step(Keys("1"))
    assert prompts(flow.step(LookupResult(CASE))) == ["ask_phone_last4"]
    actions = flow.step(Keys("0000"))
    assert "status_stage_only" in prompts(actions)
    assert "status_full" not in prompts(actions)
    assert RecordFailure("verification_failed") in actions
    said = next(a for a in actions if isinstance(a, Say) and a.prompt == "status_stage_only")
    assert said.vars == {"stage": "in_progress"}


def test_last_four_digits_verify() -> None:
    flow = CallFlow()
    to_case_prompt(flow, caller="13911112222")
    flow.step(Keys(NUMBER))
    flow.step(Keys("1"))
    flow.step(LookupResult(CASE))
    assert "status_full" in prompts(flow.step(Keys("8000")))


def test_spoken_intent_and_digits() -> None:
    flow = CallFlow()
    flow.step(Begin("13800138000", "cmn"))
    assert prompts(flow.step(Speech("我想查一下我的工单", intent="check_status"))) == [
        "ask_case_number"]
    assert prompts(flow.step(Speech("...", digits=NUMBER))) == ["confirm_case_number"]
    assert isinstance(flow.step(Speech("对", yes=True))[-1], LookupCase)


def test_silence_reprompts_shorter_then_keys_then_agent() -> None:
    flow = CallFlow()
    flow.step(Begin("1", "cmn"))
    assert prompts(flow.step(NoInput())) == ["no_input", "main_menu_short"]
    assert prompts(flow.step(NoInput())) == ["no_input", "main_menu_keys"]
    assert routed(flow.step(NoInput())) == "agent"
    assert flow.state is State.DONE and flow.step(Keys("1")) == []


def test_blocked_lookup_offers_agent() -> None:
    flow = CallFlow()
    to_case_prompt(flow)
    flow.step(Keys(NUMBER))
    flow.step(Keys("1"))
    actions = flow.step(LookupResult(None, blocked=True))
    assert "too_many_attempts" in prompts(actions) and routed(actions) == "agent"


def test_unknown_case_three_times_goes_to_agent() -> None:
    flow = CallFlow()
    to_case_prompt(flow)
    for _ in range(3):
        flow.step(Keys(NUMBER))
        flow.step(Keys("1"))
        actions = flow.step(LookupResult(None))
        assert RecordFailure("unknown_number") in actions
    assert routed(actions) == "agent"
    assert kinds(actions).count("Route") == 1
