"""Satisfaction surveys: who may be asked, what they answered, and what follows from it.

The IVR calls these as a survey runs: ``start_survey`` when the survey leg connects (it
links the consultation, the agent, the cases and the handling department), ``record_rating``
for the score, ``record_comment`` / ``record_transcript`` for the spoken comment, and
``finish_survey`` when the leg ends (no score by then: ``no_answer``). A score <= 2 opens a
follow-up item (assign it, close it with a note). A return visit's score closes the case
(>= 3) or reopens it for a follow-up (<= 2).

Fatigue: a phone that was offered any survey within ``fatigue_days`` is not asked again
after an agent call. Return visits are part of closing a case and are not subject to it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crm.audit import log as audit
from crm.cases.service import update_case
from crm.errors import Conflict, HotlineError, InvalidInput, NotFound
from crm.i18n.phrases import Phrase
from crm.storage.db import SessionFactory
from crm.storage.models import Agent, Case, Consultation, ConsultationCase, ConsultationStep, utcnow
from crm.storage.survey_models import (
    SURVEY_KINDS,
    ReturnVisit,
    SurveyFollowUp,
    SurveyResult,
    SurveyResultCase,
)
from crm.surveys.return_visits import RetryPolicy, record_attempt

log = logging.getLogger(__name__)

LOW_SCORE = 2
"""Scores at or below this open a follow-up item (and reopen a return-visited case)."""
RETURN_VISIT_ACTOR = "survey:return-visit"
_EXTENSION = re.compile(r"^(?:PJSIP|SIP|IAX2|Local)/([0-9]{2,16})\b")


class SurveyNotFound(NotFound):
    code = "survey_not_found"


class FollowUpNotFound(NotFound):
    code = "follow_up_not_found"


class FollowUpClosed(Conflict):
    code = "follow_up_closed"


def extension_of(interface: str | None) -> str | None:
    """The desk phone of a queue member interface: PJSIP/2001, Local/2001@hotline-agents/n."""
    match = _EXTENSION.match(interface or "")
    return match.group(1) if match else None


# -- views ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SurveyView:
    id: int
    kind: str
    survey_call_id: str
    call_id: str | None
    phone: str | None
    language: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    score: int | None
    rated_by: str | None
    comment_path: str | None
    comment_seconds: float | None
    comment_text: str | None
    consultation_id: int | None
    agent_login: str | None
    agent_interface: str | None
    department_code: str | None
    case_numbers: tuple[str, ...]
    return_visit_id: int | None
    follow_up_id: int | None
    follow_up_status: str | None

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        data["case_numbers"] = list(self.case_numbers)
        return data


@dataclass(frozen=True)
class FollowUpView:
    id: int
    survey_id: int
    score: int | None
    phone: str | None
    case_numbers: tuple[str, ...]
    agent_login: str | None
    """The agent whose call was rated."""
    created_at: datetime
    status: str
    assignee_login: str | None
    assigned_at: datetime | None
    assigned_by: str | None
    closed_at: datetime | None
    closed_by: str | None
    note: str | None

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("created_at", "assigned_at", "closed_at"):
            data[key] = data[key].isoformat() if data[key] else None
        data["case_numbers"] = list(self.case_numbers)
        return data


def _survey_view(s: SurveyResult) -> SurveyView:
    return SurveyView(
        id=s.id, kind=s.kind, survey_call_id=s.survey_call_id, call_id=s.call_id,
        phone=s.phone, language=s.language, started_at=s.started_at,
        finished_at=s.finished_at, outcome=s.outcome, score=s.score, rated_by=s.rated_by,
        comment_path=s.comment_path, comment_seconds=s.comment_seconds,
        comment_text=s.comment_text, consultation_id=s.consultation_id,
        agent_login=s.agent.login if s.agent else None, agent_interface=s.agent_interface,
        department_code=s.department.code if s.department else None,
        case_numbers=tuple(c.number for c in s.cases), return_visit_id=s.return_visit_id,
        follow_up_id=s.follow_up.id if s.follow_up else None,
        follow_up_status=s.follow_up.status if s.follow_up else None)


def _follow_up_view(f: SurveyFollowUp) -> FollowUpView:
    s = f.survey
    return FollowUpView(
        id=f.id, survey_id=s.id, score=s.score, phone=s.phone,
        case_numbers=tuple(c.number for c in s.cases),
        agent_login=s.agent.login if s.agent else None, created_at=f.created_at,
        status=f.status, assignee_login=f.assignee.login if f.assignee else None,
        assigned_at=f.assigned_at, assigned_by=f.assigned_by, closed_at=f.closed_at,
        closed_by=f.closed_by, note=f.note)


def _survey_options() -> tuple[Any, ...]:
    return (selectinload(SurveyResult.agent), selectinload(SurveyResult.department),
            selectinload(SurveyResult.cases), selectinload(SurveyResult.follow_up))


async def _load(session: AsyncSession, survey_id: int) -> SurveyResult:
    survey = await session.scalar(select(SurveyResult).where(SurveyResult.id == survey_id)
                                  .options(*_survey_options())
                                  .execution_options(populate_existing=True))
    if survey is None:
        raise SurveyNotFound(Phrase("no survey {id}", {"id": survey_id}))
    return survey


async def get_survey(sessions: SessionFactory, survey_id: int) -> SurveyView:
    async with sessions() as session:
        return _survey_view(await _load(session, survey_id))


async def list_surveys(sessions: SessionFactory, *, call_id: str | None = None,
                       phone: str | None = None, return_visit_id: int | None = None,
                       limit: int = 50) -> list[SurveyView]:
    """Newest first."""
    query = (select(SurveyResult).options(*_survey_options())
             .order_by(SurveyResult.started_at.desc(), SurveyResult.id.desc()).limit(limit))
    if call_id:
        query = query.where(SurveyResult.call_id == call_id)
    if phone:
        query = query.where(SurveyResult.phone == phone)
    if return_visit_id is not None:
        query = query.where(SurveyResult.return_visit_id == return_visit_id)
    async with sessions() as session:
        return [_survey_view(s) for s in (await session.scalars(query)).all()]


# -- the survey as it runs ----------------------------------------------------------------------
async def surveyed_recently(sessions: SessionFactory, phone: str | None, *, days: int,
                            now: datetime | None = None) -> bool:
    """True if ``phone`` was offered a survey (any kind, answered or not) in ``days`` days."""
    if not phone or days <= 0:
        return False
    since = (now or utcnow()) - timedelta(days=days)
    async with sessions() as session:
        found = await session.scalar(select(SurveyResult.id).where(
            SurveyResult.phone == phone, SurveyResult.started_at >= since).limit(1))
    return found is not None


async def call_language(sessions: SessionFactory, call_id: str | None) -> str | None:
    """The language the caller last heard prompts in during ``call_id`` (from its steps)."""
    if not call_id:
        return None
    async with sessions() as session:
        details = (await session.scalars(
            select(ConsultationStep.detail).join(Consultation)
            .where(Consultation.call_id == call_id,
                   ConsultationStep.kind.in_(("prompt", "language")))
            .order_by(ConsultationStep.id.desc()).limit(20))).all()
    for detail in details:
        if isinstance(detail, dict) and isinstance(detail.get("language"), str):
            return detail["language"]
    return None


async def _link(session: AsyncSession, survey: SurveyResult) -> None:
    """Link the consultation, its agent and cases (or the visited case) and the department.
    Run at the start and again with the score: agents link cases during the call."""
    case_ids: list[int] = []
    if survey.call_id:
        consultation = await session.scalar(
            select(Consultation).where(Consultation.call_id == survey.call_id))
        if consultation is not None:
            survey.consultation_id = consultation.id
            if consultation.agent_id is not None:
                survey.agent_id = consultation.agent_id
            case_ids = list((await session.scalars(
                select(ConsultationCase.case_id)
                .where(ConsultationCase.consultation_id == consultation.id)
                .order_by(ConsultationCase.linked_at, ConsultationCase.case_id))).all())
    if survey.agent_id is None and (extension := extension_of(survey.agent_interface)):
        survey.agent_id = await session.scalar(select(Agent.id).where(
            Agent.extension == extension))
    if survey.return_visit_id is not None:
        visit_case = await session.scalar(select(ReturnVisit.case_id).where(
            ReturnVisit.id == survey.return_visit_id))
        if visit_case is not None and visit_case not in case_ids:
            case_ids.insert(0, visit_case)
    linked = set((await session.scalars(select(SurveyResultCase.case_id).where(
        SurveyResultCase.survey_id == survey.id))).all())
    for case_id in case_ids:
        if case_id not in linked:
            session.add(SurveyResultCase(survey_id=survey.id, case_id=case_id))
    if case_ids and survey.department_id is None:
        survey.department_id = await session.scalar(select(Case.department_id).where(
            Case.id == case_ids[0]))


async def start_survey(sessions: SessionFactory, *, kind: str, survey_call_id: str,
                       call_id: str | None = None, phone: str | None = None,
                       language: str | None = None, agent_interface: str | None = None,
                       return_visit_id: int | None = None,
                       now: datetime | None = None) -> SurveyView:
    if kind not in SURVEY_KINDS:
        raise InvalidInput(Phrase("unknown survey kind {kind}", {"kind": repr(kind)}))
    async with sessions() as session, session.begin():
        if return_visit_id is not None:
            visit = await session.get(ReturnVisit, return_visit_id)
            if visit is None:
                raise NotFound(Phrase("no return visit {id}", {"id": return_visit_id}))
            phone = phone or visit.phone
            language = language or visit.language
        survey = SurveyResult(kind=kind, survey_call_id=survey_call_id, call_id=call_id,
                              phone=phone, language=language, started_at=now or utcnow(),
                              outcome="in_progress", agent_interface=agent_interface,
                              return_visit_id=return_visit_id)
        session.add(survey)
        await session.flush()
        await _link(session, survey)
        survey_id = survey.id
    log.info("survey %d (%s) started for call %s", survey_id, kind, call_id or survey_call_id)
    return await get_survey(sessions, survey_id)


async def record_rating(sessions: SessionFactory, survey_id: int, score: int, *, by: str,
                        now: datetime | None = None) -> SurveyView:
    """The caller's score (1..5). A low score opens a follow-up; on a return visit the case
    is closed (>= 3) or reopened for a follow-up (<= 2)."""
    if not 1 <= score <= 5:
        raise InvalidInput(Phrase("a score is 1..5, not {score}", {"score": score}))
    now = now or utcnow()
    async with sessions() as session, session.begin():
        survey = await _load(session, survey_id)
        survey.score, survey.rated_by, survey.outcome = score, by, "rated"
        await _link(session, survey)
        if score <= LOW_SCORE and survey.follow_up is None:
            session.add(SurveyFollowUp(survey_id=survey.id, created_at=now, status="open"))
        visit = (await session.get(ReturnVisit, survey.return_visit_id)
                 if survey.return_visit_id is not None else None)
        case_number = None
        if visit is not None:
            visit.status, visit.last_outcome, visit.updated_at = "completed", "rated", now
            visit.next_attempt_at = None
            case_number = await session.scalar(select(Case.number).where(
                Case.id == visit.case_id))
    log.info("survey %d: score %d by %s", survey_id, score, by)
    if case_number is not None:
        await _conclude_case(sessions, case_number, score)
    return await get_survey(sessions, survey_id)


async def _conclude_case(sessions: SessionFactory, number: str, score: int) -> None:
    if score > LOW_SCORE:
        stage, note = "closed", f"closed after return visit: satisfaction {score}/5"
    else:
        stage, note = "in_progress", f"follow-up after return visit: satisfaction {score}/5"
    try:
        await update_case(sessions, number, actor=RETURN_VISIT_ACTOR, stage=stage, note=note)
    except HotlineError as exc:  # someone moved the case meanwhile: the score is kept
        log.warning("case %s not moved to %s after the return visit: %s", number, stage, exc)


async def record_comment(sessions: SessionFactory, survey_id: int, *, path: str,
                         seconds: float) -> SurveyView:
    async with sessions() as session, session.begin():
        survey = await _load(session, survey_id)
        survey.comment_path, survey.comment_seconds = path, round(seconds, 2)
    return await get_survey(sessions, survey_id)


async def record_transcript(sessions: SessionFactory, survey_id: int, text: str) -> SurveyView:
    async with sessions() as session, session.begin():
        survey = await _load(session, survey_id)
        survey.comment_text = text[:4000]
    return await get_survey(sessions, survey_id)


async def finish_survey(sessions: SessionFactory, survey_id: int, *,
                        policy: RetryPolicy | None = None,
                        now: datetime | None = None) -> SurveyView:
    """The survey leg ended. Without a score it counts as ``no_answer``; an unrated return
    visit is retried (``no_rating``) under ``policy``."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        survey = await _load(session, survey_id)
        survey.finished_at = now
        if survey.outcome == "in_progress":
            survey.outcome = "no_answer"
        retry = (survey.return_visit_id, survey.survey_call_id) if (
            survey.outcome != "rated" and survey.return_visit_id is not None) else None
    if retry is not None:
        await record_attempt(sessions, retry[0], "no_rating", policy=policy or RetryPolicy(),
                             survey_call_id=retry[1], detail="answered, no rating", now=now)
    return await get_survey(sessions, survey_id)


