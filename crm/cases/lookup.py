"""What the IVR may ask the CRM: a case's status, a caller's language, and the
anti-enumeration guard that stops lookups after repeated failures from one number."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import selectinload

from crm.storage.db import SessionFactory
from crm.storage.models import Case, LookupFailure, Resident, ResidentPhone, utcnow

_OPEN_STAGES = frozenset({"accepted", "dispatched", "in_progress"})
"""As crm.cases.service.OPEN_STAGES (lookup stays free of the service's imports)."""


@dataclass(frozen=True)
class CaseStatus:
    number: str
    stage: str
    department: str | None
    deadline: datetime | None
    latest_update: str | None
    contact_phone: str | None
    overdue: bool = False
    """Open and past its deadline: the caller may urge it (催办)."""


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
    overdue = case.stage in _OPEN_STAGES and case.deadline is not None and \
        utcnow() > case.deadline
    return CaseStatus(case.number, case.stage, _department_name(case, lang), case.deadline,
                      case.latest_update, case.contact_phone, overdue)


async def resident_language(sessions: SessionFactory, phone: str | None) -> str | None:
    if not phone:
        return None
    async with sessions() as session:
        return await session.scalar(select(Resident.preferred_language)
                                    .join(ResidentPhone).where(ResidentPhone.phone == phone))


_DIALABLE = re.compile(r"\+?[0-9]{3,32}")
CASE_KEY_PREFIX = "case:"
"""Rows of ``lookup_failures`` keyed by case (failed verifications) rather than by phone."""


def is_withheld_number(number: str | None) -> bool:
    """True when the caller's number is not a real one: absent, withheld ("anonymous",
    "<unknown>", "restricted", ...), not made of digits, or all zeros. Such callers share
    no identity, so nothing may be counted against them together."""
    if not number:
        return True
    number = number.strip()
    return not _DIALABLE.fullmatch(number) or not number.lstrip("+0")


class LookupGuard:
    """Limits on guessing, kept in the database so restarts and several IVR processes share
    them:

    - at most ``limit`` failed case numbers or verifications per calling number per
      ``window``. Withheld numbers (see ``is_withheld_number``) are never counted together:
      one withheld caller must not lock out every other; the call flow limits them per call;
    - at most ``verification_limit`` failed verifications of one case per
      ``verification_window``, whoever calls: after that the case is not verified by keyed
      digits (calling from its contact phone, or an agent, still works), so the four digits
      cannot be found by calling again and again from withheld or changing numbers.
    """

    def __init__(self, sessions: SessionFactory, *, limit: int = 5,
                 window: timedelta = timedelta(hours=1), verification_limit: int = 10,
                 verification_window: timedelta = timedelta(hours=24)) -> None:
        self._sessions = sessions
        self.limit = limit
        self.window = window
        self.verification_limit = verification_limit
        self.verification_window = verification_window

    async def failures(self, key: str, window: timedelta | None = None) -> int:
        since = utcnow() - (window or self.window)
        async with self._sessions() as session:
            return await session.scalar(
                select(func.count()).select_from(LookupFailure)
                .where(LookupFailure.phone == key, LookupFailure.at >= since)) or 0

    async def blocked(self, phone: str | None) -> bool:
        """Are lookups closed for this calling number? Never for a withheld number."""
        if is_withheld_number(phone):
            return False
        return await self.failures((phone or "").strip()) >= self.limit

    async def verification_locked(self, case_number: str) -> bool:
        """Has this case had too many failed verifications lately, from any caller?"""
        failed = await self.failures(CASE_KEY_PREFIX + case_number, self.verification_window)
        return failed >= self.verification_limit

    async def record_failure(self, phone: str | None, reason: str, *,
                             case: str | None = None) -> None:
        """Count a failure against the calling number (unless withheld) and, for a failed
        verification, against the ``case``."""
        keys = [] if is_withheld_number(phone) else [(phone or "").strip()]
        if case is not None:
            keys.append(CASE_KEY_PREFIX + case)
        if not keys:
            return
        now = utcnow()
        oldest = now - 2 * max(self.window, self.verification_window)
        async with self._sessions() as session, session.begin():
            session.add_all(LookupFailure(phone=key, reason=reason, at=now) for key in keys)
            await session.execute(delete(LookupFailure).where(LookupFailure.at < oldest))
