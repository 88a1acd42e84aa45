"""Dispatch and supervision (派单、督办): what a department does with the cases sent to it,
what a supervisor rules on, the overdue and due-soon lists, reminders, and residents' urges.

The closed loop a supervisor reads, and the stage codes that hold it (kept from before, so
existing cases need no data move): accepted -> dispatched -> in handling (``in_progress``)
-> replied (``resolved``) -> return visit and rating (crm.surveys) -> closed.

A department acts only on its own cases (``department`` is the code of the department the
token or account acts for): any other case is refused exactly like a missing one
(:class:`NotDepartmentsCase`), so a department cannot probe for others' case numbers.

- accept: dispatched -> in handling.
- return with a reason: a pending request; the case stays where it is until a supervisor
  rules: ``redispatch`` (the return is granted: the case goes to another department, stage
  dispatched) or ``uphold`` (the return is refused: the dispatch stands).
- extension: a pending request for a later deadline; a supervisor grants it (the deadline
  moves) or refuses it.
- reply with the result: in handling -> replied; the result is the progress message the IVR
  reads to the caller.

Every act writes a case history entry (when the case changes) and an audit entry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.audit import log as audit
from crm.cases.service import CODE_PATTERN, OPEN_STAGES, _text, check_number
from crm.errors import Conflict, InvalidInput, NotFound, UnknownDepartment
from crm.i18n.labels import CLOSED_LOOP, english
from crm.i18n.phrases import N_, Label, Labels, Phrase
from crm.storage.db import SessionFactory
from crm.storage.dispatch_models import (
    AgentDepartment,
    CaseReminder,
    CaseUrge,
    DispatchRequest,
    TokenDepartment,
)
from crm.storage.models import Case, CaseCategory, CaseHistory, Department, utcnow

log = logging.getLogger(__name__)

STAGE_LABELS = {code: english("stage", code) for code in CLOSED_LOOP[:5]}
"""The closed loop's English names of the case's stage codes (the label table's, which pages
show in the reader's language; the API's stage_label and the errors' messages use these)."""
DUE_SOON = timedelta(hours=24)
"""A case is due soon when its deadline is closer than this."""
URGE_CHANNELS = ("ivr_keys", "ivr_speech", "desk", "api")
Ruling = Literal["redispatch", "uphold"]


class NotDepartmentsCase(NotFound):
    """The case does not exist or is another department's: the same answer for both."""

    code = "case_not_found"


class RequestNotFound(NotFound):
    code = "dispatch_request_not_found"


class RequestDecided(Conflict):
    code = "dispatch_request_decided"


class WrongStageForAct(Conflict):
    code = "invalid_transition"


@dataclass(frozen=True)
class RequestView:
    id: int
    case_number: str
    department: str
    kind: str
    reason: str
    requested_deadline: datetime | None
    status: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None

    def to_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v
                for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class SupervisedCase:
    """A line of a supervisor's list (no resident data)."""

    number: str
    stage: str
    department: str | None
    category: str
    deadline: datetime
    urges: int
    pending_requests: int

    @property
    def stage_label(self) -> str:
        return STAGE_LABELS.get(self.stage, self.stage)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "deadline": self.deadline.isoformat(),
                "stage_label": self.stage_label}


@dataclass(frozen=True)
class Reminder:
    id: int
    case_number: str
    department: str
    kind: str
    deadline: datetime
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "deadline": self.deadline.isoformat(),
                "at": self.at.isoformat()}


def _request_view(r: DispatchRequest, number: str, department: str) -> RequestView:
    return RequestView(r.id, number, department, r.kind, r.reason, r.requested_deadline,
                       r.status, r.requested_by, r.requested_at, r.decided_by, r.decided_at,
                       r.decision_note)


# -- whose case -------------------------------------------------------------------------------
async def _department(session: AsyncSession, code: str) -> Department:
    dept = (await session.scalar(select(Department).where(Department.code == code))
            if CODE_PATTERN.fullmatch(code) else None)
    if dept is None:
        raise UnknownDepartment(Phrase("unknown department {department}",
                                       {"department": repr(code)}))
    return dept


