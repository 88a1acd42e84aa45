"""Consultation records: one per call, with every IVR step, written from call events.

On one box the recorder subscribes to the in-process bus. In a cluster every process that
runs it is a member of one consumer group of the Redis stream (hotline/roles/recorder_member.py):
each event reaches one member, at least once. Two rules make that safe:

- idempotent: an event that comes with the bus's event id is written at most once, whichever
  member gets it and however often (the id is claimed in the writing transaction,
  crm/consultations/recorded_events.py);
- order-independent: the events of one call may be written by two members, in either order
  (a reclaimed early event lands after a later one). Each event sets only its own fields,
  the duration is computed by whichever of start and end comes second, an abandoned call
  keeps that outcome whatever comes after, each step keeps its time (stored in the order
  written: after a takeover an early step may be stored after a later one), and a batch locks
  its calls' consultations (created if missing, in call-id order: no deadlock between
  members) so two members never write one call at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crm.consultations import recorded_events
from crm.consultations.recorded_events import insert_ignoring_duplicates
from crm.storage.db import SessionFactory
from crm.storage.journal import EventJournal, decode_event, encode_event
from crm.storage.models import Agent, Consultation, ConsultationStep, ResidentPhone, utcnow
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
from crm.telephony.steps import ROW_NODE, AgentConnected

log = logging.getLogger(__name__)

ROUTE_OUTCOMES = {"end": "ivr_completed", "agent": "to_agent", "fallback": "ivr_fallback",
                  "callback": "callback", "lost": "lost"}
"""``callback``: a call the hotline placed to call a missed caller back (crm.callbacks);
``lost``: its media node died under it (hotline.roles.node_loss)."""
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
        _set_duration(consultation)
    elif isinstance(event, CallStep):
        detail = event.detail if event.node is None else {**event.detail, ROW_NODE: event.node}
        await _add_step(session, ConsultationStep(consultation_id=consultation.id, at=event.at,
                                                  kind=event.kind, detail=detail),
                        replayed)
    elif isinstance(event, CallEnded):
        consultation.ended_at = event.at
        consultation.ivr_route = event.route or None
        consultation.hangup_cause = event.cause
        consultation.hangup_party = event.party
        if consultation.outcome != ABANDONED or event.route == "lost":
            # lost wins over the abandon of its queue leg, in whichever order they come
            consultation.outcome = outcome_for(event.route, event.cause)
        _set_duration(consultation)
    elif isinstance(event, QUEUE_CALL_EVENTS):
        await _apply_queue_event(session, consultation, event, replayed)


def _set_duration(consultation: Consultation) -> None:
    """Once both the start and the end are known, in whichever order they came."""
    if consultation.started_at is not None and consultation.ended_at is not None:
        consultation.duration_s = round(
            (consultation.ended_at - consultation.started_at).total_seconds(), 3)


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
    detail = step.detail() if event.node is None else {**step.detail(), ROW_NODE: event.node}
    await _add_step(session, ConsultationStep(consultation_id=consultation.id, at=event.at,
                                              kind=step.kind, detail=detail), replayed)
    if isinstance(event, CallerAbandoned) and consultation.outcome != "lost":
        consultation.outcome = ABANDONED  # a lost call's queue leg ending later stays lost
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


@dataclass(frozen=True, slots=True)
class KeyedEvent:
    """A call event as a member of the recorders' consumer group receives it."""

    event: CallEvent
    event_id: str
    """The publisher's id, the same in every copy: written at most once."""
    entry_id: str | None = None
    """Its stream entry, reported to ``on_written`` once written."""


Recordable = CallEvent | KeyedEvent
OnWritten = Callable[[list[str]], None]


def _encode(item: Recordable) -> dict[str, Any]:
    if isinstance(item, KeyedEvent):
        return {"event_id": item.event_id, "entry_id": item.entry_id,
                "keyed": encode_event(item.event)}
    return encode_event(item)


def _decode(data: dict[str, Any]) -> Recordable:
    if "keyed" in data:
        return KeyedEvent(decode_event(data["keyed"]), str(data["event_id"]),
                          data.get("entry_id"))
    return decode_event(data)  # type: ignore[no-any-return]


def recorder_journal(directory: Path, *, fsync: bool = False) -> EventJournal:
    """The recorder's journal: call events, with their bus ids when they came from a
    consumer group (a plain :class:`EventJournal` holds events without ids only)."""
    return EventJournal(directory, fsync=fsync, encode=_encode, decode=_decode)


