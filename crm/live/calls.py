"""The events of calls in progress, kept in memory by the desk hub, so a screen pop shows the
IVR's part of the call from the events the hub received instead of reading it back from the
database the consultation recorder writes to (and waiting for it).

Per call: the caller as CallStarted announced them, and its steps in arrival order -- the
IVR's steps and the queue events, as the consultation records them. A call's record is
*complete* when the first event of it was its CallStarted and nothing of it was dropped
since: it then holds everything the consultation will. It is not complete for calls already
under way when the service (re)started, for calls AMI announced only after their first steps
(after an AMI resynchronisation) or for a call that outgrew its bound; a reader then goes to
the database and adds what is here (see ``crm.live.screen_pop.build_screen_pop``).

Bounded: at most ``max_steps`` steps per call and ``max_calls`` calls (the least recently
active go first), and a call is dropped ``grace`` seconds after it ended, which leaves the
wrap-up's pops and a survey's last steps time to find it.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from crm.telephony.events import (
    QUEUE_CALL_EVENTS,
    AgentAnswered,
    BusEvent,
    CallEnded,
    CallStarted,
    CallStep,
    queue_step,
)
from crm.telephony.steps import AgentConnected

MAX_CALLS = 2000
MAX_STEPS = 500
"""An IVR call takes some tens of steps: its retries and failures are limited."""
ENDED_GRACE = 600.0
"""Seconds a call is kept after it ended."""


@dataclass(frozen=True)
class CallSoFar:
    """What the events have told of one call so far."""

    call_id: str
    caller_number: str | None
    caller_name: str | None
    steps: tuple[CallStep, ...]
    complete: bool
    """Every event of the call since its start is in ``steps``."""


@dataclass
class _Call:
    complete: bool
    caller_number: str | None = None
    caller_name: str | None = None
    steps: list[CallStep] = field(default_factory=list)
    ended: bool = False


class LiveCalls:
    def __init__(self, *, max_calls: int = MAX_CALLS, max_steps: int = MAX_STEPS,
                 grace: float = ENDED_GRACE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._calls: OrderedDict[str, _Call] = OrderedDict()
        self._ended: deque[tuple[float, str]] = deque()
        self._max_calls = max_calls
        self._max_steps = max_steps
        self._grace = grace
        self._clock = clock

    def __len__(self) -> int:
        return len(self._calls)

    def record(self, event: BusEvent) -> None:
        """Take one bus event, in the order the bus delivered them."""
        if not event.call_id:
            return  # agent states and queue snapshots concern no one call
        self._expire()
        call = self._calls.get(event.call_id)
        if call is None:
            call = self._calls[event.call_id] = _Call(complete=isinstance(event, CallStarted))
            while len(self._calls) > self._max_calls:
                self._calls.popitem(last=False)
        else:
            self._calls.move_to_end(event.call_id)
        if isinstance(event, CallStarted):
            call.caller_number, call.caller_name = event.caller_number, event.caller_name
        elif isinstance(event, CallStep):
            self._add(call, event)
        elif isinstance(event, QUEUE_CALL_EVENTS):
            if isinstance(event, AgentAnswered) and event.resynchronised and any(
                    isinstance(s.step, AgentConnected) for s in call.steps):
                return  # re-announced after an AMI login: the answer is here already
            self._add(call, CallStep(event.call_id, queue_step(event), at=event.at))
        elif isinstance(event, CallEnded) and not call.ended:
            call.ended = True
            self._ended.append((self._clock() + self._grace, event.call_id))

    def _add(self, call: _Call, step: CallStep) -> None:
        if len(call.steps) >= self._max_steps:
            call.complete = False  # the database has the rest
            return
        call.steps.append(step)

    def get(self, call_id: str) -> CallSoFar | None:
        self._expire()
        call = self._calls.get(call_id)
        if call is None:
            return None
        return CallSoFar(call_id, call.caller_number, call.caller_name, tuple(call.steps),
                         call.complete)

    def _expire(self) -> None:
        now = self._clock()
        while self._ended and self._ended[0][0] <= now:
            _, call_id = self._ended.popleft()
            self._calls.pop(call_id, None)