async def _departments_case(session: AsyncSession, number: str,
                            department: str | None) -> tuple[Case, Department | None]:
    """The case, when ``department`` (None: a supervisor, every case) may act on it."""
    row = (await session.execute(
        select(Case, Department).outerjoin(Department, Department.id == Case.department_id)
        .where(Case.number == check_number(number))
        .execution_options(populate_existing=True))).first()
    if row is None or (department is not None and (row[1] is None or row[1].code != department)):
        raise NotDepartmentsCase(
            Phrase("no case {number} for this department", {"number": number})
            if department is not None else Phrase("no case {number}", {"number": number}))
    return row[0], row[1]


async def check_departments_case(sessions: SessionFactory, number: str,
                                 department: str | None) -> None:
    """Raise :class:`NotDepartmentsCase` unless ``department`` may see case ``number``."""
    async with sessions() as session:
        await _departments_case(session, number, department)


async def token_department(sessions: SessionFactory, token_id: int) -> str | None:
    """The department an API token acts for (None: a hotline-wide token)."""
    async with sessions() as session:
        return await session.scalar(
            select(Department.code).join(TokenDepartment,
                                         TokenDepartment.department_id == Department.id)
            .where(TokenDepartment.token_id == token_id))


async def agent_department(sessions: SessionFactory, agent_id: int) -> str | None:
    """The department a console account acts for (None: a hotline account)."""
    async with sessions() as session:
        return await session.scalar(
            select(Department.code).join(AgentDepartment,
                                         AgentDepartment.department_id == Department.id)
            .where(AgentDepartment.agent_id == agent_id))


async def bind_token(sessions: SessionFactory, token_id: int, department: str, *,
                     actor: str) -> None:
    """Make API token ``token_id`` act for ``department`` only."""
    async with sessions() as session, session.begin():
        dept = await _department(session, department)
        await session.merge(TokenDepartment(token_id=token_id, department_id=dept.id))
        audit.record(session, actor=actor, action="token.bind_department",
                     object_type="api_token", object_id=token_id,
                     detail={"department": department})


async def bind_agent(sessions: SessionFactory, agent_id: int, department: str, *,
                     actor: str) -> None:
    """Make console account ``agent_id`` act for ``department`` only."""
    async with sessions() as session, session.begin():
        dept = await _department(session, department)
        await session.merge(AgentDepartment(agent_id=agent_id, department_id=dept.id))
        audit.record(session, actor=actor, action="agent.bind_department",
                     object_type="agent", object_id=agent_id,
                     detail={"department": department})