def _unkeyed(item: Recordable) -> tuple[CallEvent, str | None, str | None]:
    if isinstance(item, KeyedEvent):
        return item.event, item.event_id, item.entry_id
    return item, None, None


class ConsultationRecorder:
    """Subscribes to call events and writes them behind (:mod:`crm.storage.write_behind`): in
    arrival order from one writer task, so a slow database never blocks the call and events of
    one call never overtake each other in this process; what has queued up while it was
    writing goes in one transaction (at most ``BATCH_MAX`` events), with each consultation
    loaded once. :meth:`handle_keyed` takes an event of a consumer group (see the module's
    docstring): written once per event id, in any order with the other members' writes."""

    def __init__(self, sessions: SessionFactory, *, retry_delay: float = 1.0,
                 journal: EventJournal | None = None,
                 on_written: OnWritten | None = None) -> None:
        """``on_written`` is told the stream entries of each written batch (after its
        commit)."""
        self._sessions = sessions
        self._on_written = on_written
        self._writes: WriteBehind[Recordable] = WriteBehind(
            "call events", self._write_batch, journal=journal, batch_max=BATCH_MAX,
            backoff=Backoff(first=retry_delay), describe=_describe, logger=log)
        self.duplicates = 0
        """Events skipped because their id was written already (a second delivery)."""
        self._pruned_at: datetime | None = None

    async def handle(self, event: BusEvent) -> None:
        if event.call_id:  # agent status changes concern no one call
            self._writes.put(event)

    def handle_keyed(self, event: BusEvent, event_id: str, entry_id: str | None = None) -> bool:
        """Journal a group member's event for writing (before this returns: the member may
        acknowledge it then); False when it concerns no one call (nothing to write)."""
        if not event.call_id:
            return False
        self._writes.put(KeyedEvent(event, event_id, entry_id))
        return True

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

    async def _write_batch(self, batch: Sequence[Queued[Recordable]]) -> None:
        items = [(_unkeyed(q.item), q.replayed) for q in batch]
        skipped = 0
        starts = {event.call_id: event for (event, _, _), _ in reversed(items)
                  if isinstance(event, CallStarted)}
        async with self._sessions() as session, session.begin():
            known = await _lock_calls(session, {event.call_id for (event, _, _), _ in items},
                                      starts)
            for (event, event_id, _entry), replayed in items:
                if event_id is not None and not await recorded_events.claim(session, event_id):
                    skipped += 1
                    log.info("call %s: %s (event %s) is written already; skipped",
                             event.call_id, type(event).__name__, event_id)
                    continue
                await apply_event(session, event, replayed=replayed, known=known)
            await self._prune(session)
        self.duplicates += skipped
        entries = [entry for (_, _, entry), _ in items if entry is not None]
        if entries and self._on_written is not None:
            self._on_written(entries)

    async def _prune(self, session: AsyncSession) -> None:
        now = utcnow()
        if self._pruned_at is None or now - self._pruned_at >= recorded_events.PRUNE_EVERY:
            self._pruned_at = now
            await recorded_events.prune(session, now)


async def _lock_calls(session: AsyncSession, call_ids: set[str],
                      starts: dict[str, CallStarted] | None = None) -> dict[str, Consultation]:
    """The batch's consultations, created where missing and locked (FOR UPDATE on
    PostgreSQL; SQLite has one writer anyway) in call-id order, so two members writing
    batches that share calls wait for each other instead of deadlocking or overwriting.
    One created here by a batch holding its call's start gets the start's fields at once:
    applying the start then changes nothing, and the row is not updated a moment after its
    insert (bench.cluster: 1 row update per call less, of 2)."""
    ordered = sorted(call_ids)
    if not ordered:
        return {}
    starts = starts or {}
    await session.execute(insert_ignoring_duplicates(session, Consultation),
                          [_new_consultation(call_id, starts.get(call_id))
                           for call_id in ordered])
    rows = await session.scalars(select(Consultation).where(Consultation.call_id.in_(ordered))
                                 .order_by(Consultation.call_id).with_for_update())
    return {c.call_id: c for c in rows}


def _new_consultation(call_id: str, start: CallStarted | None) -> dict[str, Any]:
    """The columns of a consultation inserted by a batch (the same keys for every row of the
    one multi-row insert)."""
    return {"call_id": call_id,
            "caller_number": start.caller_number if start else None,
            "caller_name": start.caller_name if start else None,
            "channel": start.channel if start else None,
            "started_at": start.at if start else None}


def _describe(item: Recordable) -> str:
    event = _unkeyed(item)[0]
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
