"""The call figures, counted from the call-event bus as docs/service-levels.md decides each call.

:class:`CallFigures` subscribes to the bus and keeps, per call in progress, the steps the
service-level classification reads (``crm.reports.service_levels.calls.classify``); when the
call has ended (and ``settle_s`` later, so that queue events that overtook the hang-up are in)
it counts the call once as offered, by its disposition and the first queue it reached, and as
answered, answered in time or abandoned in that queue. Meanwhile it knows how many calls are
in the IVR and how many wait in each queue, and times the IVR's turns: a caller's input (keys
or speech) to the next prompt the IVR plays. Calls the hotline placed itself (callbacks) are
not offered, as in the figures.

Labels carry queue names, dispositions, input kinds and scores only: never a number, a name
or what a caller said.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from crm.reports.service_levels.calls import CallRow, classify
from crm.telephony.events import (
    QUEUE_CALL_EVENTS,
    AgentAnswered,
    BusEvent,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallStarted,
    CallStep,
    QueueCallEvent,
    queue_step,
)
from crm.telephony.steps import (
    CallbackDialling,
    KeysEntered,
    PromptPlayed,
    SpeechHeard,
    Step,
    SurveyEnded,
    SurveyStarted,
    VerificationDigits,
)

log = logging.getLogger(__name__)

NO_QUEUE = "none"
"""The queue label of a call that never reached a queue."""
SETTLE_S = 2.0
"""Seconds after its end that a call is counted: queue events published by the queue
tracker may arrive just after the call tracker's CallEnded."""
TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
WAIT_BUCKETS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
AFTER_CALL = "after_call"
MAX_CALLS = 10_000
"""Calls kept at most (in progress, or known only from events after a lost start); beyond it
the oldest is forgotten uncounted."""
DECIDED_KEPT = 2_000
"""Calls remembered after they were counted, so that their late steps (a survey's result
published after the hang-up) are not taken for a new call."""


@dataclass
class _Call:
    started_at: datetime | None = None
    steps: list[tuple[datetime, Step]] = field(default_factory=list)
    queue: str | None = None
    """The first queue the call reached."""
    waiting_in: str | None = None
    """The queue the caller waits in now."""
    in_ivr: bool = False
    placed: bool = False
    """A callback the hotline placed: not an offered call."""
    survey: str | None = None
    last_input: tuple[datetime, str] | None = None
    ended_at: datetime | None = None


