"""The desk hub's memory of calls in progress: complete only when seen from the start, in
arrival order, bounded, and forgotten a grace period after the call ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm.live.calls import LiveCalls
from crm.telephony.events import (
    AgentAnswered,
    AgentRinging,
    AgentStatusChanged,
    CallEnded,
    CallerQueued,
    CallStarted,
    CallStep,
    QueueSnapshot,
)
from crm.telephony.steps import (
    AgentConnected,
    AgentRung,
    KeysEntered,
    QueueJoined,
    RouteChosen,
    SurveyStarted,
)

T = datetime(2026, 11, 22, 9, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_call_seen_from_its_start_is_complete_with_its_steps_in_order() -> None:
    calls = LiveCalls()
    calls.record(CallStarted("c1", "13800138000", "张三", "PJSIP/gw-1", at=T))
    calls.record(CallStep("c1", KeysEntered("2"), at=T + timedelta(seconds=1)))
    calls.record(CallStep("c1", RouteChosen("agent", "asked"), at=T + timedelta(seconds=2)))
    calls.record(CallerQueued("c1", "hotline", 1, at=T + timedelta(seconds=3)))
    calls.record(AgentRinging("c1", "hotline", "PJSIP/2001", "2001", at=T + timedelta(seconds=4)))
    calls.record(AgentStatusChanged("PJSIP/2001", "2001", "hotline", "ringing"))  # no call
    calls.record(QueueSnapshot("hotline"))
    so_far = calls.get("c1")
    assert so_far is not None and so_far.complete
    assert (so_far.caller_number, so_far.caller_name) == ("13800138000", "张三")
    assert [e.step for e in so_far.steps] == [
        KeysEntered("2"), RouteChosen("agent", "asked"), QueueJoined("hotline", 1),
        AgentRung("hotline", "2001", "PJSIP/2001")]
    assert [e.at for e in so_far.steps] == [T + timedelta(seconds=s) for s in (1, 2, 3, 4)]
    assert len(calls) == 1 and calls.get("other") is None


def test_a_call_whose_start_came_after_its_steps_is_not_complete() -> None:
    """After an AMI resynchronisation (or a restart) the hub has not seen the whole call."""
    calls = LiveCalls()
    calls.record(CallStep("c1", KeysEntered("1")))
    calls.record(CallStarted("c1", "13800138000", "张三"))
    so_far = calls.get("c1")
    assert so_far is not None and not so_far.complete
    assert so_far.caller_name == "张三" and len(so_far.steps) == 1
    calls.record(AgentAnswered("c2", "hotline", "PJSIP/2001", "2001", resynchronised=True))
    assert not calls.get("c2").complete  # type: ignore[union-attr]


def test_an_answer_re_announced_after_an_ami_login_is_not_a_second_step() -> None:
    calls = LiveCalls()
    calls.record(CallStarted("c1", None, None))
    calls.record(AgentAnswered("c1", "hotline", "PJSIP/2001", "2001", hold_time_s=3))
    calls.record(AgentAnswered("c1", "hotline", "PJSIP/2001", "2001", resynchronised=True))
    steps = calls.get("c1").steps  # type: ignore[union-attr]
    assert [e.step for e in steps] == [AgentConnected("hotline", "2001", "PJSIP/2001", 3)]


def test_a_call_is_forgotten_a_grace_period_after_it_ended() -> None:
    clock = Clock()
    calls = LiveCalls(grace=60.0, clock=clock)
    calls.record(CallStarted("c1", None, None))
    calls.record(CallEnded("c1", "agent", "16"))
    clock.now += 59.0
    calls.record(CallStep("c1", SurveyStarted("after_call")))  # the survey's steps still count
    so_far = calls.get("c1")
    assert so_far is not None and so_far.complete and len(so_far.steps) == 1
    calls.record(CallEnded("c1", "agent", "16"))  # a second end does not extend the grace
    clock.now += 1.0
    assert calls.get("c1") is None and len(calls) == 0


def test_memory_is_bounded_per_call_and_in_calls() -> None:
    calls = LiveCalls(max_calls=3, max_steps=5)
    calls.record(CallStarted("long", None, None))
    for n in range(8):
        calls.record(CallStep("long", KeysEntered(str(n))))
    long = calls.get("long")
    assert long is not None and not long.complete  # the database has the rest
    assert [e.step for e in long.steps] == [KeysEntered(str(n)) for n in range(5)]
    for call_id in ("a", "b"):
        calls.record(CallStarted(call_id, None, None))
    calls.record(CallStep("long", KeysEntered("9")))  # active again: the oldest is now "a"
    calls.record(CallStarted("c", None, None))
    assert len(calls) == 3 and calls.get("a") is None
    assert all(calls.get(c) is not None for c in ("long", "b", "c"))
