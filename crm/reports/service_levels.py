"""The 12345 service-level figures (their definitions: docs/service-levels.md), for a period,
by hour or by day, and for the whole period.

Pure functions do the counting: :func:`classify` tells what became of one call from its
consultation and typed steps, :func:`figures` adds calls, surveys and callback requests up
into one :class:`Figures`, :func:`report` cuts a period into buckets. :func:`load` reads the
rows they need (both databases) and :func:`service_levels` does both. Rates and averages are
exact fractions here; they are rounded only where they are shown (:func:`figures_json`).

A call belongs to the bucket its consultation started in; a survey to the one it started in;
a callback request to the one it was created in. Days and hours are the hotline's local ones.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from fractions import Fraction
from itertools import pairwise
from typing import Any, Literal

from sqlalchemy import Select, inspect, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.errors import InvalidInput
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

log = logging.getLogger(__name__)

Bucket = Literal["hour", "day"]
BUCKETS: tuple[Bucket, ...] = ("hour", "day")
MAX_DAYS: dict[str, int] = {"day": 366, "hour": 31}
"""The longest period one request may ask for, per bucket."""
DEFAULT_DAYS: dict[str, int] = {"day": 30, "hour": 1}
SATISFIED_SCORES = frozenset({4, 5})
"""满意 (4) and 非常满意 (5) on the survey's 1..5 scale (ivr.flows.survey)."""
SURVEY_KIND = "after_call"
"""满意率 counts the surveys offered after a call: the line's service, not a case's outcome
(return visits are on the satisfaction page)."""
OPEN_CALLBACK = frozenset({"pending", "dialling"})
NOT_OWED_CALLBACK = frozenset({"cancelled", "closed_by_call_in"})
"""Requests that left the count of callbacks owed: a supervisor cancelled them, or the
resident called in before we reached them."""
ABANDONED_OUTCOME = "abandoned"
STEP_KINDS = (QueueJoined.KIND, AgentRung.KIND, AgentNoAnswer.KIND, AgentConnected.KIND,
              AgentCompleted.KIND, QueueAbandoned.KIND, StatusTold.KIND, IntentChosen.KIND,
              RouteChosen.KIND)
"""The steps the figures read (others are never loaded)."""
SELF_SERVICE_INTENTS = frozenset({"service_info"})

Disposition = Literal["answered", "abandoned", "left_queue", "self_service", "ivr_hangup",
                      "in_progress"]


# -- rows -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CallRow:
    """A consultation as the figures read it, with its steps in order."""

    id: int
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    steps: tuple[tuple[datetime, Step], ...] = ()


@dataclass(frozen=True)
class SurveyRow:
    started_at: datetime
    score: int


@dataclass(frozen=True)
class CallbackRow:
    created_at: datetime
    status: str


@dataclass(frozen=True)
class Rows:
    calls: tuple[CallRow, ...]
    surveys: tuple[SurveyRow, ...]
    callbacks: tuple[CallbackRow, ...] | None
    """None: this database has no callback_requests table yet."""


# -- one call -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CallFacts:
    started_at: datetime
    disposition: Disposition
    queued: bool
    """Reached the agent queue (asked for a person, or was sent there)."""
    wait_s: Fraction | None = None
    """Queue join -> agent answer (answered) or -> hang-up (abandoned)."""
    handle_s: Fraction | None = None
    """Agent answer -> the agent's call ended (answered calls whose conversation is over)."""


def _seconds(delta: timedelta) -> Fraction:
    """Whole milliseconds: the precision the figures keep."""
    return Fraction(round(delta.total_seconds() * 1000), 1000)


def _first(steps: Sequence[tuple[datetime, Step]], kind: type[Any],
           after: datetime | None = None) -> tuple[datetime, Any] | None:
    return next(((at, s) for at, s in steps
                 if isinstance(s, kind) and (after is None or at >= after)), None)


def _self_served(steps: Sequence[tuple[datetime, Step]]) -> bool:
    """The IVR served the caller: a case's status read out, service information asked for,
    or the caller ended the call from the menu (route ``end``)."""
    return any(isinstance(s, StatusTold)
               or (isinstance(s, IntentChosen) and s.intent in SELF_SERVICE_INTENTS)
               or (isinstance(s, RouteChosen) and s.route == "end") for _, s in steps)


