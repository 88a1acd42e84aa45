"""Call events and the small publish/subscribe interface the CRM receives them through.

The IVR (and anything else that watches Asterisk) publishes; consultation logging, screen pops
and wallboards subscribe. In-process by default; a networked bus can implement the same
``publish``/``subscribe`` pair.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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


@dataclass(frozen=True)
class CallStep:
    """Something that happened in the IVR: kind is prompt, dtmf, transcript, intent, ..."""

    call_id: str
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)


SECRET_INPUT = "verification"
"""An input step (kind ``keys`` or ``speech``) whose detail is ``{"secret": SECRET_INPUT,
"length": n}`` stands for verification digits the caller entered: what they were is never
recorded, only that they were entered and how many there were."""
_INPUT_KINDS = frozenset({"keys", "speech"})
_BETWEEN_STEPS = frozenset({"prompt", "barge_in"})
_SECRET_PROMPT = "ask_phone_last4"
_SECRET_STATE = "verify_last4"


def _answers_secret_prompt(step: Mapping[str, Any]) -> bool:
    detail = step.get("detail") or {}
    kind = step.get("kind")
    if kind == "verified":
        return detail.get("by") == "last4"
    return kind in ("no_match", "no_input") and detail.get("state") == _SECRET_STATE


def _redacted(step: Mapping[str, Any]) -> dict[str, Any]:
    detail = step.get("detail") or {}
    entered = str(detail.get("keys") or detail.get("digits") or "")
    return {**step, "detail": {"secret": SECRET_INPUT,
                               "length": sum(c.isdigit() for c in entered)}}


def redact_secret_inputs(steps: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stored steps ({"kind", "detail", ...}) with any verification digits taken out.

    Steps recorded since the IVR redacts at the source carry none; this catches those stored
    before: an input step answering the ``ask_phone_last4`` prompt, or followed by the
    verification's outcome or a re-prompt in its state, is replaced by its redacted form."""
    out = [dict(s) for s in steps]
    asked = False
    for i, step in enumerate(out):
        kind = step.get("kind")
        detail = step.get("detail") or {}
        if kind == "prompt":
            asked = str(detail.get("prompt", "")).startswith(_SECRET_PROMPT)
            continue
        if kind not in _INPUT_KINDS:
            if kind not in _BETWEEN_STEPS:
                asked = False
            continue
        following = next((s for s in out[i + 1:] if s.get("kind") not in _BETWEEN_STEPS), None)
        if detail.get("secret") is None and (
                asked or (following is not None and _answers_secret_prompt(following))):
            out[i] = _redacted(step)
        asked = False
    return out


@dataclass(frozen=True)
class CallEnded:
    call_id: str
    route: str | None
    cause: str | None
    at: datetime = field(default_factory=utcnow)


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


@dataclass(frozen=True)
class AgentRingStopped:
    """An agent's phone stopped ringing without being answered (AMI AgentRingNoAnswer)."""

    call_id: str
    queue: str
    interface: str
    extension: str | None
    ring_time_s: int | None = None
    at: datetime = field(default_factory=utcnow)


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


@dataclass(frozen=True)
class CallerAbandoned:
    """The caller hung up while waiting in the queue (AMI QueueCallerAbandon)."""

    call_id: str
    queue: str
    position: int | None = None
    original_position: int | None = None
    hold_time_s: int | None = None
    at: datetime = field(default_factory=utcnow)


QueueCallEvent = (CallerQueued | AgentRinging | AgentRingStopped | AgentAnswered
                  | AgentCallEnded | CallerAbandoned)
QUEUE_CALL_EVENTS = (CallerQueued, AgentRinging, AgentRingStopped, AgentAnswered,
                     AgentCallEnded, CallerAbandoned)


@dataclass(frozen=True)
class AgentStatusChanged:
    """A queue member's state (AMI QueueMemberStatus/Added/Removed/Pause, or QueueStatus after
    a reconnect). Not about one call, so ``call_id`` is empty; consultation logging ignores it.

    ``status`` is what the desk shows: available, ringing, on_call, paused, unavailable (the
    phone is not registered) or logged_out (not a member of the queue)."""

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


IvrCallEvent = CallStarted | CallStep | CallEnded
CallEvent = IvrCallEvent | QueueCallEvent
"""Everything that happens to one call; each has the call's ``call_id``."""
BusEvent = CallEvent | AgentStatusChanged | QueueSnapshot
Handler = Callable[[BusEvent], Awaitable[None]]


class CallEventBus:
    """In-process bus: handlers are awaited in subscription order; one failing never stops
    the others."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler)

    async def publish(self, event: BusEvent) -> None:
        for handler in list(self._handlers):
            try:
                await handler(event)
            except Exception:
                log.exception("call %s: subscriber %r failed on %s",
                              event.call_id or "-", handler, type(event).__name__)
