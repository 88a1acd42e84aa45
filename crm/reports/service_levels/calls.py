"""What became of one call, from its consultation and typed steps (docs/service-levels.md,
"Each call is one of"), and the rows the figures are counted from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, Literal

from crm.telephony.steps import (
    AgentCompleted,
    AgentConnected,
    AgentNoAnswer,
    AgentRung,
    IntentChosen,
    QueueAbandoned,
    QueueJoined,
    RouteChosen,
    StatusTold,
    Step,
)

ABANDONED_OUTCOME = "abandoned"
SELF_SERVICE_INTENTS = frozenset({"service_info"})

Disposition = Literal["answered", "abandoned", "left_queue", "self_service", "ivr_hangup",
                      "in_progress"]


# -- rows -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CallRow:
    """A consultation as the figures read it, with its steps in order."""

    id: int
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    steps: tuple[tuple[datetime, Step], ...] = ()


@dataclass(frozen=True)
class SurveyRow:
    started_at: datetime
    score: int


@dataclass(frozen=True)
class CallbackRow:
    created_at: datetime
    status: str


@dataclass(frozen=True)
class Rows:
    calls: tuple[CallRow, ...]
    surveys: tuple[SurveyRow, ...]
    callbacks: tuple[CallbackRow, ...] | None
    """None: this database has no callback_requests table yet."""


# -- one call -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CallFacts:
    started_at: datetime
    disposition: Disposition
    queued: bool
    """Reached the agent queue (asked for a person, or was sent there)."""
    wait_s: Fraction | None = None
    """Queue join -> agent answer (answered) or -> hang-up (abandoned)."""
    handle_s: Fraction | None = None
    """Agent answer -> the agent's call ended (answered calls whose conversation is over)."""


def _seconds(delta: timedelta) -> Fraction:
    """Whole milliseconds: the precision the figures keep."""
    return Fraction(round(delta.total_seconds() * 1000), 1000)


def _first(steps: Sequence[tuple[datetime, Step]], kind: type[Any],
           after: datetime | None = None) -> tuple[datetime, Any] | None:
    return next(((at, s) for at, s in steps
                 if isinstance(s, kind) and (after is None or at >= after)), None)


def _self_served(steps: Sequence[tuple[datetime, Step]]) -> bool:
    """The IVR served the caller: a case's status read out, service information asked for,
    or the caller ended the call from the menu (route ``end``)."""
    return any(isinstance(s, StatusTold)
               or (isinstance(s, IntentChosen) and s.intent in SELF_SERVICE_INTENTS)
               or (isinstance(s, RouteChosen) and s.route == "end") for _, s in steps)


def classify(call: CallRow) -> CallFacts:
    """What became of one call (see docs/service-levels.md, "Each call is one of")."""
    steps = call.steps
    joined = _first(steps, QueueJoined)
    answered = _first(steps, AgentConnected)
    abandoned = _first(steps, QueueAbandoned)
    queued = any(isinstance(s, QueueJoined | AgentRung | AgentNoAnswer | AgentConnected
                            | QueueAbandoned) for _, s in steps)
    if answered is not None:
        at, step = answered
        wait = (_seconds(at - joined[0]) if joined is not None and joined[0] <= at
                else Fraction(step.hold_time_s) if step.hold_time_s is not None else None)
        completed = _first(steps, AgentCompleted, after=at)
        handle = None
        if completed is not None:
            handle = _seconds(completed[0] - at)
        return CallFacts(call.started_at, "answered", True, wait, handle)
    if abandoned is not None or call.outcome == ABANDONED_OUTCOME:
        wait = None
        if abandoned is not None:
            at, step = abandoned
            wait = (_seconds(at - joined[0]) if joined is not None and joined[0] <= at
                    else Fraction(step.hold_time_s) if step.hold_time_s is not None else None)
        return CallFacts(call.started_at, "abandoned", True, wait)
    if call.ended_at is None:
        return CallFacts(call.started_at, "in_progress", queued)
    if queued:
        return CallFacts(call.started_at, "left_queue", True)
    if _self_served(steps):
        return CallFacts(call.started_at, "self_service", False)
    return CallFacts(call.started_at, "ivr_hangup", False)

