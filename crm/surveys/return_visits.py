"""Return visits: outbound survey calls to residents whose case was resolved.

A resolved case gets one return visit (``schedule_return_visits``). A
:class:`ReturnVisitCampaign` pass has the dialer call the visits that are due, only within
the calling hours; the answered call runs the same survey as after an agent call (the IVR's
media server takes it), and the score closes the case (>= 3) or reopens it (<= 2, see
crm.surveys.service). A call not answered, busy, failed, or answered without a rating is
retried after ``retry_after`` up to ``max_attempts`` calls, then the visit is marked failed.

The dialer is passed in (crm.telephony.dialer.Dialer; the composition root hands in
ivr.asterisk.dialer.ReturnVisitDialer): the CRM never talks to Asterisk itself. Every attempt
is kept in ``return_visit_attempts``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from crm.settings import SurveySettings
from crm.storage.db import SessionFactory
from crm.storage.models import Case, CaseHistory, Resident, utcnow
from crm.storage.survey_models import ReturnVisit, ReturnVisitAttempt
from crm.telephony.dialer import Dialer

log = logging.getLogger(__name__)

RETRY_OUTCOMES = frozenset({"no_answer", "busy", "failed", "no_rating", "lost"})
OPEN_STATUSES = ("pending", "calling", "answered")
# -- calling hours and retries ------------------------------------------------------------
@dataclass(frozen=True)
class CallingHours:
    """A daily window in local time, [start, end); end 24:00 means midnight."""

    start_minute: int
    end_minute: int
    tz: tzinfo

    @classmethod
    def parse(cls, text: str, tz_name: str | None = None) -> CallingHours:
        start, _, end = text.partition("-")
        tz: tzinfo = zoneinfo.ZoneInfo(tz_name) if tz_name else _local_zone()
        return cls(_minute(start), _minute(end), tz)

    def contains(self, at: datetime) -> bool:
        local = at.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        return self.start_minute <= minute < self.end_minute

    def next_opening(self, at: datetime) -> datetime:
        """``at`` itself when inside the window, else the next time the window opens."""
        if self.contains(at):
            return at
        local = at.astimezone(self.tz)
        day = local.date()
        if local.hour * 60 + local.minute >= self.start_minute:
            day += timedelta(days=1)
        opening = datetime.combine(day, time(self.start_minute // 60, self.start_minute % 60),
                                   self.tz)
        return opening.astimezone(at.tzinfo)


def _minute(hhmm: str) -> int:
    hours, _, minutes = hhmm.strip().partition(":")
    return int(hours) * 60 + int(minutes)


def _local_zone() -> tzinfo:
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    retry_after: timedelta = timedelta(minutes=120)
    hours: CallingHours | None = None
    stale_after: timedelta = timedelta(minutes=30)

    @classmethod
    def from_settings(cls, survey: SurveySettings) -> RetryPolicy:
        return cls(survey.max_attempts, timedelta(minutes=survey.retry_after),
                   CallingHours.parse(survey.calling_hours, survey.timezone),
                   timedelta(minutes=survey.stale_after))

    def next_attempt(self, now: datetime) -> datetime:
        at = now + self.retry_after
        return self.hours.next_opening(at) if self.hours else at


# -- views --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReturnVisitView:
    id: int
    case_number: str
    case_stage: str
    phone: str
    language: str | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_outcome: str | None
    survey_call_id: str | None
    attempt_outcomes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("next_attempt_at", "last_attempt_at"):
            data[key] = data[key].isoformat() if data[key] else None
        data["attempt_outcomes"] = list(self.attempt_outcomes)
        return data


def _view(v: ReturnVisit) -> ReturnVisitView:
    return ReturnVisitView(
        id=v.id, case_number=v.case.number, case_stage=v.case.stage, phone=v.phone,
        language=v.language, status=v.status, attempts=v.attempts,
        next_attempt_at=v.next_attempt_at, last_attempt_at=v.last_attempt_at,
        last_outcome=v.last_outcome, survey_call_id=v.survey_call_id,
        attempt_outcomes=tuple(a.outcome for a in v.attempt_log))


def _loaded() -> Any:
    return (selectinload(ReturnVisit.case), selectinload(ReturnVisit.attempt_log))


async def get_return_visit(sessions: SessionFactory, visit_id: int) -> ReturnVisitView | None:
    async with sessions() as session:
        visit = await session.scalar(select(ReturnVisit).where(ReturnVisit.id == visit_id)
                                     .options(*_loaded())
                                     .execution_options(populate_existing=True))
        return _view(visit) if visit else None


# -- scheduling -----------------------------------------------------------------------------
async def schedule_return_visits(sessions: SessionFactory, *, now: datetime | None = None,
                                 hours: CallingHours | None = None) -> list[ReturnVisitView]:
    """A return visit for every resolved case that has none since it was (last) resolved.

    The resident is called at the case's contact phone (else their first phone), in their
    preferred language; a case with no phone at all is left out (and logged)."""
    now = now or utcnow()
    first_call = hours.next_opening(now) if hours else now
    created: list[int] = []
    async with sessions() as session, session.begin():
        resolved_at = (select(CaseHistory.case_id, func.max(CaseHistory.at).label("at"))
                       .where(CaseHistory.to_stage == "resolved")
                       .group_by(CaseHistory.case_id).subquery())
        last_visit = (select(ReturnVisit.case_id, func.max(ReturnVisit.created_at).label("at"))
                      .group_by(ReturnVisit.case_id).subquery())
        rows = (await session.execute(
            select(Case, resolved_at.c.at, last_visit.c.at)
            .outerjoin(resolved_at, resolved_at.c.case_id == Case.id)
            .outerjoin(last_visit, last_visit.c.case_id == Case.id)
            .where(Case.stage == "resolved")
            .options(selectinload(Case.resident).selectinload(Resident.phones))
            .order_by(Case.id))).all()
        for case, resolved, visited in rows:
            if visited is not None and (resolved is None or visited >= resolved):
                continue
            phone = case.contact_phone or (case.resident.phones[0].phone
                                           if case.resident and case.resident.phones else None)
            if not phone:
                log.warning("case %s is resolved but has no phone: no return visit", case.number)
                continue
            visit = ReturnVisit(case_id=case.id, phone=phone,
                                language=case.resident.preferred_language if case.resident
                                else None,
                                status="pending", attempts=0, next_attempt_at=first_call,
                                created_at=now, updated_at=now)
            session.add(visit)
            await session.flush()
            created.append(visit.id)
            log.info("return visit %d scheduled for case %s", visit.id, case.number)
    return [v for v in [await get_return_visit(sessions, i) for i in created] if v]


async def due_return_visits(sessions: SessionFactory, *, now: datetime | None = None,
                            limit: int = 20) -> list[ReturnVisitView]:
    now = now or utcnow()
    query = (select(ReturnVisit).options(*_loaded())
             .where(ReturnVisit.status == "pending",
                    (ReturnVisit.next_attempt_at.is_(None)) | (ReturnVisit.next_attempt_at <= now))
             .order_by(ReturnVisit.next_attempt_at, ReturnVisit.id).limit(limit))
    async with sessions() as session:
        return [_view(v) for v in (await session.scalars(query)).all()]


async def begin_attempt(sessions: SessionFactory, visit_id: int, survey_call_id: str, *,
                        now: datetime | None = None) -> bool:
    """Claim a pending visit for one call (compare-and-set: False if someone else did)."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(ReturnVisit)
            .where(ReturnVisit.id == visit_id, ReturnVisit.status == "pending")
            .values(status="calling", attempts=ReturnVisit.attempts + 1, last_attempt_at=now,
                    survey_call_id=survey_call_id, updated_at=now)
            .execution_options(synchronize_session=False))
        return result.rowcount == 1  # type: ignore[attr-defined]


