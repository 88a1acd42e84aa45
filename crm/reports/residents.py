"""A resident's record as a supervisor reads it: who they are (ID number only as its last
four), their phones, their cases and their calls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from crm.errors import NotFound
from crm.i18n.phrases import Phrase
from crm.reports.satisfaction import PAGE_SIZE, ConsultationRow, consultation_rows
from crm.storage.db import SessionFactory
from crm.storage.models import Case, Consultation, Resident


@dataclass(frozen=True)
class ResidentCase:
    number: str
    stage: str
    category: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class ResidentRecord:
    id: int
    name: str
    community: str | None
    language: str | None
    id_number_last4: str | None
    phones: tuple[str, ...]
    cases: tuple[ResidentCase, ...]
    consultations: tuple[ConsultationRow, ...]


async def resident_of_consultation(sessions: SessionFactory, consultation_id: int) -> int | None:
    async with sessions() as session:
        return await session.scalar(select(Consultation.resident_id)
                                    .where(Consultation.id == consultation_id))


async def resident_record(sessions: SessionFactory, resident_id: int, tz: tzinfo, *,
                          limit: int = PAGE_SIZE) -> ResidentRecord:
    """The resident, their cases and their last calls (by resident, or from their phones)."""
    async with sessions() as session:
        resident = await session.scalar(select(Resident).where(Resident.id == resident_id)
                                        .options(selectinload(Resident.phones)))
        if resident is None:
            raise NotFound(Phrase("no resident {id}", {"id": resident_id}))
        phones = tuple(p.phone for p in resident.phones)
        found = (await session.scalars(
            select(Case).where(Case.resident_id == resident_id)
            .options(selectinload(Case.category))
            .order_by(Case.created_at.desc(), Case.id.desc()).limit(limit))).all()
        cases = tuple(ResidentCase(c.number, c.stage, c.category.name, c.description,
                                   c.created_at.astimezone(tz)) for c in found)
        consultations = await consultation_rows(session, (
            select(Consultation)
            .where((Consultation.resident_id == resident_id)
                   | Consultation.caller_number.in_(phones))
            .order_by(Consultation.started_at.desc().nulls_last(), Consultation.id.desc())
            .limit(limit)), tz)
    return ResidentRecord(resident.id, resident.name, resident.community,
                          resident.preferred_language, resident.id_number_last4, phones, cases,
                          tuple(consultations))
