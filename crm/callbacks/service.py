"""Callback requests for missed callers: the rules, on the database.

One request in flight per number (``pending`` or ``dialling``; a partial unique index holds
it even between processes): a second missed call from the number merges into the open
request, which keeps its first place in the queue (``queued_at``). A request is dialled
(:func:`begin_attempt`), and each call's outcome recorded (:func:`finish_attempt` from the
telephone side, :func:`record_outcome` from the agent who talked to the resident): reached
or declined completes it, a wrong number fails it, no answer or busy is retried after
``retry_after`` minutes within the calling hours up to ``max_attempts`` calls. A resident who
calls in and is served first closes it (:func:`close_by_call_in`); supervisors cancel or
reassign it (audited). A request assigned to an agent is offered to that agent only; when
they do not take it within ``assigned_wait`` the assignment lapses (:func:`lapse_assignment`,
audited) and it goes back to the general queue.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from crm.audit import log as audit
from crm.callbacks.models import CallbackDecision, decision_key
from crm.errors import CallbackClosed, CallbackNotFound, InvalidCallbackOutcome, InvalidInput
from crm.i18n.phrases import Label, Labels, Phrase
from crm.settings import CallbackSettings
from crm.storage.db import SessionFactory
from crm.storage.models import Agent, CallbackRequest, Consultation, ConsultationStep, utcnow
from crm.surveys.return_visits import CallingHours
from crm.telephony.steps import CallbackNotPossible, QueueJoined

log = logging.getLogger(__name__)

REASONS = ("abandoned", "chosen", "closed", "overload", "no_answer", "lost")
"""``lost``: the call's media node died under it (hotline.roles.node_loss)."""
OPEN = ("pending", "dialling")
FINAL = ("completed", "failed", "cancelled", "closed_by_call_in")
OUTCOMES = ("reached", "no_answer", "busy", "wrong_number", "declined")
RETRY = frozenset({"no_answer", "busy", "failed"})
"""System outcomes that call for another attempt (failed: the call could not be placed)."""
NOT_DIALLED_DELAY = timedelta(seconds=60)
"""A callback that left the queue without reaching an agent is placed again after this."""
_DIGITS = re.compile(r"\+?[0-9]{5,15}")
_WITHHELD = frozenset({"", "anonymous", "unknown", "restricted", "private", "unavailable",
                       "withheld", "<unknown>"})


def _closed(request: CallbackRequest) -> CallbackClosed:
    return CallbackClosed(Phrase("callback request {id} is {status}",
                                 {"id": request.id,
                                  "status": Label("callback_status", request.status)}))


def number_problem(number: str | None) -> str | None:
    """Why ``number`` cannot be called back (``withheld`` or ``malformed``), None if it can:
    5 to 15 digits, optionally after a +."""
    text = (number or "").strip()
    if text.lower() in _WITHHELD:
        return "withheld"
    return None if _DIGITS.fullmatch(text) else "malformed"


@dataclass(frozen=True)
class RetryRules:
    max_attempts: int = 3
    retry_after: timedelta = timedelta(minutes=30)
    hours: CallingHours | None = None

    @classmethod
    def from_settings(cls, settings: CallbackSettings) -> RetryRules:
        return cls(settings.max_attempts, timedelta(minutes=settings.retry_after),
                   CallingHours.parse(settings.calling_hours, settings.timezone))

    def first_attempt(self, now: datetime) -> datetime:
        return self.hours.next_opening(now) if self.hours else now

    def next_attempt(self, now: datetime) -> datetime:
        at = now + self.retry_after
        return self.hours.next_opening(at) if self.hours else at


