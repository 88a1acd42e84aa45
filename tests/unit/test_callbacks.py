"""Callback rules that need no database or Asterisk: the callback offer's state machine,
where a callback joins the queue (arrival order), which abandoned calls are called back,
what the offer's answer decides, and the callback steps (stored form, pop lines)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from crm.callbacks.dialing import seconds_left
from crm.callbacks.service import number_problem
from crm.callbacks.watcher import _Call, abandon_reason, offer_reason
from crm.live.screen_pop import transcript_text
from crm.settings import CallbackSettings
from crm.surveys.return_visits import CallingHours
from crm.telephony.steps import (
    CallbackClosedByCall,
    CallbackDialling,
    CallbackNotPossible,
    CallbackOffered,
    CallbackOutcome,
    CallbackRequested,
    NothingHeard,
    NotUnderstood,
    step_from_json,
    step_from_row,
)
from ivr.asterisk.callback_dialer import AmiCallbackDialer, _acquire, arrival_position
from ivr.flows.callback_offer import (
    MAX_ASKS,
    Answer,
    BeginOffer,
    CallbackOfferFlow,
    OfferState,
)
from ivr.flows.menu import Collect, Keys, Log, NoInput, Say, SetLanguage, Speech

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


# -- the offer ------------------------------------------------------------------------------
def answer_of(actions: list) -> str | None:
    found = [a.answer for a in actions if isinstance(a, Answer)]
    return found[0] if found else None


def prompts(actions: list) -> list[str]:
    return [a.prompt for a in actions if isinstance(a, Say | Collect)]


def test_a_caller_who_chose_the_callback_hears_it_confirmed() -> None:
    flow = CallbackOfferFlow()
    actions = flow.step(BeginOffer("chosen", "ko"))
    assert actions[0] == SetLanguage("ko")
    assert prompts(actions) == ["callback_confirmed"] and answer_of(actions) == "yes"
    assert flow.state is OfferState.DONE and flow.step(Keys("1")) == []


@pytest.mark.parametrize(("said", "answer", "last"), [
    (Keys("1"), "yes", "callback_confirmed"), (Keys("2"), "no", "goodbye"),
    (Speech("是", yes=True), "yes", "callback_confirmed"),
    (Speech("不用", yes=False), "no", "goodbye")])
def test_max_wait_and_closed_callers_are_asked(said, answer: str, last: str) -> None:
    for reason in ("max_wait", "closed"):
        flow = CallbackOfferFlow()
        first = flow.step(BeginOffer(reason, "cmn"))
        [ask] = [a for a in first if isinstance(a, Collect)]
        assert (ask.prompt, ask.grammar, ask.vars) == ("callback_offer", "yesno",
                                                       {"reason": reason})
        actions = flow.step(said)
        assert answer_of(actions) == answer and prompts(actions) == [last]


def test_junk_keys_and_silence_are_ignored_then_the_offer_ends_unanswered() -> None:
    flow = CallbackOfferFlow()
    flow.step(BeginOffer("max_wait", "en"))
    again = flow.step(Keys("7"))  # junk: asked again, nothing decided
    assert answer_of(again) is None
    assert [a.step for a in again if isinstance(a, Log)] == [NotUnderstood("callback_offer", 1)]
    assert prompts(again) == ["callback_offer_short"]
    silent = flow.step(NoInput())
    assert prompts(silent) == ["callback_offer_keys"]
    assert [a.step for a in silent if isinstance(a, Log)] == [NothingHeard("callback_offer", 2)]
    assert flow.asks == MAX_ASKS
    last = flow.step(Keys("*"))
    assert answer_of(last) == "none" and prompts(last) == ["goodbye"]
    assert [a.step for a in last if isinstance(a, Log)] == [NotUnderstood("callback_offer", 3)]
    # A yes after junk still counts while the offer is open.
    flow = CallbackOfferFlow()
    flow.step(BeginOffer("closed", "en"))
    flow.step(NoInput())
    assert answer_of(flow.step(Keys("1"))) == "yes"


@pytest.mark.parametrize(("reason", "answer", "said"), [
    ("chosen", "requeue", ["callback_not_possible"]),
    ("max_wait", "withheld", ["callback_not_possible", "goodbye"]),
    ("closed", "withheld", ["callback_not_possible", "goodbye"])])
def test_a_withheld_number_is_told_once(reason: str, answer: str, said: list[str]) -> None:
    flow = CallbackOfferFlow()
    actions = flow.step(BeginOffer(reason, "en", number_problem="withheld"))
    assert prompts(actions) == said and answer_of(actions) == answer
    assert [a.step for a in actions if isinstance(a, Log)] == [
        CallbackNotPossible("withheld", told=True)]


# -- arrival order --------------------------------------------------------------------------
def test_a_callback_joins_after_earlier_arrivals_and_before_later_ones() -> None:
    waiting = [T0, T0 + timedelta(seconds=5), T0 + timedelta(seconds=20)]
    assert arrival_position(waiting, T0 + timedelta(seconds=10)) == 3
    assert arrival_position(waiting, T0 - timedelta(seconds=1)) == 1  # first of all
    assert arrival_position(waiting, T0 + timedelta(minutes=5)) == 4  # after everyone
    assert arrival_position([], T0) == 1
    assert arrival_position(waiting, T0 + timedelta(seconds=5)) == 3  # a tie stays behind


# -- which calls are called back --------------------------------------------------------------
def test_abandoned_calls_are_called_back_after_the_minimum_wait_or_our_failure() -> None:
    assert abandon_reason(_Call(), 12.0, 10.0) == "abandoned"
    assert abandon_reason(_Call(), 9.9, 10.0) is None
    assert abandon_reason(_Call(overload=True), 1.0, 10.0) == "overload"
    assert abandon_reason(_Call(rang_unanswered=True), 1.0, 10.0) == "no_answer"


def test_the_offer_answer_decides_the_request() -> None:
    assert offer_reason(CallbackOffered("chosen", "yes")) == "chosen"
    assert offer_reason(CallbackOffered("max_wait", "yes")) == "chosen"
    assert offer_reason(CallbackOffered("closed", "yes")) == "closed"
    assert offer_reason(CallbackOffered("closed", "unheard")) == "closed"
    assert offer_reason(CallbackOffered("max_wait", "none")) == "abandoned"
    for answer in ("no", "withheld", "requeue"):
        assert offer_reason(CallbackOffered("max_wait", answer)) is None
    assert offer_reason(CallbackOffered("closed", "none")) is None


@pytest.mark.parametrize(("number", "problem"), [
    ("13800138000", None), ("+8613800138000", None), ("12345", None),
    (None, "withheld"), ("Anonymous", "withheld"), ("unknown", "withheld"),
    ("1234", "malformed"), ("138 0013 8000", "malformed"), ("2001;x", "malformed"),
    ("1" * 16, "malformed")])
def test_numbers_that_cannot_be_called_back(number: str | None, problem: str | None) -> None:
    assert number_problem(number) == problem


# -- the steps ---------------------------------------------------------------------------------
STEPS = [CallbackRequested(3, "abandoned"), CallbackRequested(3, "abandoned", merged=True),
         CallbackNotPossible("withheld", told=True), CallbackClosedByCall(3),
         CallbackOffered("max_wait", "yes"), CallbackDialling(3, 2, "chosen", "agent_first", 4),
         CallbackOutcome(3, "wrong_number", "agent:agent1")]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.kind)
def test_callback_steps_are_stored_read_back_and_shown(step) -> None:
    assert step_from_row(step.kind, step.detail()) == step
    assert step_from_json(step.to_json()) == step
    assert transcript_text(step)


def test_a_callback_waits_in_the_queue_no_longer_than_the_calling_hours() -> None:
    hours = CallingHours.parse("08:00-21:00", "Asia/Shanghai")
    assert seconds_left(hours, datetime(2026, 12, 6, 12, 30, tzinfo=UTC)) == 30 * 60  # 20:30
    assert seconds_left(hours, datetime(2026, 12, 6, 13, 5, tzinfo=UTC)) == 0  # 21:05
    assert seconds_left(CallingHours.parse("00:00-24:00", "UTC"), T0) is None
    assert seconds_left(None, T0) is None


class _Item(dict):
    """An AMI event or list item: headers, and the event's name."""

    def __init__(self, name: str, **headers: str) -> None:
        super().__init__(headers)
        self.name = name

    def chan_variables(self) -> dict[str, str]:
        return {}


