"""Consultation records: one per call, with every IVR step, written from call events."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crm.storage.db import SessionFactory
from crm.storage.journal import EventJournal
from crm.storage.models import Agent, Consultation, ConsultationStep, ResidentPhone
from crm.storage.write_behind import BATCH_MAX, Backoff, Queued, WriteBehind
from crm.telephony.events import (
    QUEUE_CALL_EVENTS,
    AgentAnswered,
    BusEvent,
    CallEnded,
    CallerAbandoned,
    CallEvent,
    CallStarted,
    CallStep,
    QueueCallEvent,
    queue_step,
    redact_secret_inputs,
)
from crm.telephony.steps import AgentConnected

log = logging.getLogger(__name__)

ROUTE_OUTCOMES = {"end": "ivr_completed", "agent": "to_agent", "fallback": "ivr_fallback",
                  "callback": "callback"}
"""``callback``: a call the hotline placed to call a missed caller back (crm.callbacks)."""
ABANDONED = "abandoned"
"""Outcome of a call whose caller hung up while waiting in the queue."""


def outcome_for(route: str | None, cause: str | None) -> str:
    """How a call ended, from the route the IVR chose (empty when the caller hung up in it)."""
    if route in ROUTE_OUTCOMES:
        return ROUTE_OUTCOMES[route]
    return "caller_hung_up"


async def _get_or_create(session: AsyncSession, call_id: str,
                         known: dict[str, Consultation] | None = None) -> Consultation:
    """The call's consultation; ``known`` remembers those of this transaction, so a batch of
    events of one call selects (and autoflushes) once, not once per event."""
    found = known.get(call_id) if known is not None else None
    if found is None:
        found = await session.scalar(select(Consultation).where(Consultation.call_id == call_id))
    if found is None:
        found = Consultation(call_id=call_id)
        session.add(found)
        await session.flush()
    if known is not None:
        known[call_id] = found
    return found


async def _add_step(session: AsyncSession, step: ConsultationStep, replayed: bool) -> None:
    """A replayed event may have been written before the process stopped (the journal's
    acknowledgement was lost): its step is then already there, and is not added twice."""
    if replayed and await session.scalar(select(ConsultationStep.id).where(
            ConsultationStep.consultation_id == step.consultation_id,
            ConsultationStep.kind == step.kind, ConsultationStep.at == step.at)) is not None:
        return
    session.add(step)


async def apply_event(session: AsyncSession, event: CallEvent, *,
                      replayed: bool = False,
                      known: dict[str, Consultation] | None = None) -> None:
    """Write one call event into its consultation (creating it if it is the first we hear).
    ``replayed``: the event comes from the journal and may already be written; ``known``:
    consultations already loaded in this transaction, by call id."""
    consultation = await _get_or_create(session, event.call_id, known)
    if isinstance(event, CallStarted):
        consultation.caller_number = event.caller_number
        consultation.caller_name = event.caller_name
        consultation.channel = event.channel
        consultation.started_at = event.at
    elif isinstance(event, CallStep):
        await _add_step(session, ConsultationStep(consultation_id=consultation.id, at=event.at,
                                                  kind=event.kind, detail=event.detail),
                        replayed)
    elif isinstance(event, CallEnded):
        consultation.ended_at = event.at
        consultation.ivr_route = event.route or None
        consultation.hangup_cause = event.cause
        consultation.hangup_party = event.party
        if consultation.outcome != ABANDONED:
            consultation.outcome = outcome_for(event.route, event.cause)
        if consultation.started_at is not None:
            consultation.duration_s = round(
                (event.at - consultation.started_at).total_seconds(), 3)
    elif isinstance(event, QUEUE_CALL_EVENTS):
        await _apply_queue_event(session, consultation, event, replayed)


async def _answer_known(session: AsyncSession, consultation: Consultation,
                        event: AgentAnswered) -> bool:
    agent_id = event.extension and await session.scalar(
        select(Agent.id).where(Agent.extension == event.extension))
    if agent_id:
        return consultation.agent_id == agent_id
    return bool(await session.scalar(select(func.count()).select_from(ConsultationStep).where(
        ConsultationStep.consultation_id == consultation.id,
        ConsultationStep.kind == AgentConnected.KIND)))


async def _apply_queue_event(session: AsyncSession, consultation: Consultation,
                             event: QueueCallEvent, replayed: bool = False) -> None:
    """A queue event becomes a step; an answer names the agent (by desk phone) and the
    resident (by calling number, when known); an abandoned call keeps that outcome. An answer
    re-announced after an AMI login that the consultation already has is not a new step."""
    if isinstance(event, AgentAnswered) and event.resynchronised \
            and await _answer_known(session, consultation, event):
        return
    step = queue_step(event)
    await _add_step(session, ConsultationStep(consultation_id=consultation.id, at=event.at,
                                              kind=step.kind, detail=step.detail()), replayed)
    if isinstance(event, CallerAbandoned):
        consultation.outcome = ABANDONED
    elif isinstance(event, AgentAnswered):
        if event.extension:
            agent_id = await session.scalar(select(Agent.id).where(
                Agent.extension == event.extension))
            if agent_id is not None:
                consultation.agent_id = agent_id
        phone = consultation.caller_number or event.caller_number
        if consultation.resident_id is None and phone:
            consultation.resident_id = await session.scalar(
                select(ResidentPhone.resident_id).where(ResidentPhone.phone == phone))


class ConsultationRecorder:
    """Subscribes to call events and writes them behind (:mod:`crm.storage.write_behind`): in
    arrival order from one writer task, so a slow database never blocks the call and events of
    one call never overtake each other; what has queued up while it was writing goes in one
    transaction (at most ``BATCH_MAX`` events), with each consultation loaded once."""

    def __init__(self, sessions: SessionFactory, *, retry_delay: float = 1.0,
                 journal: EventJournal | None = None) -> None:
        self._sessions = sessions
        self._writes: WriteBehind[CallEvent] = WriteBehind(
            "call events", self._write_batch, journal=journal, batch_max=BATCH_MAX,
            backoff=Backoff(first=retry_delay), describe=_describe, logger=log)

    async def handle(self, event: BusEvent) -> None:
        if event.call_id:  # agent status changes concern no one call
            self._writes.put(event)

    @property
    def pending(self) -> int:
        """Events received and not written yet (waiting for the database, or in a batch)."""
        return self._writes.pending

    @property
    def written(self) -> int:
        return self._writes.written

    def start(self) -> None:
        """Start writing; events a previous run journaled but never wrote go first."""
        self._writes.start()

    def drain(self) -> Awaitable[None]:
        """Wait until every event received before this call is written (or given up by
        close), not for the ones that arrive meanwhile: a pop waiting for its call's IVR
        steps is not held up by a busy hotline's later events."""
        return self._writes.drain()

    async def close(self, timeout: float = 10.0) -> None:
        """Stop after writing what is queued (bounded); what is left stays journaled."""
        await self._writes.close(timeout)

    async def _write_batch(self, batch: Sequence[Queued[CallEvent]]) -> None:
        known: dict[str, Consultation] = {}
        async with self._sessions() as session, session.begin():
            for queued in batch:
                await apply_event(session, queued.item, replayed=queued.replayed, known=known)


