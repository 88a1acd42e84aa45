"""The IVR flow's state machine, without Asterisk: each input gives the expected actions."""

from datetime import UTC, date, datetime

from crm.cases.lookup import CaseStatus
from crm.cases.numbers import make_case_number
from crm.telephony.steps import (
    IntentChosen,
    LanguageChosen,
    NotUnderstood,
    RouteChosen,
    VerificationResult,
)
from ivr.flows.menu import (
    MAX_GREETINGS,
    Begin,
    CallFlow,
    Collect,
    IntakeKeys,
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


def route_of(actions: list) -> Route | None:
    return next((a for a in actions if isinstance(a, Route)), None)


def test_the_greeting_is_the_only_prompt_before_the_caller_is_heard() -> None:
    flow = CallFlow()
    actions = flow.step(Begin("999", None))
    assert prompts(actions) == ["greeting"] and flow.state is State.GREETING
    [greeting] = [a for a in actions if isinstance(a, Collect)]
    assert greeting.grammar == "intake" and greeting.max_digits == len(NUMBER)
    assert greeting.timeout == 1.5
    assert greeting.commands == {"8", "9", "0", "1"}
    assert greeting.vars == {"language_keys": {"en": "8", "ko": "9"}, "info_key": "0"}
    assert not any(isinstance(a, SetLanguage) for a in actions)


def test_known_resident_is_greeted_in_their_language_at_once() -> None:
    flow = CallFlow()
    actions = flow.step(Begin("13800138000", "ko"))
    assert SetLanguage("ko") in actions and Log(LanguageChosen("ko", "profile")) in actions
    assert prompts(actions) == ["greeting"]
    assert flow.state is State.GREETING
    assert route_of(flow.step(NoInput())) == Route("agent", "ko")


def test_a_silent_caller_joins_the_queue_without_another_prompt() -> None:
    flow = CallFlow()
    flow.step(Begin("13800138000", None))
    actions = flow.step(NoInput())
    assert prompts(actions) == []  # no transfer prompt delays the queue join
    assert actions == [Log(RouteChosen("agent", "silent")), Route("agent", "cmn")]
    assert flow.state is State.DONE and flow.step(Keys("1")) == []


def test_a_case_number_keyed_at_the_greeting_is_read_back_at_once() -> None:
    for keyed in (NUMBER + "#", NUMBER):
        flow = CallFlow()
        flow.step(Begin("13800138000", None))
        actions = flow.step(Keys(keyed))
        assert prompts(actions) == ["confirm_case_number"]
        assert actions[-1].vars == {"digits": NUMBER}
        assert flow.step(Keys("1"))[-1] == LookupCase(NUMBER)
        assert prompts(flow.step(LookupResult(CASE))) == ["status_full", "after_status_menu"]


def test_a_wrong_number_keyed_at_the_greeting_is_asked_again() -> None:
    flow = CallFlow()
    flow.step(Begin("13800138000", None))
    actions = flow.step(Keys("2611#"))
    assert prompts(actions) == ["case_number_invalid"]
    assert RecordFailure("invalid_number") in actions and flow.state is State.CASE_NUMBER


def test_a_spoken_case_number_or_status_request_at_the_greeting() -> None:
    said = CallFlow()
    said.step(Begin("13800138000", "cmn"))
    assert prompts(said.step(Speech("二六幺幺...", digits=NUMBER))) == ["confirm_case_number"]
    asked = CallFlow()
    asked.step(Begin("13800138000", "cmn"))
    actions = asked.step(Speech("我想查一下我的工单", intent="check_status", digits="1"))
    assert prompts(actions) == ["ask_case_number"]
    assert Log(IntentChosen("check_status", "speech")) in actions


def test_a_request_for_a_person_or_anything_else_said_goes_to_the_queue() -> None:
    person = CallFlow()
    person.step(Begin("13800138000", "en"))
    actions = person.step(Speech("operator", intent="agent"))
    assert route_of(actions) == Route("agent", "en") and prompts(actions) == []
    other = CallFlow()
    other.step(Begin("13800138000", None))
    actions = other.step(Speech("我家楼下的路灯坏了"))
    assert Log(NotUnderstood("greeting")) in actions
    assert Log(RouteChosen("agent", "not a status request")) in actions
    assert route_of(actions) == Route("agent", "cmn")


def test_language_keys_switch_and_replay_the_greeting_once() -> None:
    flow = CallFlow()
    flow.step(Begin("999", None))
    actions = flow.step(Keys("8"))
    assert SetLanguage("en") in actions and Log(LanguageChosen("en", "key")) in actions
    assert prompts(actions) == ["greeting"] and flow.language == "en"
    assert route_of(flow.step(NoInput())) == Route("agent", "en")
    korean = CallFlow()
    korean.step(Begin("999", None))
    korean.step(Keys("9"))
    assert korean.language == "ko"
    spoken = CallFlow()
    spoken.step(Begin("999", None))
    actions = spoken.step(Speech("English", language="en"))
    assert Log(LanguageChosen("en", "speech")) in actions and prompts(actions) == ["greeting"]


def test_a_request_heard_with_a_language_name_is_a_request() -> None:
    """"영어 연결해 주세요" (a misheard "상담원 연결해 주세요"): the request wins, the language
    stays; a name heard with digits is no language choice either."""
    flow = CallFlow()
    flow.step(Begin("13600136000", "ko"))
    actions = flow.step(Speech("영어 연결해 주세요", intent="agent", language="en"))
    assert route_of(actions) == Route("agent", "ko") and flow.language == "ko"
    other = CallFlow()
    other.step(Begin("13600136000", "ko"))
    actions = other.step(Speech("민원 영어 이", digits="2", language="en"))
    assert not any(isinstance(a, SetLanguage) for a in actions)
    assert route_of(actions) == Route("agent", "ko")


def test_configured_keys_replace_the_defaults() -> None:
    keys = IntakeKeys(languages={"en": "5", "cmn": "7"}, service_info=None, check_status="*",
                      silence_timeout=0.8)
    flow = CallFlow(intake=keys)
    [greeting] = [a for a in flow.step(Begin("999", None)) if isinstance(a, Collect)]
    assert greeting.commands == {"5", "7", "*"} and greeting.timeout == 0.8
    assert SetLanguage("en") in flow.step(Keys("5"))
    assert prompts(flow.step(Keys("*"))) == ["ask_case_number"]
    stray = CallFlow(intake=keys)
    stray.step(Begin("999", None))
    assert route_of(stray.step(Keys("0"))) == Route("agent", "cmn")  # no info key here


def test_the_service_information_key_or_phrase_returns_to_the_greeting() -> None:
    flow = CallFlow()
    flow.step(Begin("999", None))
    actions = flow.step(Keys("0"))
    assert prompts(actions) == ["service_info", "greeting"]
    assert Log(IntentChosen("service_info", "keys")) in actions
    assert flow.state is State.GREETING
    assert prompts(flow.step(Speech("办公时间", intent="service_info"))) == [
        "service_info", "greeting"]
    # the greeting is not replayed for ever: then a person helps
    actions = flow.step(Keys("0"))
    assert MAX_GREETINGS == 3 and route_of(actions) == Route("agent", "cmn")


def test_the_check_status_key_asks_for_the_number() -> None:
    flow = CallFlow()
    flow.step(Begin("999", None))
    actions = flow.step(Keys("1"))
    assert prompts(actions) == ["ask_case_number"]
    assert Log(IntentChosen("check_status", "keys")) in actions


def test_junk_keys_at_the_greeting_reach_a_person() -> None:
    for junk in ("5", "*", "#", "3"):
        flow = CallFlow()
        flow.step(Begin("999", None))
        actions = flow.step(Keys(junk))
        assert route_of(actions) == Route("agent", "cmn"), junk
        assert Log(RouteChosen("agent", "stray key")) in actions
        assert not any(isinstance(a, LookupCase | RecordFailure) for a in actions)


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
    flow.step(Begin("13800138000", "cmn"))  # the greeting hears the request
    assert prompts(flow.step(Speech("我想查一下我的工单", intent="check_status"))) == [
        "ask_case_number"]
    assert prompts(flow.step(Speech("...", digits=NUMBER))) == ["confirm_case_number"]
    assert isinstance(flow.step(Speech("对", yes=True))[-1], LookupCase)


def test_silence_after_asking_reprompts_shorter_then_keys_then_agent() -> None:
    flow = CallFlow()
    to_case_prompt(flow)
    assert prompts(flow.step(NoInput())) == ["no_input", "ask_case_number_short"]
    assert prompts(flow.step(NoInput())) == ["no_input", "ask_case_number_keys"]
    actions = flow.step(NoInput())
    assert routed(actions) == "agent" and "transfer_to_agent" in prompts(actions)
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