# -- follow-up items ------------------------------------------------------------------------
def _follow_up_options() -> tuple[Any, ...]:
    return (selectinload(SurveyFollowUp.assignee),
            selectinload(SurveyFollowUp.survey).selectinload(SurveyResult.cases),
            selectinload(SurveyFollowUp.survey).selectinload(SurveyResult.agent))


async def _load_follow_up(session: AsyncSession, follow_up_id: int) -> SurveyFollowUp:
    item = await session.scalar(select(SurveyFollowUp).where(SurveyFollowUp.id == follow_up_id)
                                .options(*_follow_up_options())
                                .execution_options(populate_existing=True))
    if item is None:
        raise FollowUpNotFound(Phrase("no follow-up item {id}", {"id": follow_up_id}))
    return item


async def get_follow_up(sessions: SessionFactory, follow_up_id: int) -> FollowUpView:
    async with sessions() as session:
        return _follow_up_view(await _load_follow_up(session, follow_up_id))


async def list_follow_ups(sessions: SessionFactory, *, status: str | None = "open",
                          assignee_login: str | None = None,
                          limit: int = 100) -> list[FollowUpView]:
    """Oldest first: the longest-waiting item is the first to handle."""
    query = (select(SurveyFollowUp).options(*_follow_up_options())
             .order_by(SurveyFollowUp.created_at, SurveyFollowUp.id).limit(limit))
    if status:
        query = query.where(SurveyFollowUp.status == status)
    if assignee_login:
        query = query.join(Agent, SurveyFollowUp.assignee_id == Agent.id).where(
            Agent.login == assignee_login)
    async with sessions() as session:
        return [_follow_up_view(f) for f in (await session.scalars(query)).all()]


