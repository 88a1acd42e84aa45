"""The screen pop: what an agent's desk shows about a caller the moment the phone rings.

Built once per call from the database (the consultation the IVR has been writing, the
resident behind the calling number, the case the caller asked about, their last calls) and
rendered per viewer: phone numbers are masked for agents except the caller connected to them
(never showing the last four digits, which are the IVR's verification secret), ID numbers only
ever show their last four digits. Verification digits the caller entered are never shown: the
transcript says only that they were entered and whether they matched. Building reads; showing
is audited by the desk (see crm.live.desk_hub), because only then has a person seen it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from crm.agents.auth import mask_id_number, mask_phone
from crm.cases import service as case_service
from crm.cases.numbers import is_valid_case_number
from crm.cases.service import CaseView
from crm.consultations.service import ConsultationDetail, find_consultations
from crm.errors import CaseNotFound
from crm.storage.db import SessionFactory
from crm.storage.models import Case, Consultation, Resident, ResidentPhone
from crm.telephony.events import redact_secret_inputs

RECENT_CONSULTATIONS = 5
RESIDENT_CASES = 10
_SILENT_STEPS = frozenset({"prompt", "barge_in", "ivr_connected", "queued", "agent_ringing",
                           "agent_no_answer", "agent_answered", "agent_completed",
                           "recording"})


# -- the IVR's part of the call, from its consultation steps (pure) ---------------------------
@dataclass(frozen=True)
class TranscriptLine:
    at: str | None
    kind: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, "text": self.text}


@dataclass(frozen=True)
class IvrSummary:
    transcript: tuple[TranscriptLine, ...] = ()
    """What the caller said, keyed and was told, in order."""
    path: tuple[str, ...] = ()
    """The prompts the caller heard, in order."""
    asked_case: str | None = None
    """The case the caller asked about (told, found, or at least confirmed)."""
    verified: bool | None = None
    """Did the IVR verify the caller against the case's contact phone? None: not tried."""
    verified_by: str | None = None
    language: str | None = None
    recording: str | None = None


def _verified_line(d: Mapping[str, Any]) -> str:
    ok = d.get("result", True)
    if d.get("by") == "last4":
        return ("Verification by the last four digits of the contact phone: "
                + ("ok" if ok else "failed"))
    if ok:
        return f"Caller verified by {str(d.get('by', '')).replace('_', ' ')}"
    if d.get("reason") == "verification_locked":
        return "Caller NOT verified (too many failed verifications of this case lately)"
    return f"Caller NOT verified ({d.get('by') or d.get('reason')})"


def _line(kind: str, d: Mapping[str, Any]) -> str | None:
    """One step as a line for the agent; None for steps the agent does not need."""
    if kind in _SILENT_STEPS:
        return None
    if kind in ("keys", "speech") and d.get("secret"):
        how = "keyed" if kind == "keys" else "said"
        return (f"Verification digits {how} ({d.get('length')} digits, not recorded)"
                + (" → agent" if d.get("intent") == "agent" else ""))
    texts = {
        "language": lambda: f"Language {d.get('language')} (by {d.get('by')})",
        "intent": lambda: f"Asked for: {d.get('intent')} (by {d.get('by')})",
        "keys": lambda: f"Keyed: {d.get('keys')}",
        "speech": lambda: (f"Said: “{d.get('text') or ''}”"
                           + (f" → {d['intent']}" if d.get("intent") else "")),
        "case_number_invalid": lambda: f"Invalid case number {d.get('digits')}",
        "case_number_confirmed": lambda: f"Case number confirmed: {d.get('number')}",
        "case_number_rejected": lambda: "Caller rejected the case number read back",
        "case_lookup": lambda: (f"Looked up case {d.get('number')}: "
                                f"{'found' if d.get('found') else 'not found'}"),
        "case_not_found": lambda: f"No case {d.get('number')}",
        "lookup_blocked": lambda: "Case lookups blocked: too many failed attempts",
        "verified": lambda: _verified_line(d),
        "told": lambda: (f"Told case {d.get('case')} is {d.get('stage')}"
                         + (" (full status)" if d.get("verified") else " (stage only)")),
        "repeat_status": lambda: "Asked to hear the status again",
        "route": lambda: (f"Routed to {d.get('route')}"
                          + (f" ({d['reason']})" if d.get("reason") else "")),
        "no_input": lambda: f"No input ({d.get('state')})",
        "no_match": lambda: f"Not understood ({d.get('state')})",
        "caller_left": lambda: f"Caller left the IVR ({d.get('state')})",
        "abandoned": lambda: "Caller hung up while waiting",
    }
    make = texts.get(kind)
    return make() if make else f"{kind}: {', '.join(f'{k}={v}' for k, v in d.items())}"


def summarise_ivr(steps: Iterable[Mapping[str, Any]]) -> IvrSummary:
    """Steps as stored on a consultation ({"at", "kind", "detail"}) -> what the pop shows.
    Verification digits in steps stored before the IVR redacted them are taken out here."""
    transcript: list[TranscriptLine] = []
    path: list[str] = []
    told = found = confirmed = None
    verified: bool | None = None
    verified_by = language = recording = None
    for step in redact_secret_inputs(steps):
        kind, d, at = step.get("kind", ""), step.get("detail") or {}, step.get("at")
        if kind == "prompt" and d.get("prompt"):
            path.append(str(d["prompt"]))
        elif kind == "told":
            told = d.get("case")
        elif kind == "case_lookup" and d.get("found"):
            found = d.get("number")
        elif kind == "case_number_confirmed":
            confirmed = d.get("number")
        elif kind == "verified":
            verified = bool(d.get("result", True))
            verified_by = d.get("by") or d.get("reason")
        elif kind == "language":
            language = d.get("language")
        elif kind == "recording":
            recording = d.get("file")
        text = _line(kind, d)
        if text is not None:
            transcript.append(TranscriptLine(at, kind, text))
    asked = next((n for n in (told, found, confirmed) if n and is_valid_case_number(str(n))),
                 None)
    return IvrSummary(tuple(transcript), tuple(path), asked, verified, verified_by, language,
                      recording)


