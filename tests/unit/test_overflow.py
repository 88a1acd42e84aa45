"""Calls handed back at the IVR's limit get a step on their consultation."""

from __future__ import annotations

import uuid

from crm.telephony.events import CallEventBus, CallStep
from ivr.asterisk.call_tracker import ActiveCall, CallTracker, SurveyLeg
from ivr.overflow import OverflowRecorder
from tests.call_steps import recording_bus


class NoAmi:
    """The two registrations CallTracker makes; no AMI traffic is needed here."""

    def subscribe(self, pattern, handler):  # type: ignore[no-untyped-def]
        return lambda: None

    def on_ready(self, handler):  # type: ignore[no-untyped-def]
        return lambda: None


def tracked() -> tuple[CallTracker, CallEventBus, list[CallStep]]:
    bus, steps = recording_bus()
    return CallTracker(NoAmi(), bus), bus, steps  # type: ignore[arg-type]


async def test_a_call_handed_back_says_why_on_its_consultation() -> None:
    tracker, bus, steps = tracked()
    call_id = str(uuid.uuid4())
    tracker.active_calls[call_id] = ActiveCall(call_id, "PJSIP/x-1", "13800138000", "张三")
    await OverflowRecorder(tracker, bus, limit=80)(uuid.UUID(call_id))
    assert [(s.call_id, s.kind, s.detail) for s in steps] == [
        (call_id, "ivr_at_capacity", {"reason": "IVR at capacity", "max_calls": 80})]


async def test_a_survey_leg_handed_back_is_a_skipped_survey_of_its_call() -> None:
    tracker, bus, steps = tracked()
    leg_id = str(uuid.uuid4())
    tracker.survey_legs[leg_id] = SurveyLeg(leg_id, "after_call", "call-7", "PJSIP/x-2",
                                            "13800138000", "PJSIP/2001")
    await OverflowRecorder(tracker, bus, limit=2)(uuid.UUID(leg_id))
    assert [(s.call_id, s.kind, s.detail["reason"]) for s in steps] == [
        ("call-7", "survey_skipped", "IVR at capacity")]
    assert leg_id not in tracker.survey_legs


async def test_an_unannounced_id_publishes_nothing(caplog) -> None:  # type: ignore[no-untyped-def]
    tracker, bus, steps = tracked()
    leg_id = str(uuid.uuid4())
    tracker.survey_legs[leg_id] = SurveyLeg(leg_id, "return_visit", None, None, None, None, 4)
    await OverflowRecorder(tracker, bus, limit=1, announce_wait=0.05)(uuid.uuid4())
    await OverflowRecorder(tracker, bus, limit=1)(uuid.UUID(leg_id))  # a return visit
    assert steps == []
    assert "AMI never said which call" in caplog.text and "not offered" in caplog.text
