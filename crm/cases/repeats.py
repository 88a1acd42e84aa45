"""Repeat requests: the open cases a new request is probably about (重复诉求).

An open case (accepted, dispatched, in progress) counts when it was accepted within the last
``window_days``, is filed under the same category, belongs to the same resident or was
given the same phone, and its address is the same place (crm/cases/addresses.py; when either
side has no address, the other matches cannot be disproved and the case is shown after those
with an address that matched). The agent then links the call to one instead of opening a
duplicate; the calls linked to a case are its count of calls about the matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from crm.cases.addresses import similarity
from crm.storage.db import SessionFactory
from crm.storage.models import Case, CaseCategory, ConsultationCase, ResidentPhone, utcnow

OPEN = ("accepted", "dispatched", "in_progress")
LIMIT = 5


@dataclass(frozen=True)
class RepeatCandidate:
    number: str
    stage: str
    category_name: str
    address: str | None
    description: str
    created_at: datetime
    calls: int
    """Calls linked to the case so far."""
    address_similarity: float | None
    """None: one side gave no address."""

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "created_at": self.created_at.isoformat()}


async def find_repeats(sessions: SessionFactory, *, category: str, phones: list[str],
                       address: str | None, resident_id: int | None = None,
                       window_days: int = 30, min_similarity: float = 0.7,
                       now: datetime | None = None) -> list[RepeatCandidate]:
    """The open cases this request may repeat, the most alike first (at most five)."""
    phones = [p for p in dict.fromkeys(phones) if p]
    if not phones and resident_id is None:
        return []
    since = (now or utcnow()) - timedelta(days=window_days)
    async with sessions() as session:
        residents = set((await session.scalars(select(ResidentPhone.resident_id).where(
            ResidentPhone.phone.in_(phones)))).all()) if phones else set()
        if resident_id is not None:
            residents.add(resident_id)
        same_person = [Case.contact_phone.in_(phones)] if phones else []
        if residents:
            same_person.append(Case.resident_id.in_(residents))
        calls = (select(func.count()).where(ConsultationCase.case_id == Case.id)
                 .correlate(Case).scalar_subquery())
        rows = (await session.execute(
            select(Case, CaseCategory.name, calls).join(CaseCategory)
            .where(CaseCategory.code == category, Case.stage.in_(OPEN),
                   Case.created_at >= since, or_(*same_person))
            .order_by(Case.created_at.desc()).limit(50))).all()
    found = []
    for case, category_name, count in rows:
        score = similarity(address, case.address) if address and case.address else None
        if score is not None and score < min_similarity:
            continue
        found.append(RepeatCandidate(case.number, case.stage, category_name, case.address,
                                     case.description, case.created_at, int(count or 0),
                                     score))
    found.sort(key=lambda c: (c.address_similarity is None, -(c.address_similarity or 0),
                              -c.created_at.timestamp()))
    return found[:LIMIT]