def classify(call: CallRow) -> CallFacts:
    """What became of one call (see docs/service-levels.md, "Each call is one of")."""
    steps = call.steps
    joined = _first(steps, QueueJoined)
    answered = _first(steps, AgentConnected)
    abandoned = _first(steps, QueueAbandoned)
    queued = any(isinstance(s, QueueJoined | AgentRung | AgentNoAnswer | AgentConnected
                            | QueueAbandoned) for _, s in steps)
    if answered is not None:
        at, step = answered
        wait = (_seconds(at - joined[0]) if joined is not None and joined[0] <= at
                else Fraction(step.hold_time_s) if step.hold_time_s is not None else None)
        completed = _first(steps, AgentCompleted, after=at)
        handle = None
        if completed is not None:
            handle = _seconds(completed[0] - at)
        return CallFacts(call.started_at, "answered", True, wait, handle)
    if abandoned is not None or call.outcome == ABANDONED_OUTCOME:
        wait = None
        if abandoned is not None:
            at, step = abandoned
            wait = (_seconds(at - joined[0]) if joined is not None and joined[0] <= at
                    else Fraction(step.hold_time_s) if step.hold_time_s is not None else None)
        return CallFacts(call.started_at, "abandoned", True, wait)
    if call.ended_at is None:
        return CallFacts(call.started_at, "in_progress", queued)
    if queued:
        return CallFacts(call.started_at, "left_queue", True)
    if _self_served(steps):
        return CallFacts(call.started_at, "self_service", False)
    return CallFacts(call.started_at, "ivr_hangup", False)


# -- adding up ------------------------------------------------------------------------------------
def _ratio(part: int, whole: int) -> Fraction | None:
    return Fraction(part, whole) if whole else None


def _mean(values: Sequence[Fraction]) -> Fraction | None:
    return sum(values, Fraction(0)) / len(values) if values else None


