"""The IVR flow's state machine, without Asterisk: each input gives the expected actions."""

from datetime import UTC, date, datetime

from crm.cases.lookup import CaseStatus
from crm.cases.numbers import make_case_number
from crm.telephony.steps import VerificationResult
from ivr.flows.menu import (
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
    assert Log(VerificationResult(by="calling_number")) in actions
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
    assert RecordFailure("verification_failed", NUMBER) in actions
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


# -- verification that leaks nothing -----------------------------------------------------------
def to_verification(flow: CallFlow, caller: str | None = "13911112222",
                    locked: bool = False) -> list:
    to_case_prompt(flow, caller=caller)
    flow.step(Keys(NUMBER + "#"))
    flow.step(Keys("1"))
    return flow.step(LookupResult(CASE, verification_locked=locked))


def logged(actions: list) -> str:
    return repr([a for a in actions if isinstance(a, Log | RecordFailure)])


def test_the_verification_digits_are_asked_for_as_a_secret_and_never_logged() -> None:
    flow = CallFlow()
    [ask] = [a for a in to_verification(flow) if isinstance(a, Collect)]
    assert (ask.prompt, ask.max_digits, ask.secret) == ("ask_phone_last4", 4, True)
    actions = flow.step(Keys("8000"))
    assert Log(VerificationResult(by="last4", result=True, length=4)) in actions
    assert "8000" not in logged(actions) and "status_full" in prompts(actions)
    # Only the secret question is secret: the menus around it are not.
    assert not any(a.secret for a in actions if isinstance(a, Collect))


def test_a_wrong_answer_logs_the_outcome_and_counts_against_the_case_not_the_digits() -> None:
    flow = CallFlow()
    to_verification(flow)
    actions = flow.step(Keys("1234#"))
    assert Log(VerificationResult(by="last4", result=False, length=4)) in actions
    assert RecordFailure("verification_failed", NUMBER) in actions
    assert "1234" not in logged(actions)
    assert prompts(actions) == ["verification_failed", "status_stage_only", "after_status_menu"]


def test_re_prompts_for_the_digits_stay_secret_and_say_nothing_of_what_was_keyed() -> None:
    flow = CallFlow()
    to_verification(flow)
    short = flow.step(Keys("80#"))  # too short: asked again, not checked
    assert [(a.prompt, a.secret) for a in short if isinstance(a, Collect)] == [
        ("ask_phone_last4_short", True)]
    assert "80" not in repr([a.step for a in short if isinstance(a, Log)])
    keys_only = flow.step(NoInput())
    assert [(a.prompt, a.secret) for a in keys_only if isinstance(a, Collect)] == [
        ("ask_phone_last4_keys", True)]
    assert not flow.verified and flow.state is State.VERIFY_LAST4


def test_spoken_digits_verify_and_a_spoken_request_for_an_agent_is_heard() -> None:
    flow = CallFlow()
    to_verification(flow)
    actions = flow.step(Speech("八零零零", digits="8000", confidence=0.8))
    assert flow.verified and "8000" not in logged(actions) and "八零零零" not in logged(actions)
    other = CallFlow()
    to_verification(other)
    assert routed(other.step(Speech("转人工", intent="agent"))) == "agent"


def test_digits_are_compared_with_the_contact_phone_as_digits() -> None:
    flow = CallFlow()
    to_case_prompt(flow, caller="13911112222")
    flow.step(Keys(NUMBER))
    flow.step(Keys("1"))
    flow.step(LookupResult(CaseStatus(NUMBER, "accepted", None, None, None, "+86 138-0013-8000")))
    assert flow.step(Keys("8000")) and flow.verified
    odd = CallFlow()
    to_verification(odd)
    assert prompts(odd.step(Keys("80a0"))) == ["no_match", "ask_phone_last4_short"]


def test_a_case_locked_after_many_failed_verifications_is_not_asked_for_digits() -> None:
    flow = CallFlow()
    actions = to_verification(flow, locked=True)
    assert not any(isinstance(a, Collect) and a.secret for a in actions)
    assert Log(VerificationResult(result=False, reason="verification_locked")) in actions
    assert prompts(actions) == ["verification_failed", "status_stage_only", "after_status_menu"]
    # Calling from the case's contact phone still verifies.
    own = CallFlow()
    assert "status_full" in prompts(to_verification(own, caller="13800138000", locked=True))


def test_a_withheld_caller_is_limited_within_the_call() -> None:
    """No number to count against: three failures in this call, then an agent."""
    flow = CallFlow()
    to_case_prompt(flow, caller=None)
    bad = NUMBER[:-1] + str((int(NUMBER[-1]) + 1) % 10)
    failures = []
    for _ in range(3):
        actions = flow.step(Keys(bad + "#"))
        failures += [a for a in actions if isinstance(a, RecordFailure)]
    assert failures == [RecordFailure("invalid_number")] * 3
    assert routed(actions) == "agent" and flow.state is State.DONE
    # One verification per call: after a failure the caller is not asked again.
    once = CallFlow()
    to_verification(once, caller=None)
    once.step(Keys("0000"))
    assert once.state is State.STATUS_MENU
    again = once.step(Keys("1"))
    assert not any(isinstance(a, Collect) and a.secret for a in again)
