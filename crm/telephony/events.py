"""Call events and the small publish/subscribe interface the CRM receives them through.

The IVR (and anything else that watches Asterisk) publishes; consultation logging, screen pops
and wallboards subscribe. In-process by default; a networked bus can implement the same
``publish``/``subscribe`` pair.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from crm.telephony.call_context import call_context
from crm.telephony.steps import SECRET_INPUT as SECRET_INPUT
from crm.telephony.steps import (
    AgentCompleted,
    AgentConnected,
    AgentNoAnswer,
    AgentRung,
    QueueAbandoned,
    QueueJoined,
    Step,
)
from crm.telephony.steps import redact_secret_inputs as redact_secret_inputs

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    """When an event happened: now, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class CallStarted:
    call_id: str
    caller_number: str | None
    caller_name: str | None
    channel: str | None = None
    at: datetime = field(default_factory=utcnow)
    node: str | None = None
    """The media node the call is on (its Asterisk's systemname); None on one box."""


@dataclass(frozen=True)
class CallStep:
    """One step of the call (crm.telephony.steps): something the IVR played, heard or decided, or
    the call's recording."""

    call_id: str
    step: Step
    at: datetime = field(default_factory=utcnow)
    node: str | None = None
    """The Asterisk node the step happened on, as its publisher knows it: for the IVR's
    steps the media node the call is on (the IVR worker learns it from the call's
    CallStarted), for a tracker's steps its own node; None on one box or when not known."""

    @property
    def kind(self) -> str:
        """The step's kind as the consultation stores it (prompt, keys, told, ...)."""
        return self.step.kind

    @property
    def detail(self) -> dict[str, Any]:
        """The step's fields as the consultation stores them."""
        return self.step.detail()


@dataclass(frozen=True)
class CallEnded:
    call_id: str
    route: str | None
    cause: str | None
    """The Q.850 cause, number and text ("16 Normal Clearing"), or "resynchronised"."""
    at: datetime = field(default_factory=utcnow)
    party: str | None = None
    """Who hung up: caller, agent, ivr or system (HANGUP_PARTIES); None when not known."""
    node: str | None = None
    """The media node the call was on (the one whose tracker ended it); None on one box."""


HANGUP_PARTIES = ("caller", "agent", "ivr", "system")


# -- queue and agent events (published by the queue tracker from AMI queue events) ------------
@dataclass(frozen=True)
class CallerQueued:
    """The caller joined an agent queue (AMI QueueCallerJoin)."""

    call_id: str
    queue: str
    position: int | None = None
    caller_number: str | None = None
    caller_name: str | None = None
    channel: str | None = None
    at: datetime = field(default_factory=utcnow)
    node: str | None = None
    """The Asterisk node whose queue the event happened in (AMI's SystemName); None on one
    box."""


@dataclass(frozen=True)
class AgentRinging:
    """The queue rings one agent's phone for this call (AMI AgentCalled). With a ring-all
    queue every free agent gets one of these for the same call."""

    call_id: str
    queue: str
    interface: str
    """The queue member, e.g. PJSIP/2001."""
    extension: str | None
    """The agent's desk phone, from the interface (2001)."""
    member_name: str | None = None
    caller_number: str | None = None
    caller_name: str | None = None
    channel: str | None = None
    """The caller's channel (the one a blind transfer redirects)."""
    agent_channel: str | None = None
    at: datetime = field(default_factory=utcnow)
    node: str | None = None
    """The Asterisk node whose queue the event happened in (AMI's SystemName); None on one
    box."""


@dataclass(frozen=True)
class AgentRingStopped:
    """An agent's phone stopped ringing without being answered (AMI AgentRingNoAnswer)."""

    call_id: str
    queue: str
    interface: str
    extension: str | None
    ring_time_s: int | None = None
    at: datetime = field(default_factory=utcnow)
    node: str | None = None
    """The Asterisk node whose queue the event happened in (AMI's SystemName); None on one
    box."""


@dataclass(frozen=True)
class AgentAnswered:
    """One agent answered and is connected to the caller (AMI AgentConnect); every other
    agent rung for this call stops ringing."""

    call_id: str
    queue: str
    interface: str
    extension: str | None
    member_name: str | None = None
    caller_number: str | None = None
    caller_name: str | None = None
    channel: str | None = None
    agent_channel: str | None = None
    hold_time_s: int | None = None
    ring_time_s: int | None = None
    resynchronised: bool = False
    """Found connected after an AMI login (CoreShowChannels), not seen as AgentConnect:
    the answer may have been announced before, or happened while AMI was down."""
    at: datetime = field(default_factory=utcnow)
    node: str | None = None
    """The Asterisk node whose queue the event happened in (AMI's SystemName); None on one
    box."""


@dataclass(frozen=True)
class AgentCallEnded:
    """The agent's conversation with the caller ended (AMI AgentComplete)."""

    call_id: str
    queue: str
    interface: str
    extension: str | None
    talk_time_s: int | None = None
    reason: str | None = None
    """Who hung up: caller, agent or transfer."""
    at: datetime = field(default_factory=utcnow)
    node: str | None = None
    """The Asterisk node whose queue the event happened in (AMI's SystemName); None on one
    box."""


