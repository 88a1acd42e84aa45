"""Closing the consultations of calls that ended while the hotline service was not running,
with how they really ended as Asterisk recorded it (the telephone side reads the record:
``ivr.asterisk.call_records``), instead of the time the service came back.

Each such consultation gets its real end time, who hung up, the Q.850 cause and route, the
queue steps it missed (joined the queue; an agent answered, or the caller gave up waiting)
and a ``reconciled`` step (:class:`crm.telephony.steps.CallReconciled`) that says so, so the
console and the API show which ends were reconciled and the service-level figures count
real times.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from crm.consultations.recorder import apply_event
from crm.storage.db import SessionFactory
from crm.storage.models import Consultation, ConsultationStep
from crm.telephony.events import (
    AgentAnswered,
    AgentCallEnded,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallEvent,
    utcnow,
)
from crm.telephony.steps import (
    AgentConnected,
    CallReconciled,
    QueueAbandoned,
    QueueJoined,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedEnd:
    """How one call ended, as Asterisk's own record tells it."""

    call_id: str
    ended_at: datetime
    party: str
    """caller, agent, ivr or system (crm.telephony.events.HANGUP_PARTIES)."""
    route: str | None
    cause: str | None
    """"16 Normal Clearing"."""
    queued_at: datetime | None = None
    queue: str | None = None
    answered_at: datetime | None = None
    """When an agent's phone answered the call (None: no agent answered)."""
    agent_interface: str | None = None
    """The agent's phone, e.g. PJSIP/2001."""
    agent_ended_at: datetime | None = None
    """When the agent's leg hung up (the caller may have stayed for the survey)."""
    source: str = "asterisk_cel"

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


def _extension(interface: str | None) -> str | None:
    return interface.split("/", 1)[1] if interface and "/" in interface else None


def reconciled_events(end: RecordedEnd, known_kinds: set[str]) -> list[CallEvent]:
    """The call events the service missed, in order, ending with the call's end; queue steps
    the consultation already has (``known_kinds``) are not repeated."""
    events: list[CallEvent] = []
    queue = end.queue or ""
    if end.queued_at is not None and QueueJoined.KIND not in known_kinds:
        events.append(CallerQueued(end.call_id, queue, at=end.queued_at))
    interface = end.agent_interface or ""
    if end.answered_at is not None:
        hold = (round((end.answered_at - end.queued_at).total_seconds())
                if end.queued_at is not None else None)
        if AgentConnected.KIND not in known_kinds:
            events.append(AgentAnswered(end.call_id, queue, interface, _extension(interface),
                                        hold_time_s=hold, at=end.answered_at))
        talk_end = end.agent_ended_at or end.ended_at
        events.append(AgentCallEnded(
            end.call_id, queue, interface, _extension(interface),
            talk_time_s=round((talk_end - end.answered_at).total_seconds()),
            reason=end.party if end.party in ("caller", "agent") else None, at=talk_end))
    elif end.queued_at is not None and end.party == "caller" \
            and QueueAbandoned.KIND not in known_kinds:
        events.append(CallerAbandoned(
            end.call_id, queue, hold_time_s=round((end.ended_at - end.queued_at).total_seconds()),
            at=end.ended_at))
    events.append(CallEnded(end.call_id, end.route, end.cause, at=end.ended_at, party=end.party))
    return events


async def close_reconciled(sessions: SessionFactory, ends: Iterable[RecordedEnd]) -> list[str]:
    """Close each still open consultation of ``ends`` with its recorded end; the call ids
    closed. A consultation that has an end already is left as it is."""
    closed: list[str] = []
    async with sessions() as session, session.begin():
        for end in ends:
            consultation = await session.scalar(
                select(Consultation).where(Consultation.call_id == end.call_id))
            if consultation is None or consultation.ended_at is not None:
                continue
            kinds = set((await session.scalars(select(ConsultationStep.kind).where(
                ConsultationStep.consultation_id == consultation.id))).all())
            known = {end.call_id: consultation}
            for event in reconciled_events(end, kinds):
                await apply_event(session, event, replayed=True, known=known)
            step = CallReconciled(end.source, end.ended_at.isoformat())
            session.add(ConsultationStep(consultation_id=consultation.id, at=utcnow(),
                                         kind=step.kind, detail=step.detail()))
            closed.append(end.call_id)
            log.info("call %s: ended while the service was down; closed from Asterisk's "
                     "record: ended %s by the %s, %s, %.1f s", end.call_id,
                     end.ended_at.isoformat(), end.party,
                     "answered by " + (end.agent_interface or "an agent") if end.answered
                     else "no agent answered", consultation.duration_s or 0.0)
    return closed