def percentile(values: Iterable[Fraction], share: Fraction = Fraction(9, 10)) -> Fraction | None:
    """Nearest rank: the smallest value at least ``share`` of the values are not above."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


@dataclass(frozen=True)
class Figures:
    """The figures of one bucket (or of a whole period): counts, and what follows from them."""

    start: datetime
    end: datetime
    offered: int = 0
    queued: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    abandoned_short: int = 0
    left_queue: int = 0
    self_service: int = 0
    ivr_hangup: int = 0
    in_progress: int = 0
    """Calls still in the IVR or waiting: not counted yet (nor offered)."""
    wait_avg_s: Fraction | None = None
    wait_p90_s: Fraction | None = None
    handle_avg_s: Fraction | None = None
    callbacks_requested: int | None = None
    """None (with the other callback counts) where the database has no callback table."""
    callbacks_pending: int | None = None
    callbacks_completed: int | None = None
    callbacks_owed: int | None = None
    """Requested, less those cancelled or closed because the resident called in."""
    surveys_rated: int = 0
    surveys_satisfied: int = 0
    score_total: int = 0

    @property
    def connection_rate(self) -> Fraction | None:
        """接通率: answered by a person or finished in self-service, of the calls offered."""
        return _ratio(self.answered + self.self_service, self.offered)

    @property
    def answered_within_rate(self) -> Fraction | None:
        """Answered by a person within the threshold, of the calls that reached the queue."""
        return _ratio(self.answered_within, self.queued)

    @property
    def abandon_rate(self) -> Fraction | None:
        return _ratio(self.abandoned, self.queued)

    @property
    def short_abandon_rate(self) -> Fraction | None:
        return _ratio(self.abandoned_short, self.queued)

    @property
    def self_service_rate(self) -> Fraction | None:
        return _ratio(self.self_service, self.offered)

    @property
    def callbacks_completion_rate(self) -> Fraction | None:
        if self.callbacks_completed is None or self.callbacks_owed is None:
            return None
        return _ratio(self.callbacks_completed, self.callbacks_owed)

    @property
    def satisfaction_rate(self) -> Fraction | None:
        """满意率: rated 满意 or 非常满意, of the rated after-call surveys."""
        return _ratio(self.surveys_satisfied, self.surveys_rated)

    @property
    def average_score(self) -> Fraction | None:
        return _ratio(self.score_total, self.surveys_rated)


def figures(start: datetime, end: datetime, calls: Iterable[CallFacts],
            surveys: Iterable[SurveyRow], callbacks: Iterable[CallbackRow] | None,
            settings: ServiceLevelSettings) -> Figures:
    """Everything given added up (the caller chose what falls in ``start``..``end``)."""
    counts: dict[str, int] = dict.fromkeys(
        ("answered", "abandoned", "left_queue", "self_service", "ivr_hangup", "in_progress"), 0)
    waits: list[Fraction] = []
    handles: list[Fraction] = []
    queued = within = short = 0
    within_s = Fraction(settings.answer_within_s)
    short_s = Fraction(settings.short_abandon_s)
    for call in calls:
        counts[call.disposition] += 1
        if call.disposition == "in_progress":
            continue
        queued += call.queued
        if call.disposition in ("answered", "abandoned") and call.wait_s is not None:
            waits.append(call.wait_s)
        if call.disposition == "answered" and call.wait_s is not None \
                and call.wait_s <= within_s:
            within += 1
        if call.disposition == "abandoned" and call.wait_s is not None and call.wait_s < short_s:
            short += 1
        if call.handle_s is not None:
            handles.append(call.handle_s)
    scores = [s.score for s in surveys]
    callback_counts: dict[str, int | None] = dict.fromkeys(
        ("callbacks_requested", "callbacks_pending", "callbacks_completed", "callbacks_owed"))
    if callbacks is not None:
        requests = list(callbacks)
        callback_counts = {
            "callbacks_requested": len(requests),
            "callbacks_pending": sum(r.status in OPEN_CALLBACK for r in requests),
            "callbacks_completed": sum(r.status == "completed" for r in requests),
            "callbacks_owed": sum(r.status not in NOT_OWED_CALLBACK for r in requests)}
    offered = sum(n for k, n in counts.items() if k != "in_progress")
    return Figures(
        start, end, offered=offered, queued=queued, answered_within=within,
        abandoned_short=short, **counts, wait_avg_s=_mean(waits),
        wait_p90_s=percentile(waits), handle_avg_s=_mean(handles), **callback_counts,
        surveys_rated=len(scores), surveys_satisfied=sum(s in SATISFIED_SCORES for s in scores),
        score_total=sum(scores))


# -- periods and buckets --------------------------------------------------------------------------
def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name}={value!r} is not a date (YYYY-MM-DD)") from None


@dataclass(frozen=True)
class Period:
    """Local calendar days ``since`` .. ``until`` (both included), cut into hours or days."""

    since: date
    until: date
    bucket: Bucket = "day"

    @classmethod
    def from_query(cls, query: Mapping[str, str], *, today: date,
                   default_bucket: Bucket = "day") -> Period:
        """From ``from``, ``to`` (YYYY-MM-DD, local) and ``bucket`` (hour or day); a missing
        ``to`` is today, a missing ``from`` the last 30 days (hour: today). InvalidInput."""
        bucket = query.get("bucket") or default_bucket
        if bucket not in BUCKETS:
            raise InvalidInput(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
        until = _day(query["to"], "to") if query.get("to") else today
        since = (_day(query["from"], "from") if query.get("from")
                 else until - timedelta(days=DEFAULT_DAYS[bucket] - 1))
        if since > until:
            raise InvalidInput("from must not be after to")
        if (until - since).days >= MAX_DAYS[bucket]:
            raise InvalidInput(f"with bucket={bucket} a period is at most {MAX_DAYS[bucket]} "
                               "days")
        return cls(since, until, bucket)  # type: ignore[arg-type]

    def query(self) -> dict[str, str]:
        return {"from": self.since.isoformat(), "to": self.until.isoformat(),
                "bucket": self.bucket}

    def bounds(self, tz: tzinfo) -> tuple[datetime, datetime]:
        """The UTC instants where the first day starts and the last one ends."""
        start = datetime.combine(self.since, time(0), tz).astimezone(UTC)
        end = datetime.combine(self.until + timedelta(days=1), time(0), tz).astimezone(UTC)
        return start, end

    def buckets(self, tz: tzinfo) -> list[tuple[datetime, datetime]]:
        """Each bucket's local start and end, in order. Hours are real hours (a day with a
        clock change has 23 or 25 of them)."""
        if self.bucket == "day":
            days = [self.since + timedelta(days=n)
                    for n in range((self.until - self.since).days + 2)]
            edges = [datetime.combine(d, time(0), tz) for d in days]
        else:
            start, end = self.bounds(tz)
            edges = [(start + timedelta(hours=n)).astimezone(tz)
                     for n in range(int((end - start) / timedelta(hours=1)) + 1)]
        return list(pairwise(edges))


@dataclass(frozen=True)
class Report:
    period: Period
    tz: tzinfo
    total: Figures
    buckets: tuple[Figures, ...]


def report(period: Period, tz: tzinfo, rows: Rows,
           settings: ServiceLevelSettings) -> Report:
    """The figures of each bucket of ``period`` and of the whole of it, from ``rows``."""
    edges = period.buckets(tz)
    starts = [start.astimezone(UTC) for start, _ in edges]
    stop = edges[-1][1].astimezone(UTC)
    facts = [classify(c) for c in rows.calls]

    def sort(items: Iterable[Any], at: str) -> list[list[Any]]:
        out: list[list[Any]] = [[] for _ in edges]
        for item in items:
            when = getattr(item, at)
            if starts[0] <= when < stop:
                out[bisect_right(starts, when) - 1].append(item)
        return out

    calls, surveys = sort(facts, "started_at"), sort(rows.surveys, "started_at")
    callbacks = sort(rows.callbacks, "created_at") if rows.callbacks is not None else None
    buckets = tuple(
        figures(start, end, calls[i], surveys[i],
                callbacks[i] if callbacks is not None else None, settings)
        for i, (start, end) in enumerate(edges))
    total = figures(edges[0][0], edges[-1][1], (c for b in calls for c in b),
                    (s for b in surveys for s in b),
                    (r for b in callbacks for r in b) if callbacks is not None else None,
                    settings)
    return Report(period, tz, total, buckets)


# -- reading --------------------------------------------------------------------------------------
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


# -- showing --------------------------------------------------------------------------------------
Kind = Literal["count", "rate", "seconds", "score"]


@dataclass(frozen=True)
class Figure:
    """One figure as the pages, the CSV and the API name and show it."""

    key: str
    zh: str
    en: str
    kind: Kind
    target: str | None = None
    """The ServiceLevelSettings field of its target (percent), if it has one."""
    chart: bool = True
    """Drawn as a daily trend on the dashboard."""


FIGURES: tuple[Figure, ...] = (
    Figure("offered", "呼入量", "Calls offered", "count"),
    Figure("answered", "人工接听", "Answered by a person", "count"),
    Figure("connection_rate", "接通率", "Connection rate", "rate", "target_connection_pct"),
    Figure("answered_within_rate", "及时接听率", "Answered within {within} s", "rate",
           "target_answered_within_pct"),
    Figure("abandon_rate", "放弃率", "Abandon rate", "rate"),
    Figure("abandoned_short", "短时放弃", "Abandoned under {short} s", "count"),
    Figure("wait_avg_s", "平均等待", "Average wait", "seconds"),
    Figure("wait_p90_s", "90% 等待", "90th percentile wait", "seconds"),
    Figure("handle_avg_s", "平均处理时长", "Average handle time", "seconds"),
    Figure("self_service_rate", "自助办结率", "Finished in self-service", "rate"),
    Figure("callbacks_pending", "待回拨", "Callbacks pending", "count", chart=False),
    Figure("callbacks_completed", "已回拨", "Callbacks completed", "count", chart=False),
    Figure("callbacks_completion_rate", "回拨完成率", "Callback completion rate", "rate"),
    Figure("satisfaction_rate", "满意率", "Satisfaction (满意 + 非常满意)", "rate",
           "target_satisfaction_pct"),
    Figure("average_score", "平均评分", "Average score (1–5)", "score"),
)
COUNTS = ("offered", "queued", "answered", "answered_within", "abandoned", "abandoned_short",
          "left_queue", "self_service", "ivr_hangup", "in_progress", "callbacks_requested",
          "callbacks_pending", "callbacks_completed", "callbacks_owed", "surveys_rated",
          "surveys_satisfied")
VALUES = ("connection_rate", "answered_within_rate", "abandon_rate", "short_abandon_rate",
          "self_service_rate", "wait_avg_s", "wait_p90_s", "handle_avg_s",
          "callbacks_completion_rate", "satisfaction_rate", "average_score")
COLUMNS = ("start", "end", *COUNTS, *VALUES, "below_target")
"""The columns of the CSV, and the keys of each bucket in the API's JSON."""
RATE_DIGITS, SECONDS_DIGITS, SCORE_DIGITS = 4, 1, 2