async def assign_follow_up(sessions: SessionFactory, follow_up_id: int, *, agent_login: str,
                           actor: str, now: datetime | None = None) -> FollowUpView:
    async with sessions() as session, session.begin():
        item = await _load_follow_up(session, follow_up_id)
        if item.status == "closed":
            raise FollowUpClosed(Phrase("follow-up item {id} is closed", {"id": follow_up_id}))
        agent = await session.scalar(select(Agent).where(Agent.login == agent_login,
                                                         Agent.active.is_(True)))
        if agent is None:
            raise NotFound(Phrase("no active agent {login}", {"login": repr(agent_login)}))
        item.assignee_id, item.assigned_at, item.assigned_by = agent.id, now or utcnow(), actor
        audit.record(session, actor=actor, action="survey_follow_up.assign",
                     object_type="survey_follow_up", object_id=follow_up_id,
                     detail={"assignee": agent_login})
    return await get_follow_up(sessions, follow_up_id)


async def close_follow_up(sessions: SessionFactory, follow_up_id: int, *, note: str,
                          actor: str, now: datetime | None = None) -> FollowUpView:
    note = (note or "").strip()
    if not note:
        raise InvalidInput(Phrase("closing a follow-up item needs a note"))
    if len(note) > 2000:
        raise InvalidInput(Phrase("note is longer than 2000 characters"))
    async with sessions() as session, session.begin():
        item = await _load_follow_up(session, follow_up_id)
        if item.status == "closed":
            raise FollowUpClosed(Phrase("follow-up item {id} is already closed",
                                        {"id": follow_up_id}))
        item.status, item.closed_at, item.closed_by, item.note = (
            "closed", now or utcnow(), actor, note)
        audit.record(session, actor=actor, action="survey_follow_up.close",
                     object_type="survey_follow_up", object_id=follow_up_id)
    return await get_follow_up(sessions, follow_up_id)