class CallFigures:
    """A call-event bus subscriber (``bus.subscribe(figures.handle)``) that keeps the call
    metrics in ``registry``. ``answer_within_s`` is ``[service_levels] answer_within_s``."""

    def __init__(self, registry: CollectorRegistry, *, answer_within_s: float = 15.0,
                 settle_s: float = SETTLE_S) -> None:
        self.answer_within_s = answer_within_s
        self.settle_s = settle_s
        self._calls: dict[str, _Call] = {}
        self._decided: OrderedDict[str, str | None] = OrderedDict()
        """Counted calls, oldest first, with their survey kind."""
        self._settling: dict[str, asyncio.TimerHandle] = {}
        self._none_settling = asyncio.Event()
        r = registry
        self.offered = Counter(
            "hotline_calls_offered", "Calls answered by the hotline and decided, by disposition "
            "(docs/service-levels.md) and the first queue they reached", ["queue", "disposition"],
            registry=r)
        self.queued = Counter("hotline_calls_queued", "Offered calls that reached a queue",
                              ["queue"], registry=r)
        self.answered = Counter("hotline_calls_answered", "Offered calls an agent answered",
                                ["queue"], registry=r)
        self.answered_in_time = Counter(
            "hotline_calls_answered_in_time",
            "Offered calls an agent answered within [service_levels] answer_within_s",
            ["queue"], registry=r)
        self.abandoned = Counter("hotline_calls_abandoned",
                                 "Offered calls whose caller hung up waiting in the queue",
                                 ["queue"], registry=r)
        self.wait = Histogram("hotline_queue_wait_seconds",
                              "Queue join to the agent's answer or the caller's hang-up",
                              ["queue", "outcome"], buckets=WAIT_BUCKETS, registry=r)
        self.in_ivr = Gauge("hotline_calls_in_ivr", "Calls in the IVR now", registry=r)
        self.in_queue = Gauge("hotline_calls_in_queue", "Callers waiting in a queue now",
                              ["queue"], registry=r)
        self.turns = Histogram("hotline_ivr_turn_seconds",
                               "A caller's input (keys or speech) to the IVR's next prompt",
                               ["input"], buckets=TURN_BUCKETS, registry=r)
        self.ratings = Counter("hotline_survey_ratings",
                               "After-call survey ratings (1-5; 4 and 5 are satisfied)",
                               ["score"], registry=r)
        self.decided = Counter(
            "hotline_calls_decided", "Ended calls the figures have looked at (offered, placed "
            "by the hotline, or seen only in part)", registry=r)

    # -- the bus ---------------------------------------------------------------------------------
    async def handle(self, event: BusEvent) -> None:
        self.apply(event)

    def apply(self, event: BusEvent) -> None:
        """Take one bus event (synchronously: nothing here waits)."""
        if not event.call_id:
            return  # agent states, queue snapshots: about no one call
        call = self._calls.get(event.call_id)
        if call is None:
            if event.call_id in self._decided:
                self._after_decided(event)
                return
            if isinstance(event, CallEnded):
                return  # never seen before its end: nothing to decide
            call = self._calls[event.call_id] = _Call()
            if len(self._calls) > MAX_CALLS:
                oldest = next(iter(self._calls))
                log.warning("call figures: %d calls open, forgetting call %s uncounted",
                            len(self._calls), oldest)
                self._forget(oldest)
        if call.ended_at is not None:
            # Settling: what overtook the hang-up still counts, but nobody is waiting.
            if isinstance(event, CallStep):
                self._on_step(call, event)
            elif isinstance(event, QUEUE_CALL_EVENTS):
                call.steps.append((event.at, queue_step(event)))
                call.queue = call.queue or event.queue
            return
        if isinstance(event, CallStarted):
            call.started_at = event.at
            self._set_in_ivr(call, True)
        elif isinstance(event, CallStep):
            self._on_step(call, event)
        elif isinstance(event, QUEUE_CALL_EVENTS):
            call.steps.append((event.at, queue_step(event)))
            self._on_queue(call, event)
        elif isinstance(event, CallEnded):
            self._set_in_ivr(call, False)
            self._wait_in(call, None)
            call.ended_at = event.at
            self._settle(event.call_id)

    def _after_decided(self, event: BusEvent) -> None:
        """A counted call's late event: only an after-call survey's result still counts."""
        if isinstance(event, CallStep) and isinstance(event.step, SurveyEnded):
            self._count_rating(self._decided[event.call_id], event.step)

    def _count_rating(self, survey: str | None, step: SurveyEnded) -> None:
        if survey == AFTER_CALL and step.score is not None \
                and step.outcome in ("rated", "deferred"):
            self.ratings.labels(str(step.score)).inc()

    def _forget(self, call_id: str) -> None:
        call = self._calls.pop(call_id)
        self._set_in_ivr(call, False)
        self._wait_in(call, None)
        if (handle := self._settling.pop(call_id, None)) is not None:
            handle.cancel()

    def _on_step(self, call: _Call, event: CallStep) -> None:
        step = event.step
        call.steps.append((event.at, step))
        if isinstance(step, KeysEntered | SpeechHeard | VerificationDigits):
            call.last_input = (event.at, step.kind)
        elif isinstance(step, PromptPlayed):
            if call.last_input is not None:
                at, kind = call.last_input
                self.turns.labels(kind).observe(max(0.0, (event.at - at).total_seconds()))
            call.last_input = None
        elif isinstance(step, CallbackDialling):
            call.placed = True
        elif isinstance(step, SurveyStarted):
            call.survey = step.survey
        elif isinstance(step, SurveyEnded):
            self._count_rating(call.survey, step)

    def _on_queue(self, call: _Call, event: QueueCallEvent) -> None:
        queue = event.queue
        if isinstance(event, CallerQueued):
            call.queue = call.queue or queue
            call.last_input = None
            self._set_in_ivr(call, False)
            self._wait_in(call, queue)
        elif isinstance(event, AgentAnswered | CallerAbandoned):
            call.queue = call.queue or queue
            self._wait_in(call, None)

    def _set_in_ivr(self, call: _Call, inside: bool) -> None:
        if call.in_ivr != inside:
            call.in_ivr = inside
            self.in_ivr.inc() if inside else self.in_ivr.dec()

    def _wait_in(self, call: _Call, queue: str | None) -> None:
        if call.waiting_in == queue:
            return
        if call.waiting_in is not None:
            self.in_queue.labels(call.waiting_in).dec()
        if queue is not None:
            self.in_queue.labels(queue).inc()
        call.waiting_in = queue

    # -- deciding a call --------------------------------------------------------------------------
    def _settle(self, call_id: str) -> None:
        if self.settle_s <= 0:
            self._decide(call_id)
            return
        if call_id not in self._settling:
            self._settling[call_id] = asyncio.get_running_loop().call_later(
                self.settle_s, self._decide, call_id)

    async def settled(self) -> None:
        """Wait until every call that ended so far is counted."""
        while self._settling:
            self._none_settling.clear()
            await self._none_settling.wait()

    def _decide(self, call_id: str) -> None:
        self._settling.pop(call_id, None)
        if not self._settling:
            self._none_settling.set()
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        self._decided[call_id] = call.survey
        while len(self._decided) > DECIDED_KEPT:
            self._decided.popitem(last=False)
        self.decided.inc()
        if call.placed or call.started_at is None or call.ended_at is None:
            return  # placed by us, or never seen starting: in no period of the figures
        facts = classify(CallRow(0, call.started_at, call.ended_at, None,
                                 tuple(sorted(call.steps, key=lambda s: s[0]))))
        queue = call.queue or NO_QUEUE
        self.offered.labels(queue, facts.disposition).inc()
        if not facts.queued:
            return
        self.queued.labels(queue).inc()
        if facts.disposition == "answered":
            self.answered.labels(queue).inc()
            if facts.wait_s is not None and facts.wait_s <= self.answer_within_s:
                self.answered_in_time.labels(queue).inc()
        elif facts.disposition == "abandoned":
            self.abandoned.labels(queue).inc()
        if facts.wait_s is not None and facts.disposition in ("answered", "abandoned"):
            self.wait.labels(queue, facts.disposition).observe(float(facts.wait_s))

    def close(self) -> None:
        """Count the calls still settling now (at shutdown)."""
        for call_id, handle in list(self._settling.items()):
            handle.cancel()
            self._decide(call_id)

    @property
    def calls_in_progress(self) -> int:
        return len(self._calls)