class _QueueAmi:
    def __init__(self, entries: list[_Item]) -> None:
        self.entries = entries
        self.handlers: dict[str, object] = {}

    async def action(self, name: str, *, timeout: float = 5.0, **fields: object) -> object:
        raise AssertionError(f"no action expected, got {name}")

    async def action_list(self, name: str, *, timeout: float = 10.0,
                          **fields: object) -> list[_Item]:
        return self.entries

    def subscribe(self, pattern: str, handler: object) -> object:
        self.handlers[pattern] = handler
        return lambda: None


async def test_a_caller_back_from_the_offer_keeps_the_place_of_their_first_arrival() -> None:
    later = _Item("QueueEntry", Queue="hotline", Position="1", Channel="PJSIP/b-2", Wait="3")
    ami = _QueueAmi([later])
    dialer = AmiCallbackDialer(ami, CallbackSettings(), hotline_number="12345")
    first = datetime.now(UTC) - timedelta(seconds=30)  # they joined before "later" (3 s ago)
    assert await dialer.return_position("hotline", "PJSIP/a-1", first) == 1
    # Back in the queue, they stand for their first arrival: a callback of an arrival
    # between theirs and the later caller's joins between them.
    await ami.handlers["QueueCallerJoin"](_Item("QueueCallerJoin", Channel="PJSIP/a-1"))
    ami.entries = [_Item("QueueEntry", Queue="hotline", Position="1", Channel="PJSIP/a-1",
                         Wait="0"), later]
    assert await dialer.position("hotline", first + timedelta(seconds=1)) == 2
    dialer.close()


async def test_an_assigned_callback_waits_its_turn_for_its_agent_unless_withdrawn() -> None:
    agent, withdrawn = asyncio.Lock(), asyncio.Event()
    assert await _acquire(agent, withdrawn, 1.0)  # free: theirs at once
    assert not await _acquire(agent, withdrawn, 0.05)  # another of theirs is up: waits, bounded
    waiting = asyncio.ensure_future(_acquire(agent, withdrawn, 30.0))
    withdrawn.set()  # reassigned meanwhile: it stops waiting at once
    assert await asyncio.wait_for(waiting, 1.0) is False
    agent.release()
    withdrawn.clear()
    assert await _acquire(agent, withdrawn, 1.0) and agent.locked()