@dataclass(frozen=True)
class CallbackView:
    id: int
    caller_number: str
    language: str | None
    reason: str
    status: str
    outcome: str | None
    created_at: datetime
    queued_at: datetime | None
    waited_s: float | None
    attempts: int
    next_attempt_at: datetime | None
    completed_at: datetime | None
    consultation_id: int | None
    last_consultation_id: int | None
    assigned_agent_id: int | None
    assigned_agent: str | None
    cancelled_by: str | None
    note: str | None
    call_id: str | None = None
    """The call id of the consultation that created the request."""

    @property
    def arrival(self) -> datetime:
        """Where the callback stands in the queue's arrival order."""
        return self.queued_at or self.created_at

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("created_at", "queued_at", "next_attempt_at", "completed_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def _view(r: CallbackRequest) -> CallbackView:
    return CallbackView(
        id=r.id, caller_number=r.caller_number, language=r.language, reason=r.reason,
        status=r.status, outcome=r.outcome, created_at=r.created_at, queued_at=r.queued_at,
        waited_s=r.waited_s, attempts=r.attempts, next_attempt_at=r.next_attempt_at,
        completed_at=r.completed_at, consultation_id=r.consultation_id,
        last_consultation_id=r.last_consultation_id, assigned_agent_id=r.assigned_agent_id,
        assigned_agent=r.assigned_agent.login if r.assigned_agent else None,
        cancelled_by=r.cancelled_by, note=r.note,
        call_id=r.consultation.call_id if r.consultation else None)


def _loaded() -> tuple[Any, ...]:
    return (selectinload(CallbackRequest.assigned_agent),
            selectinload(CallbackRequest.consultation))


async def get_callback(sessions: SessionFactory, request_id: int) -> CallbackView:
    async with sessions() as session:
        found = await session.scalar(select(CallbackRequest).options(*_loaded())
                                     .where(CallbackRequest.id == request_id)
                                     .execution_options(populate_existing=True))
        if found is None:
            raise CallbackNotFound(Phrase("no callback request {id}", {"id": request_id}))
        return _view(found)


async def consultation_id_of(sessions: SessionFactory, call_id: str) -> int | None:
    async with sessions() as session:
        return await session.scalar(select(Consultation.id)
                                    .where(Consultation.call_id == call_id))


async def said_not_possible(sessions: SessionFactory, call_id: str) -> bool:
    """Whether the call's consultation has a ``callback_not_possible`` step."""
    async with sessions() as session:
        found = await session.scalar(
            select(ConsultationStep.id).join(Consultation)
            .where(Consultation.call_id == call_id,
                   ConsultationStep.kind == CallbackNotPossible.KIND).limit(1))
    return found is not None


# -- creation ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Requested:
    request: CallbackView
    merged: bool
    """The number had an open request already: this call merged into it."""
    repeated: bool = False
    """This call's decision had been taken already (the same ``call_id`` and reason): the
    request it made is returned unchanged."""


async def request_callback(sessions: SessionFactory, *, number: str, reason: str,
                           consultation_id: int | None = None, language: str | None = None,
                           queued_at: datetime | None = None, waited_s: float | None = None,
                           rules: RetryRules | None = None,
                           now: datetime | None = None,
                           call_id: str | None = None) -> Requested:
    """A callback request for ``number``, or the open one it merges into. The merged request
    keeps its earliest place (``queued_at``) and is called as soon as the calling hours
    allow, if it was waiting for a retry. With ``call_id`` the decision is taken once: asked
    again for the same call and reason (its event handed over twice), it returns the request
    the first time made or merged into, unchanged (``repeated``)."""
    if reason not in REASONS:
        raise InvalidInput(Phrase("unknown callback reason {reason}; one of {reasons}",
                                  {"reason": repr(reason),
                                   "reasons": Labels("callback_reason", REASONS)}))
    if (problem := number_problem(number)) is not None:
        raise InvalidInput(Phrase("a withheld number cannot be called back")
                           if problem == "withheld" else
                           Phrase("a malformed number cannot be called back"))
    now = now or utcnow()
    first = (rules or RetryRules()).first_attempt(now)
    key = None if call_id is None else decision_key(call_id, reason)
    for _ in range(3):  # a concurrent creation for the same number wins: merge into it
        try:
            async with sessions() as session, session.begin():
                done = None if key is None else await session.get(CallbackDecision, key)
                if done is not None:
                    request_id, merged, repeated = done.request_id, False, True
                else:
                    request_id, merged, repeated = await _request_or_merge(
                        session, number=number, reason=reason,
                        consultation_id=consultation_id, language=language,
                        queued_at=queued_at, waited_s=waited_s, now=now, first=first)
                    if key is not None:
                        session.add(CallbackDecision(key=key, request_id=request_id,
                                                     decided_at=now))
        except IntegrityError:
            log.info("callback for %s: created concurrently; merging", number)
            continue
        view = await get_callback(sessions, request_id)
        if repeated:
            log.info("callback %d for %s: call %s's decision (%s) was taken already; "
                     "unchanged", view.id, number, call_id, reason)
        else:
            log.info("callback %d for %s: %s (%s)", view.id, number,
                     "merged a missed call" if merged else "requested", reason)
        return Requested(view, merged, repeated)
    raise RuntimeError(f"callback for {number}: could not create or merge")


async def _request_or_merge(session: Any, *, number: str, reason: str,
                            consultation_id: int | None, language: str | None,
                            queued_at: datetime | None, waited_s: float | None,
                            now: datetime, first: datetime) -> tuple[int, bool, bool]:
    """In ``session``'s transaction: merge into the number's open request, or make one;
    (its id, merged, repeated=False)."""
    existing = await session.scalar(
        select(CallbackRequest).where(CallbackRequest.caller_number == number,
                                      CallbackRequest.status.in_(OPEN))
        .with_for_update())
    if existing is not None:
        _merge(existing, queued_at=queued_at, language=language, first=first)
        return existing.id, True, False
    request = CallbackRequest(
        caller_number=number, language=language, reason=reason, status="pending",
        created_at=now, queued_at=queued_at,
        waited_s=None if waited_s is None else round(waited_s, 1), attempts=0,
        next_attempt_at=first, consultation_id=consultation_id)
    session.add(request)
    await session.flush()
    return request.id, False, False


def _merge(request: CallbackRequest, *, queued_at: datetime | None, language: str | None,
           first: datetime) -> None:
    if queued_at is not None and (request.queued_at is None or queued_at < request.queued_at):
        request.queued_at = queued_at
    request.language = request.language or language
    if request.status == "pending" and (request.next_attempt_at is None
                                        or request.next_attempt_at > first):
        request.next_attempt_at = first
    merges = 1 + int(m.group(1)) if (m := re.match(r"(\d+) more missed call",
                                                   request.note or "")) else 1
    request.note = f"{merges} more missed call{'s' if merges > 1 else ''} merged"


async def close_by_call_in(sessions: SessionFactory, number: str | None, *,
                           consultation_id: int | None = None, skip_call_id: str | None = None,
                           now: datetime | None = None) -> list[CallbackView]:
    """The resident called in and was served (by an agent, or in self-service) before we
    reached them: their open request is closed. Returns what was closed."""
    if not number or number_problem(number) is not None:
        return []
    now = now or utcnow()
    async with sessions() as session, session.begin():
        rows = (await session.scalars(
            select(CallbackRequest).where(CallbackRequest.caller_number == number,
                                          CallbackRequest.status.in_(OPEN))
            .with_for_update())).all()
        for request in rows:
            request.status = "closed_by_call_in"
            request.completed_at = now
            request.next_attempt_at = None
            if consultation_id is not None:
                request.last_consultation_id = consultation_id
        ids = [r.id for r in rows]
    for request_id in ids:
        log.info("callback %d for %s: closed, the resident called in", request_id, number)
    return [await get_callback(sessions, i) for i in ids]


# -- dialling --------------------------------------------------------------------------------
async def due_callbacks(sessions: SessionFactory, *, now: datetime | None = None,
                        limit: int = 20) -> list[CallbackView]:
    """Pending requests whose time has come, in arrival order (the queue's order)."""
    now = now or utcnow()
    arrival = CallbackRequest.queued_at.is_(None), CallbackRequest.queued_at
    query = (select(CallbackRequest).options(*_loaded())
             .where(CallbackRequest.status == "pending",
                    or_(CallbackRequest.next_attempt_at.is_(None),
                        CallbackRequest.next_attempt_at <= now))
             .order_by(*arrival, CallbackRequest.created_at, CallbackRequest.id).limit(limit))
    async with sessions() as session:
        return [_view(r) for r in (await session.scalars(query)).all()]


async def dialling_callbacks(sessions: SessionFactory) -> list[CallbackView]:
    """Requests whose callback call is (or was, before a restart) being placed."""
    async with sessions() as session:
        rows = (await session.scalars(select(CallbackRequest).options(*_loaded())
                                      .where(CallbackRequest.status == "dialling"))).all()
        return [_view(r) for r in rows]


async def begin_attempt(sessions: SessionFactory, request_id: int) -> bool:
    """Claim a pending request for one callback call (compare-and-set: False when it is no
    longer pending, e.g. another dialer took it or it was cancelled)."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(CallbackRequest)
            .where(CallbackRequest.id == request_id, CallbackRequest.status == "pending")
            .values(status="dialling")
            .execution_options(synchronize_session=False))
        return result.rowcount == 1  # type: ignore[attr-defined]


async def finish_attempt(sessions: SessionFactory, request_id: int, outcome: str | None, *,
                         rules: RetryRules, consultation_id: int | None = None,
                         now: datetime | None = None,
                         again_at: datetime | None = None) -> CallbackView:
    """How one callback call went, as the telephone side saw it: ``None`` when the resident
    was not dialled (the callback left the queue without an agent: placed again soon, at
    ``again_at`` if given: moved to another agent or back to the general queue);
    reached, no_answer, busy or failed (the resident's call could not be placed) count as an
    attempt. An outcome the agent already recorded on this call is kept."""
    if outcome is not None and outcome not in (*OUTCOMES, "failed"):
        raise InvalidCallbackOutcome(Phrase("unknown callback outcome {outcome}",
                                            {"outcome": repr(outcome)}))
    now = now or utcnow()
    async with sessions() as session, session.begin():
        request = await session.get(CallbackRequest, request_id, with_for_update=True)
        if request is None:
            raise CallbackNotFound(Phrase("no callback request {id}", {"id": request_id}))
        if consultation_id is not None:
            request.last_consultation_id = consultation_id
        if outcome is not None:
            request.attempts += 1
        if request.status != "dialling":
            log.info("callback %d: %s after it was %s; kept", request_id, outcome,
                     request.status)
        elif outcome is None:
            request.status = "pending"
            request.next_attempt_at = again_at or now + NOT_DIALLED_DELAY
        else:
            request.outcome = "no_answer" if outcome == "failed" else outcome
            _settle(request, outcome, rules, now)
    view = await get_callback(sessions, request_id)
    log.info("callback %d: attempt %d %s -> %s", request_id, view.attempts,
             outcome or "not dialled", view.status)
    return view


def _settle(request: CallbackRequest, outcome: str, rules: RetryRules, now: datetime) -> None:
    if outcome in RETRY:
        if request.attempts >= rules.max_attempts:
            request.status, request.next_attempt_at = "failed", None
            request.completed_at = now
        else:
            request.status, request.next_attempt_at = "pending", rules.next_attempt(now)
        return
    request.status = "failed" if outcome == "wrong_number" else "completed"
    request.next_attempt_at, request.completed_at = None, now


async def record_outcome(sessions: SessionFactory, request_id: int, outcome: str, *,
                         actor: str, rules: RetryRules, note: str | None = None,
                         now: datetime | None = None) -> CallbackView:
    """The outcome the agent who made the callback records (reached, wrong_number,
    declined, or no_answer / busy when they hear it): it decides the request."""
    if outcome not in OUTCOMES:
        raise InvalidCallbackOutcome(
            Phrase("unknown callback outcome {outcome}; one of {outcomes}",
                   {"outcome": repr(outcome), "outcomes": Labels("callback_outcome", OUTCOMES)}))
    now = now or utcnow()
    async with sessions() as session, session.begin():
        request = await session.get(CallbackRequest, request_id, with_for_update=True)
        if request is None:
            raise CallbackNotFound(Phrase("no callback request {id}", {"id": request_id}))
        if request.status in ("cancelled", "closed_by_call_in"):
            raise _closed(request)
        request.outcome = outcome
        if note:
            request.note = note[:256]
        if outcome in RETRY and request.status == "dialling":
            request.attempts = max(request.attempts, 1)
        _settle(request, outcome, rules, now)
        audit.record(session, actor=actor, action="callback_outcome",
                     object_type="callback_request", object_id=request_id,
                     detail={"outcome": outcome})
    return await get_callback(sessions, request_id)


# -- supervisors ------------------------------------------------------------------------------
async def cancel_callback(sessions: SessionFactory, request_id: int, *, actor: str,
                          note: str | None = None, source: str | None = None,
                          web_session: str | None = None,
                          now: datetime | None = None) -> CallbackView:
    """Cancel an open request (audited); a callback waiting in the queue is withdrawn by the
    dialer when it sees the request closed."""
    async with sessions() as session, session.begin():
        request = await session.get(CallbackRequest, request_id, with_for_update=True)
        if request is None:
            raise CallbackNotFound(Phrase("no callback request {id}", {"id": request_id}))
        if request.status not in OPEN:
            raise _closed(request)
        request.status, request.next_attempt_at = "cancelled", None
        request.completed_at = now or utcnow()
        request.cancelled_by = actor[:64]
        if note:
            request.note = note[:256]
        audit.record(session, actor=actor, action="callback_cancel",
                     object_type="callback_request", object_id=request_id,
                     detail={"note": note or ""}, source=source, web_session=web_session)
    log.info("callback %d: cancelled by %s", request_id, actor)
    return await get_callback(sessions, request_id)


async def reassign_callback(sessions: SessionFactory, request_id: int, agent_login: str | None,
                            *, actor: str, source: str | None = None,
                            web_session: str | None = None) -> CallbackView:
    """Give an open request to an agent (None: to no one in particular, the general queue);
    audited. Its callback is then offered to that agent only (the scheduler moves one
    already waiting in a queue)."""
    async with sessions() as session, session.begin():
        request = await session.get(CallbackRequest, request_id, with_for_update=True)
        if request is None:
            raise CallbackNotFound(Phrase("no callback request {id}", {"id": request_id}))
        if request.status not in OPEN:
            raise _closed(request)
        agent_id = None
        if agent_login:
            agent_id = await session.scalar(select(Agent.id).where(Agent.login == agent_login,
                                                                   Agent.active.is_(True)))
            if agent_id is None:
                raise InvalidInput(Phrase("no active agent {login}", {"login": repr(agent_login)}))
        before = request.assigned_agent_id
        request.assigned_agent_id = agent_id
        audit.record(session, actor=actor, action="callback_reassign",
                     object_type="callback_request", object_id=request_id,
                     detail={"from_agent_id": before, "to": agent_login or None},
                     source=source, web_session=web_session)
    return await get_callback(sessions, request_id)


async def lapse_assignment(sessions: SessionFactory, request_id: int, agent_id: int, *,
                           waited_s: float) -> bool:
    """The assigned agent did not take the callback within ``waited_s`` (not signed in,
    paused or busy): the request goes back to no one in particular (audited as the system).
    False when it was reassigned or closed meanwhile (nothing changed)."""
    async with sessions() as session, session.begin():
        request = await session.get(CallbackRequest, request_id, with_for_update=True,
                                    options=[selectinload(CallbackRequest.assigned_agent)])
        if (request is None or request.status not in OPEN
                or request.assigned_agent_id != agent_id):
            return False
        login = request.assigned_agent.login if request.assigned_agent else str(agent_id)
        request.assigned_agent_id = None
        lapsed = f"{login} did not take it in {waited_s:.0f} s: general queue"
        request.note = (f"{request.note}; {lapsed}" if request.note else lapsed)[:256]
        audit.record(session, actor="system", action="callback_assignment_lapsed",
                     object_type="callback_request", object_id=request_id,
                     detail={"from_agent_id": agent_id, "waited_s": round(waited_s)})
    log.info("callback %d: %s did not take it in %.0f s; back to the general queue",
             request_id, login, waited_s)
    return True


async def list_callbacks(sessions: SessionFactory, *, open_only: bool = True,
                         limit: int = 100) -> list[CallbackView]:
    """Open requests in arrival order (the order they will be called back in); with
    ``open_only`` False, every request, newest first."""
    query = select(CallbackRequest).options(*_loaded()).limit(limit)
    if open_only:
        query = query.where(CallbackRequest.status.in_(OPEN)).order_by(
            CallbackRequest.queued_at.is_(None), CallbackRequest.queued_at,
            CallbackRequest.created_at, CallbackRequest.id)
    else:
        query = query.order_by(CallbackRequest.created_at.desc(), CallbackRequest.id.desc())
    async with sessions() as session:
        return [_view(r) for r in (await session.scalars(query)).all()]


async def list_pending(sessions: SessionFactory, *, limit: int = 100) -> list[CallbackView]:
    """What agents and supervisors see: open requests in the order they will be called."""
    return await list_callbacks(sessions, open_only=True, limit=limit)


async def queue_of_call(sessions: SessionFactory, call_id: str) -> str | None:
    """The queue a call first waited in (its consultation's ``queued`` step)."""
    async with sessions() as session:
        detail = await session.scalar(
            select(ConsultationStep.detail).join(Consultation)
            .where(Consultation.call_id == call_id, ConsultationStep.kind == QueueJoined.KIND)
            .order_by(ConsultationStep.id).limit(1))
    queue = detail.get("queue") if isinstance(detail, dict) else None
    return str(queue) if queue else None