# -- the pop ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResidentCard:
    id: int
    name: str
    community: str | None
    language: str | None
    id_number_last4: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "community": self.community,
                "language": self.language, "id_number": mask_id_number(self.id_number_last4)}


@dataclass(frozen=True)
class CaseLine:
    number: str
    stage: str
    category: str
    description: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "stage": self.stage, "category": self.category,
                "description": self.description, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class ScreenPop:
    call_id: str
    consultation_id: int | None
    caller_number: str | None
    caller_name: str | None
    resident: ResidentCard | None = None
    ivr: IvrSummary = field(default_factory=IvrSummary)
    case: CaseView | None = None
    """The case the caller asked about in the IVR, with its stage and history."""
    resident_cases: tuple[CaseLine, ...] = ()
    recent: tuple[ConsultationDetail, ...] = ()
    """The caller's last consultations before this one, newest first."""
    default_address: str | None = None

    def to_json(self, *, viewer_role: str, reveal: bool = False) -> dict[str, Any]:
        """What this viewer may see; ``reveal`` when the caller is connected to them."""
        phone = self.caller_number

        def same_phone(other: str | None) -> bool:
            return reveal and other is not None and other == phone

        case = self.case
        return {
            "call_id": self.call_id,
            "consultation_id": self.consultation_id,
            "caller": {"number": mask_phone(phone, viewer_role, reveal=reveal),
                       "name": self.caller_name,
                       "known": self.resident is not None},
            "resident": self.resident.to_json() if self.resident else None,
            "ivr": {
                "verified": self.ivr.verified,
                "verified_by": self.ivr.verified_by,
                "language": self.ivr.language,
                "asked_case": self.ivr.asked_case,
                "transcript": [line.to_json() for line in self.ivr.transcript],
                "path": list(self.ivr.path),
                "recording": self.ivr.recording is not None,
            },
            "case": (case.to_json(viewer_role=viewer_role,
                                  reveal_phone=same_phone(case.contact_phone))
                     if case else None),
            "resident_cases": [c.to_json() for c in self.resident_cases],
            "recent": [c.to_json(viewer_role=viewer_role, reveal_phone=same_phone(c.caller_number),
                                 include_steps=False) for c in self.recent],
            "new_case": {
                "category": case.category_code if case else None,
                "contact_phone": phone if reveal or phone is None else None,
                "contact_phone_hint": mask_phone(phone, viewer_role, reveal=reveal),
                "address": self.default_address,
                "description": "",
            },
        }

    @property
    def audit_detail(self) -> dict[str, Any]:
        """What showing this pop disclosed, for the audit log."""
        return {"call_id": self.call_id,
                "resident": self.resident.id if self.resident else None,
                "case": self.case.number if self.case else None,
                "consultations": [c.id for c in self.recent]}


async def build_screen_pop(sessions: SessionFactory, call_id: str, *,
                           caller_number: str | None = None,
                           caller_name: str | None = None) -> ScreenPop:
    """Everything the desk shows about this call, as far as the database knows it now."""
    async with sessions() as session:
        consultation = await session.scalar(
            select(Consultation).where(Consultation.call_id == call_id)
            .options(selectinload(Consultation.steps))
            .execution_options(populate_existing=True))
        steps = ([{"at": s.at.isoformat(), "kind": s.kind, "detail": s.detail}
                  for s in consultation.steps] if consultation else [])
        if consultation is not None:
            caller_number = consultation.caller_number or caller_number
            caller_name = consultation.caller_name or caller_name
        resident = None
        resident_cases: list[CaseLine] = []
        if caller_number:
            resident = await session.scalar(
                select(Resident).join(ResidentPhone).where(ResidentPhone.phone == caller_number))
        if resident is not None:
            rows = (await session.scalars(
                select(Case).where(Case.resident_id == resident.id)
                .options(selectinload(Case.category))
                .order_by(Case.created_at.desc(), Case.id.desc()).limit(RESIDENT_CASES))).all()
            resident_cases = [CaseLine(c.number, c.stage, c.category.name, c.description,
                                       c.created_at) for c in rows]
    ivr = summarise_ivr(steps)
    case = None
    if ivr.asked_case:
        try:
            case = await case_service.get_case(sessions, ivr.asked_case)
        except CaseNotFound:
            case = None
    recent: list[ConsultationDetail] = []
    if caller_number:
        found = await find_consultations(sessions, phone=caller_number,
                                         limit=RECENT_CONSULTATIONS + 1)
        recent = [c for c in found if c.call_id != call_id][:RECENT_CONSULTATIONS]
    address = case.address if case else None
    card = (ResidentCard(resident.id, resident.name, resident.community,
                         resident.preferred_language, resident.id_number_last4)
            if resident else None)
    return ScreenPop(call_id, consultation.id if consultation else None, caller_number,
                     caller_name, card, ivr, case, tuple(resident_cases), tuple(recent),
                     address)
