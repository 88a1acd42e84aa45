"""Cases (work orders): creation with a unique number, the stage workflow, notes and
reassignment, each change written to the case history with who made it and when.

Stages: accepted -> dispatched -> in_progress -> resolved -> closed (closed after the return
visit); resolved -> in_progress reopens a case as a follow-up. Nothing else is allowed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crm.agents.auth import mask_id_number, mask_phone
from crm.audit import log as audit
from crm.cases.numbers import is_valid_case_number, make_case_number
from crm.categories import tree as category_tree
from crm.categories.time_limits import TimeLimit, TimeLimitRules
from crm.errors import (
    CaseChangedConcurrently,
    CaseNotFound,
    CaseNumbersExhausted,
    InvalidCaseNumber,
    InvalidInput,
    InvalidTransition,
    UnknownCategory,
    UnknownDepartment,
    UnknownStage,
)
from crm.i18n.phrases import Label, Labels, Phrase
from crm.storage.db import SessionFactory
from crm.storage.models import (
    Case,
    CaseCategory,
    CaseHistory,
    CaseNumberSequence,
    Department,
    ResidentPhone,
    utcnow,
)

log = logging.getLogger(__name__)

STAGES = ("accepted", "dispatched", "in_progress", "resolved", "closed")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "accepted": ("dispatched",),
    "dispatched": ("in_progress",),
    "in_progress": ("resolved",),
    "resolved": ("closed", "in_progress"),
    "closed": (),
}
OPEN_STAGES = frozenset({"accepted", "dispatched", "in_progress"})
PHONE_PATTERN = re.compile(r"\+?[0-9]{3,20}")
CODE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
"""Category and department codes."""
_CREATE_ATTEMPTS = 8
_UPDATE_ATTEMPTS = 3


def check_transition(from_stage: str, to_stage: str) -> None:
    if to_stage not in TRANSITIONS:
        raise UnknownStage(Phrase("unknown stage {stage}; stages: {stages}",
                                  {"stage": repr(to_stage), "stages": Labels("stage", STAGES)}),
                           details={"stages": list(STAGES)})
    if to_stage not in TRANSITIONS[from_stage]:
        raise InvalidTransition(from_stage, to_stage, list(TRANSITIONS[from_stage]))


def check_number(number: str) -> str:
    if not is_valid_case_number(number):
        raise InvalidCaseNumber(Phrase("{number} is not a case number (11 digits with a valid "
                                       "check digit)", {"number": repr(number)}))
    return number


def _text(value: str | None, what: str, limit: int, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise InvalidInput(Phrase("{field} is required", {"field": Label("field", what)}))
        return None
    value = value.strip()
    if "\x00" in value:
        raise InvalidInput(Phrase("{field} must not contain NUL characters",
                                  {"field": Label("field", what)}))
    if required and not value:
        raise InvalidInput(Phrase("{field} must not be empty", {"field": Label("field", what)}))
    if len(value) > limit:
        raise InvalidInput(Phrase("{field} is longer than {limit} characters",
                                  {"field": Label("field", what), "limit": limit}))
    return value or None


def check_phone(phone: str | None, what: str = "phone") -> str | None:
    if phone is not None and not PHONE_PATTERN.fullmatch(phone):
        raise InvalidInput(Phrase("{field} must be 3-20 digits, optionally after a '+'",
                                  {"field": Label("field", what)}))
    return phone


# -- views ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    actor: str
    from_stage: str | None
    to_stage: str | None
    from_department: str | None
    to_department: str | None
    latest_update: str | None
    note: str | None

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


@dataclass(frozen=True)
class CaseView:
    number: str
    stage: str
    category_code: str
    category_name: str
    department_code: str | None
    department_name: str | None
    description: str
    contact_phone: str | None
    address: str | None
    resident_name: str | None
    resident_id_last4: str | None
    deadline: datetime
    latest_update: str | None
    created_at: datetime
    updated_at: datetime
    history: tuple[HistoryEntry, ...] = ()
    consultation_ids: tuple[int, ...] = field(default=())

    def overdue(self, now: datetime | None = None) -> bool:
        return self.stage in OPEN_STAGES and (now or utcnow()) > self.deadline

    def to_receipt(self) -> dict[str, Any]:
        """The minimum that confirms a write, for a writer without the right to read the case
        (no resident, contact, address, description or history)."""
        return {"number": self.number, "stage": self.stage,
                "updated_at": self.updated_at.isoformat()}

    def to_json(self, *, viewer_role: str, reveal_phone: bool = False) -> dict[str, Any]:
        """What a viewer with this role may see: see crm.agents.auth.mask_phone."""
        return {
            "number": self.number,
            "stage": self.stage,
            "next_stages": list(TRANSITIONS[self.stage]),
            "category": {"code": self.category_code, "name": self.category_name},
            "department": ({"code": self.department_code, "name": self.department_name}
                           if self.department_code else None),
            "description": self.description,
            "contact_phone": mask_phone(self.contact_phone, viewer_role, reveal=reveal_phone),
            "address": self.address,
            "resident": ({"name": self.resident_name,
                          "id_number": mask_id_number(self.resident_id_last4)}
                         if self.resident_name is not None else None),
            "deadline": self.deadline.isoformat(),
            "overdue": self.overdue(),
            "latest_update": self.latest_update,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "history": [h.to_json() for h in self.history],
            "consultations": list(self.consultation_ids),
        }


def _view(c: Case) -> CaseView:
    return CaseView(
        number=c.number, stage=c.stage, category_code=c.category.code,
        category_name=c.category.name,
        department_code=c.department.code if c.department else None,
        department_name=c.department.name if c.department else None,
        description=c.description, contact_phone=c.contact_phone, address=c.address,
        resident_name=c.resident.name if c.resident else None,
        resident_id_last4=c.resident.id_number_last4 if c.resident else None,
        deadline=c.deadline, latest_update=c.latest_update, created_at=c.created_at,
        updated_at=c.updated_at,
        history=tuple(HistoryEntry(h.at, h.actor, h.from_stage, h.to_stage, h.from_department,
                                   h.to_department, h.latest_update, h.note)
                      for h in c.history),
        consultation_ids=tuple(x.id for x in c.consultations))


async def _load(session: AsyncSession, number: str) -> Case:
    case = await session.scalar(
        select(Case).where(Case.number == check_number(number))
        .options(selectinload(Case.category), selectinload(Case.department),
                 selectinload(Case.resident), selectinload(Case.history),
                 selectinload(Case.consultations))
        .execution_options(populate_existing=True))
    if case is None:
        raise CaseNotFound(Phrase("no case {number}", {"number": number}))
    return case


async def get_case(sessions: SessionFactory, number: str) -> CaseView:
    async with sessions() as session:
        return _view(await _load(session, number))


# -- creation ---------------------------------------------------------------------------------
async def _allocate_number(session: AsyncSession, day: date) -> str:
    """The next number of ``day``. The UPDATE takes the sequence row's lock (PostgreSQL) or
    the database write lock (SQLite) until commit, so concurrent creators queue up here; the
    first creator of a day may race another one inserting the row, and the loser retries."""
    seq = await session.scalar(
        update(CaseNumberSequence).where(CaseNumberSequence.day == day)
        .values(last=CaseNumberSequence.last + 1).returning(CaseNumberSequence.last))
    prefix = f"{day:%y%m%d}"
    highest = await session.scalar(select(func.max(Case.number)).where(
        Case.number >= prefix + "00000", Case.number <= prefix + "99999"))
    taken = int(highest[6:10]) if highest else 0  # numbers made outside this counter
    if seq is None:
        seq = taken + 1
        session.add(CaseNumberSequence(day=day, last=seq))
        await session.flush()
    elif seq <= taken:
        seq = taken + 1
        await session.execute(update(CaseNumberSequence)
                              .where(CaseNumberSequence.day == day).values(last=seq))
    if seq > 9999:
        raise CaseNumbersExhausted(Phrase("all 9999 case numbers of {day} are used",
                                          {"day": day.isoformat()}))
    return make_case_number(day, seq)


async def create_case(sessions: SessionFactory, *, category: str, description: str,
                      actor: str, contact_phone: str | None = None,
                      resident_phone: str | None = None, resident_id: int | None = None,
                      address: str | None = None, now: datetime | None = None,
                      numbering_tz: tzinfo = UTC,
                      time_limits: TimeLimitRules | None = None) -> CaseView:
    """Accept a new case under a leaf category. Its department comes from the category, its
    deadline from the category's time limit counted by ``time_limits`` (default: on the
    clock); the number's date is the day in ``numbering_tz``. A resident is
    linked by id, or by ``resident_phone`` when that phone is known."""
    description = _text(description, "description", 2000, required=True)  # type: ignore[assignment]
    address = _text(address, "address", 256)
    check_phone(contact_phone, "contact_phone")
    check_phone(resident_phone, "resident_phone")
    now = now or utcnow()
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            async with sessions() as session, session.begin():
                cat = (await session.scalar(select(CaseCategory)
                                            .where(CaseCategory.code == category))
                       if CODE_PATTERN.fullmatch(category) else None)
                if cat is None:
                    known = (await session.scalars(select(CaseCategory.code)
                                                   .order_by(CaseCategory.code))).all()
                    raise UnknownCategory(Phrase("unknown category {category}; categories: "
                                                 "{categories}", {"category": repr(category),
                                                                  "categories": ", ".join(known)}),
                                          details={"categories": known})
                limit = TimeLimit.of(cat.time_limit_days, cat.time_limit_hours)
                if limit is None or await category_tree.is_branch(session, cat.id):
                    raise InvalidInput(Phrase("category {category} is a group of categories: "
                                              "choose one of its third-level categories",
                                              {"category": category}))
                if resident_id is None and resident_phone:
                    resident_id = await session.scalar(
                        select(ResidentPhone.resident_id)
                        .where(ResidentPhone.phone == resident_phone))
                number = await _allocate_number(session, now.astimezone(numbering_tz).date())
                case = Case(number=number, category_id=cat.id, description=description,
                            resident_id=resident_id, department_id=cat.department_id,
                            contact_phone=contact_phone, address=address, stage="accepted",
                            deadline=(time_limits or TimeLimitRules()).deadline(now, limit),
                            created_at=now, updated_at=now)
                session.add(case)
                await session.flush()
                session.add(CaseHistory(case_id=case.id, at=now, actor=actor,
                                        to_stage="accepted"))
                audit.record(session, actor=actor, action="case.create", object_type="case",
                             object_id=number)
        except IntegrityError:
            if attempt == _CREATE_ATTEMPTS:
                raise
            log.debug("case number race lost (attempt %d), retrying", attempt)
            continue
        log.info("case %s accepted (%s) by %s", number, category, actor)
        return await get_case(sessions, number)
    raise AssertionError("unreachable")


# -- changes ----------------------------------------------------------------------------------
async def update_case(sessions: SessionFactory, number: str, *, actor: str,
                      stage: str | None = None, note: str | None = None,
                      department: str | None = None, latest_update: str | None = None,
                      now: datetime | None = None) -> CaseView:
    """Change a case's stage, department and/or progress message (the one the IVR reads to
    the caller), with an optional note; one history entry records it all. A change made
    concurrently by someone else is detected (compare-and-set) and this one re-checked."""
    note = _text(note, "note", 1000)
    latest_update = _text(latest_update, "latest_update", 1000)
    if stage is None and note is None and department is None and latest_update is None:
        raise InvalidInput(Phrase("nothing to change: give {stage}, {department}, "
                                  "{latest_update} or {note}",
                                  {f: Label("field", f)
                                   for f in ("stage", "department", "latest_update", "note")}))
    for _ in range(_UPDATE_ATTEMPTS):
        async with sessions() as session, session.begin():
            case = await _load(session, number)
            at = now or utcnow()
            entry = CaseHistory(case_id=case.id, at=at, actor=actor, note=note)
            values: dict[str, Any] = {"updated_at": at}
            if stage is not None:
                check_transition(case.stage, stage)
                values["stage"] = entry.to_stage = stage
                entry.from_stage = case.stage
            if department is not None:
                dept = (await session.scalar(select(Department)
                                             .where(Department.code == department))
                        if CODE_PATTERN.fullmatch(department) else None)
                if dept is None:
                    raise UnknownDepartment(Phrase("unknown department {department}",
                                                   {"department": repr(department)}))
                if dept.id != case.department_id:
                    values["department_id"] = dept.id
                    entry.from_department = case.department.code if case.department else None
                    entry.to_department = dept.code
            if latest_update is not None:
                values["latest_update"] = entry.latest_update = latest_update
            unchanged_dept = (Case.department_id.is_(None) if case.department_id is None
                              else Case.department_id == case.department_id)
            result = await session.execute(
                update(Case).where(Case.id == case.id, Case.stage == case.stage, unchanged_dept)
                .values(**values).execution_options(synchronize_session=False))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                continue  # someone moved it meanwhile: nothing written, look again
            session.add(entry)
            audit.record(session, actor=actor, action="case.update", object_type="case",
                         object_id=case.number,
                         detail={k: v for k, v in (("stage", stage), ("department", department))
                                 if v is not None})
        log.info("case %s updated by %s: %s", number, actor,
                 ", ".join(f"{k}={v}" for k, v in values.items() if k != "updated_at"))
        return await get_case(sessions, number)
    raise CaseChangedConcurrently(Phrase("case {number} kept changing; try again",
                                         {"number": number}))


async def change_stage(sessions: SessionFactory, number: str, stage: str, *, actor: str,
                       note: str | None = None) -> CaseView:
    return await update_case(sessions, number, actor=actor, stage=stage, note=note)


async def add_note(sessions: SessionFactory, number: str, note: str, *,
                   actor: str) -> CaseView:
    if not (note or "").strip():
        raise InvalidInput(Phrase("{field} must not be empty", {"field": Label("field", "note")}))
    return await update_case(sessions, number, actor=actor, note=note)
