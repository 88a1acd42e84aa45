"""What the agent desk adds to a consultation record (notes, disposition, the agent who took
the call, the resident it was, the cases it concerns) and how the desk and the open API
search consultations. The records themselves are written from call events by
crm.consultations.recorder."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crm.agents.auth import mask_id_number, mask_phone
from crm.audit import log as audit
from crm.cases.service import check_number
from crm.consultations.recorder import CallRecord, call_record_fields, shown_steps
from crm.errors import AgentNotFound, CaseNotFound, ConsultationNotFound, InvalidInput, NotFound
from crm.i18n.phrases import Label, Labels, Phrase
from crm.storage.db import SessionFactory
from crm.storage.models import Agent, Case, Consultation, ConsultationCase, Resident

DISPOSITIONS = ("information_given", "case_created", "case_updated", "transferred",
                "callback_required", "complaint_recorded", "no_action")
MAX_LIMIT = 200


@dataclass(frozen=True)
class ConsultationDetail(CallRecord):
    notes: str | None
    disposition: str | None
    agent_login: str | None
    agent_name: str | None
    resident_name: str | None
    resident_id_last4: str | None
    case_numbers: tuple[str, ...]
    steps: tuple[dict[str, Any], ...]

    def to_json(self, *, viewer_role: str, reveal_phone: bool = False,
                include_steps: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "call_id": self.call_id,
            "caller_number": mask_phone(self.caller_number, viewer_role, reveal=reveal_phone),
            "caller_name": self.caller_name,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "duration_s": self.duration_s,
            "outcome": self.outcome,
            "ivr_route": self.ivr_route,
            "hangup_cause": self.hangup_cause,
            "hangup_party": self.hangup_party,
            "notes": self.notes,
            "disposition": self.disposition,
            "agent": ({"login": self.agent_login, "name": self.agent_name}
                      if self.agent_login else None),
            "resident": ({"name": self.resident_name,
                          "id_number": mask_id_number(self.resident_id_last4)}
                         if self.resident_name is not None else None),
            "cases": list(self.case_numbers),
        }
        if include_steps:
            data["steps"] = list(self.steps)
        return data


def _detail(c: Consultation, *, with_steps: bool = True) -> ConsultationDetail:
    return ConsultationDetail(
        **call_record_fields(c), notes=c.notes, disposition=c.disposition,
        agent_login=c.agent.login if c.agent else None,
        agent_name=c.agent.display_name if c.agent else None,
        resident_name=c.resident.name if c.resident else None,
        resident_id_last4=c.resident.id_number_last4 if c.resident else None,
        case_numbers=tuple(x.number for x in c.cases),
        steps=tuple(shown_steps(c)) if with_steps else ())


_FULL = (selectinload(Consultation.steps), selectinload(Consultation.agent),
         selectinload(Consultation.resident), selectinload(Consultation.cases))


async def _load(session: AsyncSession, consultation_id: int) -> Consultation:
    found = await session.scalar(select(Consultation).where(Consultation.id == consultation_id)
                                 .options(*_FULL).execution_options(populate_existing=True))
    if found is None:
        raise ConsultationNotFound(Phrase("no consultation {id}", {"id": consultation_id}))
    return found


async def get_consultation(sessions: SessionFactory, consultation_id: int) -> ConsultationDetail:
    async with sessions() as session:
        return _detail(await _load(session, consultation_id))


async def find_consultations(sessions: SessionFactory, *, phone: str | None = None,
                             case_number: str | None = None, since: datetime | None = None,
                             limit: int = 50, with_steps: bool = True) -> list[ConsultationDetail]:
    """Newest first: calls from ``phone``, about case ``case_number``, started at or after
    ``since``; without their steps unless ``with_steps``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(Phrase("{field} must be 1-{max}",
                                  {"field": Label("field", "limit"), "max": MAX_LIMIT}))
    query = (select(Consultation).options(*(_FULL if with_steps else _FULL[1:]))
             .order_by(Consultation.started_at.desc().nulls_last(), Consultation.id.desc())
             .limit(limit))
    if phone:
        query = query.where(Consultation.caller_number == phone)
    if case_number:
        query = query.join(ConsultationCase).join(Case).where(
            Case.number == check_number(case_number))
    if since is not None:
        if since.tzinfo is None:
            raise InvalidInput(Phrase("{field} needs a time zone",
                                      {"field": Label("field", "since")}))
        query = query.where(Consultation.started_at >= since)
    async with sessions() as session:
        return [_detail(c, with_steps=with_steps)
                for c in (await session.scalars(query)).all()]


async def link_case(sessions: SessionFactory, consultation_id: int, number: str, *,
                    actor: str) -> None:
    """Note that a consultation concerns a case (idempotent)."""
    async with sessions() as session, session.begin():
        consultation = await _load(session, consultation_id)
        case_id = await session.scalar(select(Case.id).where(Case.number == check_number(number)))
        if case_id is None:
            raise CaseNotFound(Phrase("no case {number}", {"number": number}))
        if await session.get(ConsultationCase, (consultation.id, case_id)) is None:
            session.add(ConsultationCase(consultation_id=consultation.id, case_id=case_id,
                                         linked_by=actor))
            audit.record(session, actor=actor, action="consultation.link_case",
                         object_type="consultation", object_id=consultation.id,
                         detail={"case": number})


async def update_consultation(sessions: SessionFactory, consultation_id: int, *, actor: str,
                              notes: str | None = None, disposition: str | None = None,
                              agent_login: str | None = None,
                              resident_id: int | None = None) -> ConsultationDetail:
    """Set what the agent recorded about a call. Arguments left None are left as they are."""
    if notes is not None and (len(notes) > 4000 or "\x00" in notes):
        raise InvalidInput(Phrase("{field} must be at most 4000 characters, without NUL "
                                  "characters", {"field": Label("field", "notes")}))
    if disposition is not None and disposition not in DISPOSITIONS:
        raise InvalidInput(Phrase("unknown disposition {disposition}; dispositions: "
                                  "{dispositions}",
                                  {"disposition": repr(disposition),
                                   "dispositions": Labels("disposition", tuple(DISPOSITIONS))}))
    changed: list[str] = []
    async with sessions() as session, session.begin():
        consultation = await _load(session, consultation_id)
        if notes is not None:
            consultation.notes = notes
            changed.append("notes")
        if disposition is not None:
            consultation.disposition = disposition
            changed.append("disposition")
        if agent_login is not None:
            agent_id = await session.scalar(select(Agent.id).where(Agent.login == agent_login))
            if agent_id is None:
                raise AgentNotFound(Phrase("no agent with login {login}",
                                           {"login": repr(agent_login)}))
            consultation.agent_id = agent_id
            changed.append("agent")
        if resident_id is not None:
            if await session.get(Resident, resident_id) is None:
                raise NotFound(Phrase("no resident {id}", {"id": resident_id}))
            consultation.resident_id = resident_id
            changed.append("resident")
        audit.record(session, actor=actor, action="consultation.update",
                     object_type="consultation", object_id=consultation.id,
                     detail={"changed": changed})
    return await get_consultation(sessions, consultation_id)