def _describe(event: CallEvent) -> str:
    return f"call {event.call_id}: {type(event).__name__}"


@dataclass(frozen=True)
class OpenCall:
    """A call whose consultation has no end yet."""

    call_id: str
    channel: str | None
    caller_number: str | None
    caller_name: str | None
    started_at: datetime | None = None


async def open_calls(sessions: SessionFactory) -> list[OpenCall]:
    """Calls the records still show as live: after a restart of the service, those that
    ended while it was down must be closed by the resynchronisation with Asterisk."""
    query = (select(Consultation.call_id, Consultation.channel, Consultation.caller_number,
                    Consultation.caller_name, Consultation.started_at)
             .where(Consultation.ended_at.is_(None)))
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [OpenCall(*row) for row in rows]


@dataclass(frozen=True)
class CallRecord:
    """What the call events recorded of a consultation's call: where every view of a
    consultation (here, and crm.consultations.service's) starts."""

    id: int
    call_id: str
    caller_number: str | None
    caller_name: str | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    outcome: str | None
    ivr_route: str | None
    hangup_cause: str | None
    hangup_party: str | None


def call_record_fields(c: Consultation) -> dict[str, Any]:
    """The :class:`CallRecord` fields of a consultation, to build a view of it with."""
    return {"id": c.id, "call_id": c.call_id, "caller_number": c.caller_number,
            "caller_name": c.caller_name, "started_at": c.started_at, "ended_at": c.ended_at,
            "duration_s": c.duration_s, "outcome": c.outcome, "ivr_route": c.ivr_route,
            "hangup_cause": c.hangup_cause, "hangup_party": c.hangup_party}


def step_json(step: ConsultationStep) -> dict[str, Any]:
    return {"at": step.at.isoformat(), "kind": step.kind, "detail": step.detail}


@dataclass(frozen=True)
class ConsultationView(CallRecord):
    steps: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("started_at", "ended_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def shown_steps(c: Consultation) -> list[dict[str, Any]]:
    """A consultation's steps as JSON for any reader, verification digits stored before the
    IVR redacted them at the source taken out."""
    return redact_secret_inputs(step_json(s) for s in c.steps)


def _view(c: Consultation) -> ConsultationView:
    return ConsultationView(**call_record_fields(c), steps=shown_steps(c))


async def list_consultations(sessions: SessionFactory, *, limit: int = 50,
                             phone: str | None = None) -> list[ConsultationView]:
    """Newest first (by start, then by id for calls we only saw end)."""
    query = (select(Consultation).options(selectinload(Consultation.steps))
             .order_by(Consultation.started_at.desc().nulls_last(), Consultation.id.desc())
             .limit(limit))
    if phone:
        query = query.where(Consultation.caller_number == phone)
    async with sessions() as session:
        rows = (await session.scalars(query)).all()
    return [_view(c) for c in rows]