# -- moving a case ----------------------------------------------------------------------------
async def _move(session: AsyncSession, case: Case, *, actor: str, at: datetime,
                stage: str | None = None, department: Department | None = None,
                deadline: datetime | None = None, latest_update: str | None = None,
                note: str | None = None, from_department: Department | None = None) -> None:
    """Change the case if nobody changed its stage or department meanwhile (compare-and-set),
    with one history entry."""
    values: dict[str, Any] = {"updated_at": at}
    entry = CaseHistory(case_id=case.id, at=at, actor=actor, note=note)
    if stage is not None and stage != case.stage:
        values["stage"] = entry.to_stage = stage
        entry.from_stage = case.stage
    if department is not None and department.id != case.department_id:
        values["department_id"] = department.id
        entry.from_department = from_department.code if from_department else None
        entry.to_department = department.code
    if deadline is not None:
        values["deadline"] = deadline
    if latest_update is not None:
        values["latest_update"] = entry.latest_update = latest_update
    unchanged_dept = (Case.department_id.is_(None) if case.department_id is None
                      else Case.department_id == case.department_id)
    result = await session.execute(
        update(Case).where(Case.id == case.id, Case.stage == case.stage, unchanged_dept)
        .values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(Phrase("case {number} changed meanwhile; look again",
                              {"number": case.number}))
    session.add(entry)


IN_SENTENCE = {"accepted": N_("accepted"), "dispatched": N_("dispatched"),
               "in_progress": N_("in handling"), "resolved": N_("replied"),
               "closed": N_("closed")}
"""A stage's name inside an English sentence ("case 1 is in handling: ...")."""


def _stage_names(stages: tuple[str, ...]) -> Phrase:
    """"dispatched or in handling", for each reader."""
    names = [Phrase(IN_SENTENCE.get(s, s)) for s in stages]
    either = names[0]
    for other in names[1:]:
        either = Phrase("{either} or {other}", {"either": either, "other": other})
    return either


def _need_stage(case: Case, act: Phrase, *stages: str) -> None:
    if case.stage not in stages:
        raise WrongStageForAct(
            Phrase("case {number} is {stage}: {act} needs it {needed}",
                   {"number": case.number, "act": act, "stage": _stage_names((case.stage,)),
                    "needed": _stage_names(stages)}),
            details={"stage": case.stage, "allowed_from": list(stages)})


async def accept(sessions: SessionFactory, number: str, *, department: str, actor: str,
                 note: str | None = None, now: datetime | None = None) -> None:
    """The department takes the case up: dispatched -> in handling."""
    note = _text(note, "note", 1000)
    at = now or utcnow()
    async with sessions() as session, session.begin():
        case, _ = await _departments_case(session, number, department)
        _need_stage(case, Phrase("accepting"), "dispatched")
        await _move(session, case, actor=actor, at=at, stage="in_progress",
                    note=note or "accepted by the department")
        audit.record(session, actor=actor, action="case.dept_accept", object_type="case",
                     object_id=case.number, detail={"department": department})
    log.info("case %s accepted by %s (%s)", number, department, actor)


async def reply(sessions: SessionFactory, number: str, result: str, *, department: str,
                actor: str, now: datetime | None = None) -> None:
    """The department replies with the result: in handling -> replied."""
    result = _text(result, "result", 1000, required=True)  # type: ignore[assignment]
    at = now or utcnow()
    async with sessions() as session, session.begin():
        case, _ = await _departments_case(session, number, department)
        _need_stage(case, Phrase("replying"), "in_progress")
        await _move(session, case, actor=actor, at=at, stage="resolved", latest_update=result,
                    note="replied by the department")
        audit.record(session, actor=actor, action="case.dept_reply", object_type="case",
                     object_id=case.number, detail={"department": department})
    log.info("case %s replied by %s (%s)", number, department, actor)


async def _ask(sessions: SessionFactory, number: str, kind: str, reason: str, *,
               department: str, actor: str, requested_deadline: datetime | None,
               now: datetime | None) -> RequestView:
    reason = _text(reason, "reason", 1000, required=True)  # type: ignore[assignment]
    at = now or utcnow()
    async with sessions() as session, session.begin():
        case, dept = await _departments_case(session, number, department)
        _need_stage(case, Phrase("a return") if kind == "return" else Phrase("an extension"),
                    "dispatched", "in_progress")
        pending = await session.scalar(select(func.count()).select_from(DispatchRequest).where(
            DispatchRequest.case_id == case.id, DispatchRequest.kind == kind,
            DispatchRequest.status == "pending"))
        if pending:
            raise RequestDecided(
                Phrase("case {number} already has a return request waiting for a supervisor",
                       {"number": case.number}) if kind == "return" else
                Phrase("case {number} already has an extension request waiting for a "
                       "supervisor", {"number": case.number}))
        if kind == "extension":
            if requested_deadline is None or requested_deadline <= case.deadline:
                raise InvalidInput(Phrase("{field} must be later than the deadline {deadline}",
                                          {"field": Label("field", "until"),
                                           "deadline": case.deadline.isoformat()}))
        assert dept is not None
        request = DispatchRequest(case_id=case.id, department_id=dept.id, kind=kind,
                                  reason=reason, requested_deadline=requested_deadline,
                                  status="pending", requested_by=actor, requested_at=at)
        session.add(request)
        session.add(CaseHistory(case_id=case.id, at=at, actor=actor,
                                note=f"{kind} requested: {reason}"))
        await session.flush()
        audit.record(session, actor=actor, action=f"case.dept_{kind}", object_type="case",
                     object_id=case.number,
                     detail={"department": department, "request": request.id})
        view = _request_view(request, case.number, department)
    log.info("case %s: %s requested by %s (%s)", number, kind, department, actor)
    return view


async def request_return(sessions: SessionFactory, number: str, reason: str, *,
                         department: str, actor: str,
                         now: datetime | None = None) -> RequestView:
    """The department says the case is not theirs (with the reason); a supervisor rules."""
    return await _ask(sessions, number, "return", reason, department=department, actor=actor,
                      requested_deadline=None, now=now)


async def request_extension(sessions: SessionFactory, number: str, until: datetime,
                            reason: str, *, department: str, actor: str,
                            now: datetime | None = None) -> RequestView:
    """The department asks for a later deadline; a supervisor grants or refuses it."""
    return await _ask(sessions, number, "extension", reason, department=department,
                      actor=actor, requested_deadline=until, now=now)


async def _pending(session: AsyncSession, request_id: int,
                   kind: str) -> tuple[DispatchRequest, Case, Department]:
    row = (await session.execute(
        select(DispatchRequest, Case, Department)
        .join(Case, Case.id == DispatchRequest.case_id)
        .join(Department, Department.id == DispatchRequest.department_id)
        .where(DispatchRequest.id == request_id, DispatchRequest.kind == kind)
        .execution_options(populate_existing=True))).first()
    if row is None:
        raise RequestNotFound(Phrase("no {kind} request {id}",
                                     {"kind": Label("dispatch_request_kind", kind),
                                      "id": request_id}))
    if row[0].status != "pending":
        raise RequestDecided(Phrase("{kind} request {id} is already {status}",
                                    {"kind": Label("dispatch_request_kind", kind),
                                     "id": request_id,
                                     "status": Label("dispatch_request_status", row[0].status)}))
    return row[0], row[1], row[2]


async def rule_on_return(sessions: SessionFactory, request_id: int, ruling: Ruling, *,
                         actor: str, department: str | None = None, note: str | None = None,
                         now: datetime | None = None) -> RequestView:
    """A supervisor's ruling on a disputed return: ``redispatch`` to ``department`` (the
    return is granted) or ``uphold`` the dispatch (the return is refused)."""
    note = _text(note, "note", 1000)
    if ruling not in ("redispatch", "uphold"):
        raise InvalidInput(Phrase("ruling must be redispatch or uphold"))
    at = now or utcnow()
    async with sessions() as session, session.begin():
        request, case, old = await _pending(session, request_id, "return")
        if ruling == "redispatch":
            if not department:
                raise InvalidInput(Phrase("redispatch needs the department to send the case "
                                          "to"))
            new = await _department(session, department)
            if new.id == old.id:
                raise InvalidInput(Phrase("redispatch to another department (or uphold the "
                                          "dispatch)"))
            await _move(session, case, actor=actor, at=at, stage="dispatched", department=new,
                        from_department=old, note=note or f"return granted: {request.reason}")
            request.status = "granted"
        else:
            session.add(CaseHistory(case_id=case.id, at=at, actor=actor,
                                    note=note or "return refused: the dispatch stands"))
            request.status = "refused"
        request.decided_by, request.decided_at, request.decision_note = actor, at, note
        audit.record(session, actor=actor, action="case.return_ruling", object_type="case",
                     object_id=case.number,
                     detail={"request": request_id, "ruling": ruling, "to": department})
        view = _request_view(request, case.number, old.code)
    log.info("return request %d: %s by %s", request_id, ruling, actor)
    return view


async def decide_extension(sessions: SessionFactory, request_id: int, grant: bool, *,
                           actor: str, note: str | None = None,
                           now: datetime | None = None) -> RequestView:
    """A supervisor grants (the deadline moves) or refuses an extension request."""
    note = _text(note, "note", 1000)
    at = now or utcnow()
    async with sessions() as session, session.begin():
        request, case, dept = await _pending(session, request_id, "extension")
        if grant:
            await _move(session, case, actor=actor, at=at, deadline=request.requested_deadline,
                        note=note or "extension granted: deadline "
                        f"{case.deadline.isoformat()} -> "
                        f"{request.requested_deadline.isoformat()}")  # type: ignore[union-attr]
            request.status = "granted"
        else:
            session.add(CaseHistory(case_id=case.id, at=at, actor=actor,
                                    note=note or "extension refused"))
            request.status = "refused"
        request.decided_by, request.decided_at, request.decision_note = actor, at, note
        audit.record(session, actor=actor, action="case.extension_decision",
                     object_type="case", object_id=case.number,
                     detail={"request": request_id, "granted": grant})
        view = _request_view(request, case.number, dept.code)
    log.info("extension request %d: %s by %s", request_id, "granted" if grant else "refused",
             actor)
    return view


async def list_requests(sessions: SessionFactory, *, status: str | None = "pending",
                        department: str | None = None, limit: int = 200) -> list[RequestView]:
    query = (select(DispatchRequest, Case.number, Department.code)
             .join(Case, Case.id == DispatchRequest.case_id)
             .join(Department, Department.id == DispatchRequest.department_id)
             .order_by(DispatchRequest.id).limit(limit))
    if status is not None:
        query = query.where(DispatchRequest.status == status)
    if department is not None:
        query = query.where(Department.code == department)
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [_request_view(r, n, d) for r, n, d in rows]


# -- supervision --------------------------------------------------------------------------------
def _urges_of_case() -> Any:
    return (select(func.count()).select_from(CaseUrge).where(CaseUrge.case_id == Case.id)
            .correlate(Case).scalar_subquery())


def _pending_of_case() -> Any:
    return (select(func.count()).select_from(DispatchRequest)
            .where(DispatchRequest.case_id == Case.id, DispatchRequest.status == "pending")
            .correlate(Case).scalar_subquery())


async def _supervised(sessions: SessionFactory, *conditions: Any,
                      department: str | None, limit: int) -> list[SupervisedCase]:
    query = (select(Case.number, Case.stage, Department.code, CaseCategory.code, Case.deadline,
                    _urges_of_case(), _pending_of_case())
             .join(CaseCategory, CaseCategory.id == Case.category_id)
             .outerjoin(Department, Department.id == Case.department_id)
             .where(Case.stage.in_(sorted(OPEN_STAGES)), *conditions)
             .order_by(Case.deadline, Case.number).limit(limit))
    if department is not None:
        query = query.where(Department.code == department)
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [SupervisedCase(*row) for row in rows]


async def overdue_cases(sessions: SessionFactory, *, now: datetime | None = None,
                        department: str | None = None, limit: int = 200) -> list[SupervisedCase]:
    """Open cases past their deadline, the most overdue first."""
    return await _supervised(sessions, Case.deadline < (now or utcnow()),
                             department=department, limit=limit)


async def due_soon_cases(sessions: SessionFactory, *, now: datetime | None = None,
                         within: timedelta = DUE_SOON, department: str | None = None,
                         limit: int = 200) -> list[SupervisedCase]:
    """Open cases whose deadline falls within ``within`` from now."""
    now = now or utcnow()
    return await _supervised(sessions, Case.deadline >= now, Case.deadline < now + within,
                             department=department, limit=limit)


async def department_cases(sessions: SessionFactory, department: str, *,
                           limit: int = 200) -> list[SupervisedCase]:
    """A department's open cases, the nearest deadline first."""
    return await _supervised(sessions, department=department, limit=limit)


async def send_reminders(sessions: SessionFactory, *, now: datetime | None = None,
                         within: timedelta = DUE_SOON) -> list[Reminder]:
    """A reminder to the department of every open case that is due soon or overdue and has
    not had that reminder for its current deadline. Returns the new reminders. Two senders
    at once (the timer, the console's button, the CLI): the database keeps one reminder per
    case, kind and deadline, and the pass that lost the race looks again."""
    for attempt in range(3):
        try:
            return await _send_reminders(sessions, now or utcnow(), within)
        except IntegrityError:
            if attempt == 2:
                raise
            log.info("reminders: another sender was faster; looking again")
    raise AssertionError("unreachable")


async def _send_reminders(sessions: SessionFactory, now: datetime,
                          within: timedelta) -> list[Reminder]:
    made: list[Reminder] = []
    async with sessions() as session, session.begin():
        for kind, condition in (("overdue", Case.deadline < now),
                                ("due_soon", (Case.deadline >= now)
                                 & (Case.deadline < now + within))):
            already = (select(CaseReminder.id).where(
                CaseReminder.case_id == Case.id, CaseReminder.kind == kind,
                CaseReminder.deadline == Case.deadline).correlate(Case).exists())
            rows = (await session.execute(
                select(Case.id, Case.number, Case.deadline, Department.id, Department.code)
                .join(Department, Department.id == Case.department_id)
                .where(Case.stage.in_(sorted(OPEN_STAGES)), condition, ~already)
                .order_by(Case.id))).all()
            for case_id, number, deadline, dept_id, dept_code in rows:
                reminder = CaseReminder(case_id=case_id, department_id=dept_id, kind=kind,
                                        deadline=deadline, at=now)
                session.add(reminder)
                await session.flush()
                made.append(Reminder(reminder.id, number, dept_code, kind, deadline, now))
        if made:
            audit.record(session, actor="system:reminders", action="case.remind",
                         object_type="case", detail={"cases": [r.case_number for r in made]})
    log.log(logging.INFO if made else logging.DEBUG, "%d reminder(s) sent", len(made))
    return made


async def reminders(sessions: SessionFactory, *, department: str | None,
                    after_id: int = 0, limit: int = 200) -> list[Reminder]:
    """The reminder feed of a department (None: every department), oldest first, after the
    reminder ``after_id`` (the feed's cursor)."""
    query = (select(CaseReminder, Case.number, Department.code)
             .join(Case, Case.id == CaseReminder.case_id)
             .join(Department, Department.id == CaseReminder.department_id)
             .where(CaseReminder.id > after_id).order_by(CaseReminder.id).limit(limit))
    if department is not None:
        query = query.where(Department.code == department)
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [Reminder(r.id, n, d, r.kind, r.deadline, r.at) for r, n, d in rows]


# -- the resident's urge --------------------------------------------------------------------------
async def urge(sessions: SessionFactory, number: str, *, channel: str,
               consultation_id: int | None = None, now: datetime | None = None) -> int:
    """Record that the resident asked for case ``number`` to be hurried; returns how many
    times it has been urged. Only an open case can be urged."""
    if channel not in URGE_CHANNELS:
        raise InvalidInput(Phrase("channel must be one of {channels}",
                                  {"channels": Labels("channel", URGE_CHANNELS)}))
    at = now or utcnow()
    async with sessions() as session, session.begin():
        case, _ = await _departments_case(session, number, None)
        if case.stage not in OPEN_STAGES:
            raise WrongStageForAct(Phrase("case {number} is {stage}: only an open case can be "
                                          "urged",
                                          {"number": case.number,
                                           "stage": _stage_names((case.stage,))}))
        session.add(CaseUrge(case_id=case.id, at=at, channel=channel,
                             consultation_id=consultation_id))
        session.add(CaseHistory(case_id=case.id, at=at, actor=f"resident:{channel}",
                                note="the resident urged the case (催办)"))
        audit.record(session, actor=f"resident:{channel}", action="case.urge",
                     object_type="case", object_id=case.number,
                     detail={"consultation": consultation_id})
        await session.flush()
        count = await session.scalar(select(func.count()).select_from(CaseUrge)
                                     .where(CaseUrge.case_id == case.id))
    log.info("case %s urged via %s (%d in all)", number, channel, count)
    return int(count or 0)


async def urge_count(sessions: SessionFactory, number: str) -> int:
    async with sessions() as session:
        return int(await session.scalar(
            select(func.count()).select_from(CaseUrge).join(Case, Case.id == CaseUrge.case_id)
            .where(Case.number == check_number(number))) or 0)
