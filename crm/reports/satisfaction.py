"""What supervisors read: satisfaction aggregations and the drill-down lists behind them.

Every function takes a :class:`ReportFilter` (a local date range, and optionally an agent,
a department, a case category, a survey kind, a score range...). Days are calendar days in
the hotline's time zone. Aggregations read only the columns they need and add up in Python,
which keeps them the same on SQLite and PostgreSQL; a range is at most ``MAX_RANGE_DAYS``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crm.errors import InvalidInput
from crm.i18n.phrases import N_, Label, Labels, Phrase
from crm.storage.db import SessionFactory
from crm.storage.models import (
    Agent,
    Case,
    CaseCategory,
    Consultation,
    ConsultationCase,
    ConsultationStep,
    Department,
)
from crm.storage.survey_models import SURVEY_KINDS, SurveyResult, SurveyResultCase
from crm.surveys.service import LOW_SCORE

DEFAULT_DAYS = 30
MAX_RANGE_DAYS = 366
PAGE_SIZE = 100
EXPORT_LIMIT = 10_000
SCORES = (1, 2, 3, 4, 5)
OUTCOMES = ("ivr_completed", "to_agent", "ivr_fallback", "caller_hung_up", "abandoned")
_CODE = re.compile(r"[a-z0-9_-]{1,32}")
LOGIN_PATTERN = re.compile(r"[a-z][a-z0-9._-]{1,63}")
_PHONE = re.compile(r"\+?[0-9]{3,20}")
UNKNOWN = N_("Unknown")
"""The name of a group without one (no agent, department or category: key ""); pages
translate it."""


# -- filters ------------------------------------------------------------------------------------
def _date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(Phrase("{field}={value} is not a date (YYYY-MM-DD)",
                                  {"field": Label("field", name), "value": repr(value)})) from None


def checked_text(value: str | None, pattern: re.Pattern[str], name: str) -> str | None:
    if not value:
        return None
    if not pattern.fullmatch(value):
        raise InvalidInput(Phrase("{field}={value} is not valid",
                                  {"field": Label("field", name), "value": repr(value)}))
    return value


def _score(value: str | None, name: str) -> int | None:
    if not value:
        return None
    if value not in {str(s) for s in SCORES}:
        raise InvalidInput(Phrase("{field} must be a score from 1 to 5",
                                  {"field": Label("field", name)}))
    return int(value)


def page_number(value: str | None) -> int:
    if not value:
        return 1
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 10_000:
        raise InvalidInput(Phrase("{field} must be a whole number from 1",
                                  {"field": Label("field", "page")}))
    return int(value)


@dataclass(frozen=True)
class ReportFilter:
    """What a supervisor narrowed a report or list to. ``since`` and ``until`` are local
    calendar days, both included."""

    since: date
    until: date
    agent: str | None = None
    department: str | None = None
    category: str | None = None
    kind: str | None = None
    min_score: int | None = None
    max_score: int | None = None
    outcome: str | None = None
    phone: str | None = None
    page: int = 1

    FIELDS = ("since", "until", "agent", "department", "category", "kind", "min_score",
              "max_score", "outcome", "phone")

    @classmethod
    def from_query(cls, query: Mapping[str, str], *, today: date,
                   default_days: int = DEFAULT_DAYS) -> ReportFilter:
        """From a page's query string; empty values mean "any". Raises InvalidInput."""
        until = _date(query["until"], "until") if query.get("until") else today
        since = (_date(query["since"], "since") if query.get("since")
                 else until - timedelta(days=default_days - 1))
        if since > until:
            raise InvalidInput(Phrase("{since} must not be after {until}",
                                      {"since": Label("field", "since"),
                                       "until": Label("field", "until")}))
        if (until - since).days >= MAX_RANGE_DAYS:
            raise InvalidInput(Phrase("a range is at most {max} days", {"max": MAX_RANGE_DAYS}))
        kind = query.get("kind") or None
        if kind is not None and kind not in SURVEY_KINDS:
            raise InvalidInput(Phrase("{field} must be one of {kinds}",
                                      {"field": Label("field", "kind"),
                                       "kinds": Labels("survey_kind", tuple(SURVEY_KINDS))}))
        outcome = query.get("outcome") or None
        if outcome is not None and outcome not in OUTCOMES:
            raise InvalidInput(Phrase("{field} must be one of {outcomes}",
                                      {"field": Label("field", "outcome"),
                                       "outcomes": Labels("outcome", OUTCOMES)}))
        found = cls(since, until,
                    agent=checked_text(query.get("agent"), LOGIN_PATTERN, "agent"),
                    department=checked_text(query.get("department"), _CODE, "department"),
                    category=checked_text(query.get("category"), _CODE, "category"),
                    kind=kind,
                    min_score=_score(query.get("min_score"), "min_score"),
                    max_score=_score(query.get("max_score"), "max_score"),
                    outcome=outcome,
                    phone=checked_text(query.get("phone"), _PHONE, "phone"),
                    page=page_number(query.get("page")))
        if found.min_score and found.max_score and found.min_score > found.max_score:
            raise InvalidInput(Phrase("{min} must not be above {max}",
                                      {"min": Label("field", "min_score"),
                                       "max": Label("field", "max_score")}))
        return found

    def query(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (for links, the CSV export, the next page)."""
        values = replace(self, **changes) if changes else self
        params = {name: str(getattr(values, name)) for name in self.FIELDS
                  if getattr(values, name) not in (None, "")}
        if values.page > 1:
            params["page"] = str(values.page)
        return params

    def bounds(self, tz: tzinfo) -> tuple[datetime, datetime]:
        start = datetime.combine(self.since, time(0), tz).astimezone(UTC)
        end = datetime.combine(self.until + timedelta(days=1), time(0), tz).astimezone(UTC)
        return start, end

    def days(self) -> list[date]:
        return [self.since + timedelta(days=n) for n in range((self.until - self.since).days + 1)]


def _surveys_where(query: Select[Any], f: ReportFilter, tz: tzinfo) -> Select[Any]:
    start, end = f.bounds(tz)
    query = query.where(SurveyResult.started_at >= start, SurveyResult.started_at < end)
    if f.agent:
        query = query.where(SurveyResult.agent_id.in_(
            select(Agent.id).where(Agent.login == f.agent)))
    if f.department:
        query = query.where(SurveyResult.department_id.in_(
            select(Department.id).where(Department.code == f.department)))
    if f.category:
        query = query.where(exists(
            select(SurveyResultCase.case_id)
            .join(Case, Case.id == SurveyResultCase.case_id)
            .join(CaseCategory, CaseCategory.id == Case.category_id)
            .where(SurveyResultCase.survey_id == SurveyResult.id,
                   CaseCategory.code == f.category)))
    if f.kind:
        query = query.where(SurveyResult.kind == f.kind)
    if f.min_score is not None:
        query = query.where(SurveyResult.score >= f.min_score)
    if f.max_score is not None:
        query = query.where(SurveyResult.score <= f.max_score)
    if f.phone:
        query = query.where(SurveyResult.phone == f.phone)
    return query


# -- the satisfaction report --------------------------------------------------------------------
@dataclass(frozen=True)
class GroupStat:
    key: str
    label: str
    count: int
    average: float
    low: int
    """Scores at or below LOW_SCORE."""


@dataclass(frozen=True)
class DayStat:
    day: date
    count: int
    average: float | None


@dataclass(frozen=True)
class SatisfactionReport:
    filter: ReportFilter
    offered: int
    """Surveys offered in the range (rated or not)."""
    rated: int
    average: float | None
    low: int
    trend: tuple[DayStat, ...]
    """Every day of the range, in order (count 0 and no average on days without scores)."""
    distribution: dict[int, int]
    per_agent: tuple[GroupStat, ...]
    per_department: tuple[GroupStat, ...]
    per_category: tuple[GroupStat, ...]

    @property
    def response_rate(self) -> float | None:
        return round(self.rated / self.offered, 3) if self.offered else None


@dataclass
class _Acc:
    label: str
    scores: list[int] = field(default_factory=list)

    def stat(self, key: str) -> GroupStat:
        return GroupStat(key, self.label, len(self.scores), _avg(self.scores),
                         sum(1 for s in self.scores if s <= LOW_SCORE))


def _avg(scores: list[int]) -> float:
    return round(sum(scores) / len(scores), 2) if scores else 0.0


def _groups(accs: dict[str, _Acc]) -> tuple[GroupStat, ...]:
    """Busiest first, then by name, so the chart reads from what matters most."""
    stats = [acc.stat(key) for key, acc in accs.items()]
    return tuple(sorted(stats, key=lambda s: (-s.count, s.label, s.key)))


async def satisfaction_report(sessions: SessionFactory, f: ReportFilter,
                              tz: tzinfo) -> SatisfactionReport:
    """Scores in the range: trend by day, distribution, per agent, department and category."""
    rows_query = _surveys_where(
        select(SurveyResult.id, SurveyResult.started_at, SurveyResult.score,
               Agent.login, Agent.display_name, Department.code, Department.name)
        .outerjoin(Agent, Agent.id == SurveyResult.agent_id)
        .outerjoin(Department, Department.id == SurveyResult.department_id)
        .where(SurveyResult.outcome == "rated", SurveyResult.score.is_not(None)), f, tz)
    offered_query = _surveys_where(select(func.count(SurveyResult.id)), f, tz)
    async with sessions() as session:
        rows = (await session.execute(rows_query)).all()
        offered = await session.scalar(offered_query) or 0
        ids = [r.id for r in rows]
        categories: dict[int, set[tuple[str, str]]] = defaultdict(set)
        for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
            found = await session.execute(
                select(SurveyResultCase.survey_id, CaseCategory.code, CaseCategory.name)
                .join(Case, Case.id == SurveyResultCase.case_id)
                .join(CaseCategory, CaseCategory.id == Case.category_id)
                .where(SurveyResultCase.survey_id.in_(chunk)))
            for survey_id, code, name in found:
                categories[survey_id].add((code, name))
    by_day: dict[date, list[int]] = defaultdict(list)
    distribution = dict.fromkeys(SCORES, 0)
    agents: dict[str, _Acc] = {}
    departments: dict[str, _Acc] = {}
    per_category: dict[str, _Acc] = {}
    scores: list[int] = []
    for r in rows:
        score = int(r.score)
        scores.append(score)
        by_day[r.started_at.astimezone(tz).date()].append(score)
        distribution[score] = distribution.get(score, 0) + 1
        agents.setdefault(r.login or "", _Acc(r.display_name or UNKNOWN)).scores.append(score)
        departments.setdefault(r.code or "", _Acc(r.name or UNKNOWN)).scores.append(score)
        for code, name in categories.get(r.id) or {("", UNKNOWN)}:
            per_category.setdefault(code, _Acc(name)).scores.append(score)
    trend = tuple(DayStat(day, len(by_day.get(day, [])),
                          _avg(by_day[day]) if by_day.get(day) else None) for day in f.days())
    return SatisfactionReport(
        f, offered, len(scores), _avg(scores) if scores else None,
        sum(1 for s in scores if s <= LOW_SCORE), trend, distribution, _groups(agents),
        _groups(departments), _groups(per_category))


# -- drill-down: surveys ------------------------------------------------------------------------
@dataclass(frozen=True)
class SurveyRow:
    id: int
    started_at: datetime
    kind: str
    outcome: str
    score: int | None
    rated_by: str | None
    phone: str | None
    language: str | None
    agent_login: str | None
    agent_name: str | None
    department: str | None
    categories: tuple[str, ...]
    case_numbers: tuple[str, ...]
    consultation_id: int | None
    follow_up_id: int | None
    follow_up_status: str | None
    comment_text: str | None
    comment_seconds: float | None


CSV_SURVEY_COLUMNS = ("id", "started_at", "kind", "outcome", "score", "rated_by", "phone",
                      "language", "agent_login", "agent_name", "department", "categories",
                      "case_numbers", "consultation_id", "follow_up_status", "comment_text")


async def list_surveys(sessions: SessionFactory, f: ReportFilter, tz: tzinfo, *,
                       limit: int = PAGE_SIZE) -> list[SurveyRow]:
    """Newest first, page ``f.page`` of ``limit``."""
    query = _surveys_where(
        select(SurveyResult).options(
            selectinload(SurveyResult.agent), selectinload(SurveyResult.department),
            selectinload(SurveyResult.cases).selectinload(Case.category),
            selectinload(SurveyResult.follow_up)),
        f, tz).order_by(SurveyResult.started_at.desc(), SurveyResult.id.desc())
    query = query.limit(limit).offset((f.page - 1) * limit)
    async with sessions() as session:
        found = (await session.scalars(query)).all()
        return [SurveyRow(
            s.id, s.started_at.astimezone(tz), s.kind, s.outcome, s.score, s.rated_by, s.phone,
            s.language, s.agent.login if s.agent else None,
            s.agent.display_name if s.agent else None,
            s.department.name if s.department else None,
            tuple(sorted({c.category.name for c in s.cases})),
            tuple(c.number for c in s.cases), s.consultation_id,
            s.follow_up.id if s.follow_up else None,
            s.follow_up.status if s.follow_up else None, s.comment_text, s.comment_seconds)
            for s in found]


# -- drill-down: consultations ------------------------------------------------------------------
@dataclass(frozen=True)
class ConsultationRow:
    id: int
    call_id: str
    started_at: datetime | None
    caller_number: str | None
    caller_name: str | None
    duration_s: float | None
    outcome: str | None
    disposition: str | None
    agent_login: str | None
    agent_name: str | None
    case_numbers: tuple[str, ...]
    scores: tuple[int, ...]
    recorded: bool


CSV_CONSULTATION_COLUMNS = ("id", "call_id", "started_at", "caller_number", "caller_name",
                            "duration_s", "outcome", "disposition", "agent_login", "agent_name",
                            "case_numbers", "scores", "recorded")


def _consultations_where(query: Select[Any], f: ReportFilter, tz: tzinfo) -> Select[Any]:
    start, end = f.bounds(tz)
    query = query.where(Consultation.started_at >= start, Consultation.started_at < end)
    if f.agent:
        query = query.where(Consultation.agent_id.in_(
            select(Agent.id).where(Agent.login == f.agent)))
    if f.department:
        query = query.where(exists(
            select(ConsultationCase.case_id)
            .join(Case, Case.id == ConsultationCase.case_id)
            .join(Department, Department.id == Case.department_id)
            .where(ConsultationCase.consultation_id == Consultation.id,
                   Department.code == f.department)))
    if f.category:
        query = query.where(exists(
            select(ConsultationCase.case_id)
            .join(Case, Case.id == ConsultationCase.case_id)
            .join(CaseCategory, CaseCategory.id == Case.category_id)
            .where(ConsultationCase.consultation_id == Consultation.id,
                   CaseCategory.code == f.category)))
    if f.min_score is not None or f.max_score is not None or f.kind:
        survey = select(SurveyResult.id).where(SurveyResult.consultation_id == Consultation.id)
        if f.min_score is not None:
            survey = survey.where(SurveyResult.score >= f.min_score)
        if f.max_score is not None:
            survey = survey.where(SurveyResult.score <= f.max_score)
        if f.kind:
            survey = survey.where(SurveyResult.kind == f.kind)
        query = query.where(exists(survey))
    if f.outcome:
        query = query.where(Consultation.outcome == f.outcome)
    if f.phone:
        query = query.where(Consultation.caller_number == f.phone)
    return query


async def list_consultations(sessions: SessionFactory, f: ReportFilter, tz: tzinfo, *,
                             limit: int = PAGE_SIZE) -> list[ConsultationRow]:
    """Newest first, page ``f.page`` of ``limit``, with their survey scores."""
    query = _consultations_where(select(Consultation), f, tz)
    query = (query.order_by(Consultation.started_at.desc(), Consultation.id.desc())
             .limit(limit).offset((f.page - 1) * limit))
    async with sessions() as session:
        return await consultation_rows(session, query, tz)


async def consultation_rows(session: AsyncSession, query: Select[Any],
                             tz: tzinfo) -> list[ConsultationRow]:
    found = (await session.scalars(query.options(selectinload(Consultation.agent),
                                                 selectinload(Consultation.cases)))).all()
    ids = [c.id for c in found]
    scores: dict[int, list[int]] = defaultdict(list)
    recorded: set[int] = set()
    if ids:
        for consultation_id, score in await session.execute(
                select(SurveyResult.consultation_id, SurveyResult.score)
                .where(SurveyResult.consultation_id.in_(ids), SurveyResult.score.is_not(None))
                .order_by(SurveyResult.id)):
            scores[consultation_id].append(score)
        recorded = set((await session.scalars(
            select(ConsultationStep.consultation_id).where(
                ConsultationStep.consultation_id.in_(ids),
                ConsultationStep.kind == "recording"))).all())
    return [ConsultationRow(
        c.id, c.call_id, c.started_at.astimezone(tz) if c.started_at else None,
        c.caller_number, c.caller_name, c.duration_s, c.outcome, c.disposition,
        c.agent.login if c.agent else None, c.agent.display_name if c.agent else None,
        tuple(x.number for x in c.cases), tuple(scores.get(c.id, ())), c.id in recorded)
        for c in found]


# -- choices for the filter forms ---------------------------------------------------------------
@dataclass(frozen=True)
class FilterChoices:
    agents: tuple[tuple[str, str], ...]
    departments: tuple[tuple[str, str], ...]
    categories: tuple[tuple[str, str], ...]
    assignees: tuple[tuple[str, str], ...]
    """Who a follow-up item can be given to: active supervisors and admins."""


async def filter_choices(sessions: SessionFactory) -> FilterChoices:
    async with sessions() as session:
        agents = (await session.execute(
            select(Agent.login, Agent.display_name, Agent.role, Agent.active)
            .order_by(Agent.login))).all()
        departments = (await session.execute(
            select(Department.code, Department.name).order_by(Department.code))).all()
        categories = (await session.execute(
            select(CaseCategory.code, CaseCategory.name).order_by(CaseCategory.code))).all()
    return FilterChoices(
        tuple((a.login, a.display_name) for a in agents),
        tuple((d.code, d.name) for d in departments),
        tuple((c.code, c.name) for c in categories),
        tuple((a.login, a.display_name) for a in agents
              if a.active and a.role in ("supervisor", "admin")))


async def consultations_of_surveys(sessions: SessionFactory,
                                   survey_ids: list[int]) -> dict[int, int]:
    """survey id -> its consultation id, for the surveys that have one."""
    if not survey_ids:
        return {}
    async with sessions() as session:
        rows = await session.execute(
            select(SurveyResult.id, SurveyResult.consultation_id)
            .where(SurveyResult.id.in_(survey_ids), SurveyResult.consultation_id.is_not(None)))
        return {survey_id: consultation_id for survey_id, consultation_id in rows}