@dataclass(frozen=True)
class CallerAbandoned:
    """The caller hung up while waiting in the queue (AMI QueueCallerAbandon)."""

    call_id: str
    queue: str
    position: int | None = None
    original_position: int | None = None
    hold_time_s: int | None = None
    at: datetime = field(default_factory=utcnow)
    node: str | None = None
    """The Asterisk node whose queue the event happened in (AMI's SystemName); None on one
    box."""


QueueCallEvent = (CallerQueued | AgentRinging | AgentRingStopped | AgentAnswered
                  | AgentCallEnded | CallerAbandoned)
QUEUE_CALL_EVENTS = (CallerQueued, AgentRinging, AgentRingStopped, AgentAnswered,
                     AgentCallEnded, CallerAbandoned)


def queue_step(event: QueueCallEvent) -> Step:
    """The consultation step a queue event is recorded as."""
    if isinstance(event, CallerQueued):
        return QueueJoined(event.queue, event.position)
    if isinstance(event, AgentRinging):
        return AgentRung(event.queue, event.extension, event.interface)
    if isinstance(event, AgentRingStopped):
        return AgentNoAnswer(event.queue, event.extension, event.ring_time_s)
    if isinstance(event, AgentAnswered):
        return AgentConnected(event.queue, event.extension, event.interface,
                              event.hold_time_s, event.resynchronised)
    if isinstance(event, AgentCallEnded):
        return AgentCompleted(event.queue, event.extension, event.talk_time_s, event.reason)
    return QueueAbandoned(event.queue, event.position, event.hold_time_s)


@dataclass(frozen=True)
class AgentStatusChanged:
    """A queue member's state (AMI QueueMemberStatus/Added/Removed/Pause, or QueueStatus after
    a reconnect). Not about one call, so ``call_id`` is empty; consultation logging ignores it.

    ``status`` is what the desk shows: available, ringing, on_call, paused, unavailable (the
    phone is not registered), unreachable (registered, but it stopped answering its SIP
    OPTIONS probes: crashed or unplugged) or logged_out (not a member of the queue)."""

    interface: str
    extension: str | None
    queue: str
    status: str
    paused: bool = False
    member_name: str | None = None
    call_id: str = ""
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class WaitingCaller:
    """A caller waiting in a queue, as QueueStatus lists them (AMI QueueEntry). QueueEntry
    carries no channel variables, so the caller is known by channel, not by call id."""

    channel: str
    position: int | None = None
    wait_s: int | None = None
    caller_number: str | None = None
    caller_name: str | None = None


@dataclass(frozen=True)
class QueueSnapshot:
    """The whole of one queue as Asterisk reports it (QueueStatus), published after every AMI
    (re)login once the members' AgentStatusChanged events are out. Whoever keeps live queue
    state replaces it with this instead of patching it, so events lost while disconnected
    leave no drift. Not about one call: ``call_id`` is empty."""

    queue: str
    members: tuple[AgentStatusChanged, ...] = ()
    waiting: tuple[WaitingCaller, ...] = ()
    call_id: str = ""
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class IvrLegAnnounced:
    """A survey leg (``kind`` survey: HotlineSurveyStart) or a callback offer (``kind`` offer:
    HotlineCallbackOffer) the dialplan announced before its AudioSocket connects with
    ``leg_id``: the IVR workers of a cluster learn it from the bus. It belongs to no
    consultation of its own (``call_id`` is empty, so the recorder passes it by); the call
    it serves is ``for_call``."""

    leg_id: str
    kind: str
    for_call: str | None
    channel: str | None
    caller_number: str | None
    detail: str | None = None
    """survey: after_call or return_visit; offer: the reason (chosen, closed, max_wait)."""
    member_interface: str | None = None
    return_visit_id: int | None = None
    call_id: str = ""
    at: datetime = field(default_factory=utcnow)
    node: str | None = None
    """The media node the leg is on (its Asterisk's systemname); None on one box."""


IvrCallEvent = CallStarted | CallStep | CallEnded
CallEvent = IvrCallEvent | QueueCallEvent
"""Everything that happens to one call; each has the call's ``call_id``."""
BusEvent = CallEvent | AgentStatusChanged | QueueSnapshot | IvrLegAnnounced
Handler = Callable[[BusEvent], Awaitable[None]]


class EventBus(Protocol):
    """What publishers and subscribers of call events use: the in-process
    :class:`CallEventBus`, or a networked bus (hotline/bus/: Redis Streams) when several
    processes serve one hotline. ``publish`` hands an event over (the in-process bus runs the
    handlers before it returns; a networked bus may deliver later, to every process);
    ``subscribe`` adds a handler, awaited for each event in publication order, and returns
    the function that removes it. A failing handler never stops the others."""

    def subscribe(self, handler: Handler) -> Callable[[], None]: ...

    async def publish(self, event: BusEvent) -> None: ...


class CallEventBus:
    """In-process bus: handlers are awaited in subscription order; one failing never stops
    the others."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler)

    async def publish(self, event: BusEvent) -> None:
        with call_context(event.call_id):  # the subscribers' log lines name the call
            await self._deliver(event)

    async def _deliver(self, event: BusEvent) -> None:
        for handler in list(self._handlers):
            try:
                await handler(event)
            except Exception:
                log.exception("call %s: subscriber %r failed on %s",
                              event.call_id or "-", handler, type(event).__name__)