def figure_label(figure: Figure, settings: ServiceLevelSettings) -> str:
    return figure.en.format(within=_plain(settings.answer_within_s),
                            short=_plain(settings.short_abandon_s))


def _plain(value: float) -> str:
    return f"{value:g}"


def target_of(figure: Figure, settings: ServiceLevelSettings) -> Fraction | None:
    """The figure's target as a share (0..1), or None."""
    if figure.target is None:
        return None
    return Fraction(str(getattr(settings, figure.target))) / 100


def below_target(found: Figures, settings: ServiceLevelSettings) -> list[str]:
    """The figures with a target that they fall short of (a figure without data is not)."""
    out = []
    for figure in FIGURES:
        target = target_of(figure, settings)
        value = getattr(found, figure.key)
        if target is not None and value is not None and value < target:
            out.append(figure.key)
    return out


def rounded(key: str, value: Fraction | int | None) -> float | int | None:
    """A figure as the API, the CSV and the pages' attributes give it: counts whole, rates to
    4 decimals (0..1), seconds to 1, the average score to 2."""
    if value is None or isinstance(value, int):
        return value
    digits = (SECONDS_DIGITS if key.endswith("_s") else SCORE_DIGITS
              if key == "average_score" else RATE_DIGITS)
    return round(float(value), digits)