async def record_attempt(sessions: SessionFactory, visit_id: int, outcome: str, *,
                         policy: RetryPolicy, survey_call_id: str | None = None,
                         detail: str | None = None,
                         now: datetime | None = None) -> ReturnVisitView | None:
    """How one call of a visit ended. ``answered`` waits for the survey; a retry outcome
    schedules the next call, or fails the visit once ``max_attempts`` calls were made.
    An outcome for an attempt that is no longer current (another call, or the visit is
    already completed) is logged and ignored."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        visit = await session.get(ReturnVisit, visit_id, with_for_update=True)
        if visit is None:
            return None
        current = (visit.status in ("calling", "answered")
                   and (survey_call_id is None or visit.survey_call_id == survey_call_id))
        session.add(ReturnVisitAttempt(return_visit_id=visit.id, at=now, outcome=outcome,
                                       survey_call_id=survey_call_id or visit.survey_call_id,
                                       detail=detail))
        if not current:
            log.info("return visit %d: late outcome %s ignored (status %s)", visit_id, outcome,
                     visit.status)
        elif outcome == "answered":
            visit.status = "answered"
        elif outcome in RETRY_OUTCOMES:
            if visit.attempts >= policy.max_attempts:
                visit.status, visit.next_attempt_at = "failed", None
            else:
                visit.status, visit.next_attempt_at = "pending", policy.next_attempt(now)
        else:
            raise ValueError(f"unknown return visit outcome {outcome!r}")
        if current:
            visit.last_outcome = outcome
            visit.updated_at = now
        log.info("return visit %d: %s -> %s (attempt %d)", visit_id, outcome, visit.status,
                 visit.attempts)
    return await get_return_visit(sessions, visit_id)


async def expire_stale_attempts(sessions: SessionFactory, *, policy: RetryPolicy,
                                now: datetime | None = None) -> int:
    """Calls that never reported an outcome (the IVR was down, a process died) count as
    lost after ``stale_after`` and are retried like unanswered ones."""
    now = now or utcnow()
    async with sessions() as session:
        stale = (await session.execute(
            select(ReturnVisit.id, ReturnVisit.survey_call_id)
            .where(ReturnVisit.status.in_(("calling", "answered")),
                   ReturnVisit.last_attempt_at < now - policy.stale_after))).all()
    for visit_id, survey_call_id in stale:
        await record_attempt(sessions, visit_id, "lost", policy=policy,
                             survey_call_id=survey_call_id, detail="no outcome reported",
                             now=now)
    return len(stale)


# -- the campaign -----------------------------------------------------------------------------
@dataclass(frozen=True)
class AttemptReport:
    visit_id: int
    case_number: str
    survey_call_id: str
    outcome: str
    detail: str | None = None


class ReturnVisitCampaign:
    """Return-visit passes: schedule visits for resolved cases, have the dialer call those
    due (inside the calling hours only) and record how each attempt ended."""

    def __init__(self, dialer: Dialer, sessions: SessionFactory, survey: SurveySettings, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.dialer = dialer
        self.sessions = sessions
        self.survey = survey
        self.policy = RetryPolicy.from_settings(survey)
        self.clock = clock

    async def run_once(self) -> list[AttemptReport]:
        """One pass: expire lost calls, schedule new visits, call those due (inside the
        calling hours only), and wait until every call placed has an outcome."""
        now = self.clock()
        await expire_stale_attempts(self.sessions, policy=self.policy, now=now)
        await schedule_return_visits(self.sessions, now=now, hours=self.policy.hours)
        if self.policy.hours is not None and not self.policy.hours.contains(now):
            log.info("return visits: outside calling hours (%s); nothing dialled",
                     self.survey.calling_hours)
            return []
        due = await due_return_visits(self.sessions, now=now)
        gate = asyncio.Semaphore(self.survey.max_concurrent_calls)

        async def limited(visit: ReturnVisitView) -> AttemptReport | None:
            async with gate:
                return await self.call(visit)

        reports = await asyncio.gather(*(limited(v) for v in due))
        return [r for r in reports if r is not None]

    async def run_forever(self, interval: float) -> None:
        """``run_once`` every ``interval`` seconds until cancelled; a failing pass is logged."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("return visit pass failed; trying again in %.0f s", interval)
            await asyncio.sleep(interval)

    async def call(self, visit: ReturnVisitView) -> AttemptReport | None:
        """Place one call for ``visit``; None if another dialer claimed it first."""
        survey_call_id = str(uuid.uuid4())
        if not await begin_attempt(self.sessions, visit.id, survey_call_id, now=self.clock()):
            return None
        outcome, detail = await self.dialer.dial(visit.phone, visit_id=visit.id,
                                                 survey_call_id=survey_call_id)
        await record_attempt(self.sessions, visit.id, outcome, policy=self.policy,
                             survey_call_id=survey_call_id, detail=detail, now=self.clock())
        log.info("return visit %d (case %s, attempt %d): %s %s", visit.id, visit.case_number,
                 visit.attempts + 1, outcome, detail or "")
        return AttemptReport(visit.id, visit.case_number, survey_call_id, outcome, detail)
