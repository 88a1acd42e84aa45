"""The resident's urge (催办) in the IVR flow, without Asterisk: a verified caller told an
overdue case is offered the urge key and may urge once; nobody else is offered it."""

from dataclasses import replace

from crm.telephony.steps import CaseUrged
from ivr.flows.menu import (
    URGE_KEY,
    CallFlow,
    Keys,
    Log,
    LookupResult,
    NoInput,
    Say,
    State,
    UrgeCase,
    UrgeResult,
)
from speech.prompts import PROMPT_IDS
from tests.unit.test_call_flow import CASE, NUMBER, prompts, routed, to_case_prompt

OVERDUE = replace(CASE, overdue=True)


def told(case=OVERDUE, caller="13800138000") -> tuple[CallFlow, list]:
    flow = CallFlow()
    to_case_prompt(flow, caller=caller)
    flow.step(Keys(NUMBER + "#"))
    flow.step(Keys("1"))
    return flow, flow.step(LookupResult(case))


def status_vars(actions: list) -> dict:
    return next(a.vars for a in actions if isinstance(a, Say) and a.prompt == "status_full")


def test_an_overdue_case_is_offered_the_urge_key_and_urged_once() -> None:
    flow, actions = told()
    assert status_vars(actions)["urge_key"] == URGE_KEY
    assert flow.step(Keys(URGE_KEY)) == [UrgeCase(NUMBER, "keys")]
    actions = flow.step(UrgeResult(3))
    assert Log(CaseUrged(NUMBER, "keys", 3)) in actions
    assert prompts(actions) == ["urge_recorded", "after_status_menu"]
    assert flow.state is State.STATUS_MENU
    # once a call: the key is not the urge any more, and the status no longer offers it
    assert not any(isinstance(a, UrgeCase) for a in flow.step(Keys(URGE_KEY)))
    assert status_vars(flow.step(Keys("1")))["urge_key"] == ""
    assert routed(flow.step(Keys("3"))) == "end"


def test_an_urge_not_recorded_is_said_so() -> None:
    flow, _ = told()
    flow.step(Keys(URGE_KEY))
    actions = flow.step(UrgeResult(None))
    assert prompts(actions) == ["urge_failed", "after_status_menu"]
    assert Log(CaseUrged(NUMBER, "keys", None)) in actions


def test_no_urge_for_a_case_on_time_or_an_unverified_caller() -> None:
    flow, actions = told(CASE)
    assert status_vars(actions)["urge_key"] == ""
    assert not any(isinstance(a, UrgeCase) for a in flow.step(Keys(URGE_KEY)))
    flow, actions = told(caller="13911112222")  # asked for the last four digits
    actions = flow.step(Keys("0000"))  # wrong: stage only
    assert "status_stage_only" in prompts(actions)
    assert not any(isinstance(a, UrgeCase) for a in flow.step(Keys(URGE_KEY)))
    flow.step(NoInput())


def test_the_urge_prompts_are_in_every_pack() -> None:
    assert {"urge_recorded", "urge_failed"} <= set(PROMPT_IDS)


def test_an_overdue_case_is_urged_by_saying_so() -> None:
    from ivr.flows.menu import Speech
    from speech.grammar import pack_phrases
    from speech.intents import match_intent
    from speech.prompts import load_all

    flow, _ = told()
    assert flow.step(Speech("催办", intent="urge")) == [UrgeCase(NUMBER, "speech")]
    assert Log(CaseUrged(NUMBER, "speech", 1)) in flow.step(UrgeResult(1))
    for lang, pack in load_all().items():  # what the status menu hears means "urge"
        urges = pack.menu_phrases()["urge"]
        assert set(urges) <= set(pack_phrases(pack, "status_menu"))
        for phrase in urges:
            assert match_intent(phrase, lang, ("repeat", "agent", "end", "urge")).intent \
                == "urge", (lang, phrase)