def display(figure: Figure, value: Fraction | int | None) -> str:
    """How a page shows the value: 58.3 %, 12.5 s, 4.33, 12; – for no data."""
    if value is None:
        return "–"
    if figure.kind == "rate":
        return f"{float(value) * 100:.1f} %"
    if figure.kind == "seconds":
        return f"{float(value):.1f} s"
    if figure.kind == "score":
        return f"{float(value):.2f}"
    return str(value)


def value_text(value: float | int | None) -> str:
    """A value as the pages' ``data-value`` attributes hold it: 0.5455, 138, or empty."""
    if value is None:
        return ""
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def bucket_json(found: Figures, settings: ServiceLevelSettings) -> dict[str, Any]:
    """One bucket (or the total) as the API returns it and the CSV writes it."""
    out: dict[str, Any] = {"start": found.start.isoformat(), "end": found.end.isoformat()}
    out.update({key: getattr(found, key) for key in COUNTS})
    out.update({key: rounded(key, getattr(found, key)) for key in VALUES})
    out["below_target"] = below_target(found, settings)
    return out


def targets_json(settings: ServiceLevelSettings) -> dict[str, Any]:
    return {"answer_within_s": settings.answer_within_s,
            "short_abandon_s": settings.short_abandon_s,
            **{f.key: float(t) for f in FIGURES if (t := target_of(f, settings)) is not None}}


def figures_json(found: Figures, settings: ServiceLevelSettings) -> dict[str, Any]:
    """The figures with how each is shown and whether it falls short: the wallboard's."""
    below = set(below_target(found, settings))
    shown = []
    for figure in FIGURES:
        value = getattr(found, figure.key)
        target = target_of(figure, settings)
        shown_value = rounded(figure.key, value)
        shown.append({"key": figure.key, "label": f"{figure.zh} {figure_label(figure, settings)}",
                      "value": shown_value, "value_text": value_text(shown_value),
                      "display": display(figure, value),
                      "target": float(target) if target is not None else None,
                      "target_display": display(figure, target) if target is not None else None,
                      "below_target": figure.key in below})
    return {"figures": shown, **bucket_json(found, settings)}
