"""The pure counting: calls, surveys and callback requests added up into one
:class:`Figures` (:func:`figures`), and a :class:`Period` cut into hours or days, each
bucket with its figures (:func:`report`). Rates and averages are exact fractions here.

A call belongs to the bucket its consultation started in; a survey to the one it started in;
a callback request to the one it was created in. Days and hours are the hotline's local ones.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from fractions import Fraction
from itertools import pairwise
from typing import Any, Literal

from crm.errors import InvalidInput
from crm.i18n.phrases import Label, Labels, Phrase
from crm.reports.service_levels.calls import CallbackRow, CallFacts, Rows, SurveyRow, classify
from crm.settings import ServiceLevelSettings

Bucket = Literal["hour", "day"]
BUCKETS: tuple[Bucket, ...] = ("hour", "day")
MAX_DAYS: dict[str, int] = {"day": 366, "hour": 31}
"""The longest period one request may ask for, per bucket."""
DEFAULT_DAYS: dict[str, int] = {"day": 30, "hour": 1}
SATISFIED_SCORES = frozenset({4, 5})
"""满意 (4) and 非常满意 (5) on the survey's 1..5 scale (ivr.flows.survey)."""
OPEN_CALLBACK = frozenset({"pending", "dialling"})
NOT_OWED_CALLBACK = frozenset({"cancelled", "closed_by_call_in"})
"""Requests that left the count of callbacks owed: a supervisor cancelled them, or the
resident called in before we reached them."""

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
        raise InvalidInput(Phrase("{field}={value} is not a date (YYYY-MM-DD)",
                                  {"field": Label("field", name), "value": repr(value)})) from None


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
            raise InvalidInput(Phrase("{field} must be one of {buckets}, not {bucket}",
                                      {"field": Label("field", "bucket"),
                                       "buckets": Labels("period_bucket", tuple(BUCKETS)),
                                       "bucket": repr(bucket)}))
        until = _day(query["to"], "to") if query.get("to") else today
        since = (_day(query["from"], "from") if query.get("from")
                 else until - timedelta(days=DEFAULT_DAYS[bucket] - 1))
        if since > until:
            raise InvalidInput(Phrase("{since} must not be after {until}",
                                      {"since": Label("field", "from"),
                                       "until": Label("field", "to")}))
        if (until - since).days >= MAX_DAYS[bucket]:
            raise InvalidInput(Phrase("with {field}={bucket} a period is at most {max} days",
                                      {"field": Label("field", "bucket"),
                                       "bucket": Label("period_bucket", bucket),
                                       "max": MAX_DAYS[bucket]}))
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

