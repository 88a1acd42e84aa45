"""What the IVR may ask the CRM: a case's status, a caller's language, and the
anti-enumeration guard that stops lookups after repeated failures from one number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import selectinload

from crm.db import SessionFactory
from crm.models import Case, LookupFailure, Resident, ResidentPhone, utcnow


@dataclass(frozen=True)
class CaseStatus:
    number: str
    stage: str
    department: str | None
    deadline: datetime | None
    latest_update: str | None
    contact_phone: str | None


def _department_name(case: Case, lang: str) -> str | None:
    d = case.department
    if d is None:
        return None
    return {"en": d.name_en, "ko": d.name_ko}.get(lang) or d.name


async def find_case_status(sessions: SessionFactory, number: str,
                           lang: str = "cmn") -> CaseStatus | None:
    async with sessions() as session:
        case = await session.scalar(select(Case).options(selectinload(Case.department))
                                    .where(Case.number == number))
    if case is None:
        return None
    return CaseStatus(case.number, case.stage, _department_name(case, lang), case.deadline,
                      case.latest_update, case.contact_phone)


async def resident_language(sessions: SessionFactory, phone: str | None) -> str | None:
    if not phone:
        return None
    async with sessions() as session:
        return await session.scalar(select(Resident.preferred_language)
                                    .join(ResidentPhone).where(ResidentPhone.phone == phone))


class LookupGuard:
    """At most ``limit`` failed case numbers or verifications per calling number per window.
    Kept in the database so restarts and several IVR processes share the count."""

    def __init__(self, sessions: SessionFactory, *, limit: int = 5,
                 window: timedelta = timedelta(hours=1)) -> None:
        self._sessions = sessions
        self.limit = limit
        self.window = window

    async def failures(self, phone: str) -> int:
        since = utcnow() - self.window
        async with self._sessions() as session:
            return await session.scalar(
                select(func.count()).select_from(LookupFailure)
                .where(LookupFailure.phone == phone, LookupFailure.at >= since)) or 0

    async def blocked(self, phone: str | None) -> bool:
        return await self.failures(phone or "anonymous") >= self.limit

    async def record_failure(self, phone: str | None, reason: str) -> None:
        async with self._sessions() as session, session.begin():
            session.add(LookupFailure(phone=phone or "anonymous", reason=reason, at=utcnow()))
            await session.execute(delete(LookupFailure)
                                  .where(LookupFailure.at < utcnow() - 2 * self.window))
