"""Reading the rows the figures need from the database (both databases): :func:`load`, and
:func:`service_levels` which reads and counts a period; :class:`TodayCounter`, today's
figures for the wallboard, read again after every call without reading the whole day."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Select, inspect, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.reports.service_levels.calls import (
    CallbackRow,
    CallFacts,
    CallRow,
    Rows,
    SurveyRow,
    classify,
)
from crm.reports.service_levels.counting import Period, Report, figures, report
from crm.reports.service_levels.presentation import figures_json
from crm.settings import ServiceLevelSettings
from crm.storage.db import SessionFactory
from crm.storage.models import CallbackRequest, Consultation, ConsultationStep
from crm.storage.survey_models import SurveyResult
from crm.telephony.steps import (
    AgentCompleted,
    AgentConnected,
    AgentNoAnswer,
    AgentRung,
    CallbackDialling,
    IntentChosen,
    QueueAbandoned,
    QueueJoined,
    RouteChosen,
    StatusTold,
    Step,
    step_from_row,
)

log = logging.getLogger("crm.reports.service_levels")
"""The name the figures have always logged under."""

SURVEY_KIND = "after_call"
"""满意率 counts the surveys offered after a call: the line's service, not a case's outcome
(return visits are on the satisfaction page)."""
STEP_KINDS = (QueueJoined.KIND, AgentRung.KIND, AgentNoAnswer.KIND, AgentConnected.KIND,
              AgentCompleted.KIND, QueueAbandoned.KIND, StatusTold.KIND, IntentChosen.KIND,
              RouteChosen.KIND)
"""The steps the figures read (others are never loaded)."""


def _has_callback_table(connection: Any) -> bool:
    return bool(inspect(connection).has_table(CallbackRequest.__tablename__))


async def _calls(session: AsyncSession, which: Select[Any]) -> list[CallRow]:
    """The consultations whose ids ``which`` selects, with the steps the figures read."""
    consultations = (await session.execute(
        select(Consultation.id, Consultation.started_at, Consultation.ended_at,
               Consultation.outcome)
        .where(Consultation.id.in_(which)).order_by(Consultation.id))).all()
    steps: dict[int, list[tuple[datetime, Step]]] = {}
    for consultation_id, at, kind, detail in (await session.execute(
            select(ConsultationStep.consultation_id, ConsultationStep.at,
                   ConsultationStep.kind, ConsultationStep.detail)
            .where(ConsultationStep.consultation_id.in_(which),
                   ConsultationStep.kind.in_(STEP_KINDS))
            .order_by(ConsultationStep.id))).all():
        steps.setdefault(consultation_id, []).append((at, step_from_row(kind, detail)))
    return [CallRow(cid, started, ended, outcome, tuple(steps.get(cid, ())))
            for cid, started, ended, outcome in consultations]


def _in_range(start: datetime, end: datetime) -> Select[Any]:
    return select(Consultation.id).where(Consultation.started_at >= start,
                                         Consultation.started_at < end)


async def _others(session: AsyncSession, start: datetime, end: datetime) -> tuple[
        set[int], tuple[SurveyRow, ...], tuple[CallbackRow, ...] | None]:
    """The callback calls among the period's consultations (placed by the hotline: not
    offered), its rated after-call surveys and its callback requests (None: no table)."""
    # Every attempt of a callback is a call of its own, marked from its first step (and by
    # its route once it ended); a resident's own call is never one of them, even when it
    # closed their callback request.
    outbound: set[int] = set((await session.scalars(
        select(ConsultationStep.consultation_id).where(
            ConsultationStep.consultation_id.in_(_in_range(start, end)),
            ConsultationStep.kind == CallbackDialling.KIND))).all())
    outbound |= set((await session.scalars(
        select(Consultation.id).where(Consultation.id.in_(_in_range(start, end)),
                                      Consultation.ivr_route == "callback"))).all())
    callbacks: tuple[CallbackRow, ...] | None = None
    if await (await session.connection()).run_sync(_has_callback_table):
        callbacks = tuple(CallbackRow(created, status) for created, status in (
            await session.execute(select(CallbackRequest.created_at, CallbackRequest.status)
                                  .where(CallbackRequest.created_at >= start,
                                         CallbackRequest.created_at < end))).all())
    else:
        log.warning("service levels: no callback_requests table in this database "
                    "(run `hotline db upgrade`): the callback figures are left empty")
    surveys = tuple(SurveyRow(started, int(score)) for started, score in (
        await session.execute(
            select(SurveyResult.started_at, SurveyResult.score)
            .where(SurveyResult.started_at >= start, SurveyResult.started_at < end,
                   SurveyResult.kind == SURVEY_KIND, SurveyResult.outcome == "rated",
                   SurveyResult.score.is_not(None)))).all())
    return outbound, surveys, callbacks


async def load(sessions: SessionFactory, start: datetime, end: datetime) -> Rows:
    """The consultations, steps, rated after-call surveys and callback requests the figures
    of ``start`` .. ``end`` (UTC) need. Calls the hotline placed itself (callback calls) are
    not calls offered."""
    async with sessions() as session:
        outbound, surveys, callbacks = await _others(session, start, end)
        calls = await _calls(session, _in_range(start, end))
    return Rows(tuple(c for c in calls if c.id not in outbound), surveys, callbacks)


async def service_levels(sessions: SessionFactory, period: Period, tz: tzinfo,
                         settings: ServiceLevelSettings) -> Report:
    """The figures of ``period`` by its buckets, read from the database."""
    start, end = period.bounds(tz)
    return report(period, tz, await load(sessions, start, end), settings)


class TodayCounter:
    """Today's figures for the wallboard, counted again after every call that ends without
    reading the whole day each time: what became of a call that has ended does not change,
    so those are remembered and only new calls and calls still open are read again. Every
    ``full_every_s`` (and on a new day) everything is read again, so a late write is never
    missed for longer. Call it with the instant to count at (a :data:`TodayLevels` of the
    wallboard)."""

    def __init__(self, sessions: SessionFactory, tz: tzinfo, settings: ServiceLevelSettings,
                 *, full_every_s: float = 60.0) -> None:
        self._sessions = sessions
        self._tz = tz
        self._settings = settings
        self._full_every = timedelta(seconds=full_every_s)
        self._day: date | None = None
        self._full_at: datetime | None = None
        self._ended: dict[int, CallFacts] = {}
        self._open: set[int] = set()
        self._last_id = 0
        self.full_counts = 0
        """How many times the whole day was read (the others read only new and open calls)."""

    async def __call__(self, now: datetime) -> dict[str, Any]:
        day = now.astimezone(self._tz).date()
        start, end = Period(day, day).bounds(self._tz)
        full = (day != self._day or self._full_at is None
                or now - self._full_at >= self._full_every or now < self._full_at)
        which = _in_range(start, end)
        if not full:
            which = which.where(or_(Consultation.id > self._last_id,
                                    Consultation.id.in_(self._open)))
        async with self._sessions() as session:
            outbound, surveys, callbacks = await _others(session, start, end)
            calls = await _calls(session, which)
        if full:
            self._day, self._full_at, self._ended = day, now, {}
            self.full_counts += 1
        still_open: dict[int, CallFacts] = {}
        for call in calls:
            facts = classify(call)
            self._last_id = max(self._last_id, call.id)
            if call.ended_at is not None and facts.disposition != "in_progress":
                self._ended[call.id] = facts
            else:
                still_open[call.id] = facts
        self._open = set(still_open)
        counted = [facts for cid, facts in (*self._ended.items(), *still_open.items())
                   if cid not in outbound]
        edges = Period(day, day).buckets(self._tz)[0]
        return figures_json(figures(edges[0], edges[1], counted, surveys, callbacks,
                                    self._settings), self._settings)

