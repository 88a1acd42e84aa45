"""The screen pop: what an agent's desk shows about a caller the moment the phone rings.

Built once per call: the IVR's part from the call's steps (the events the desk hub holds in
memory, or the consultation as written when the hub has not seen the whole call), the rest
from the database (the resident behind the calling number, the case the caller asked about,
their last calls); and rendered per viewer: phone numbers are masked for agents except the
caller connected to them (never showing the last four digits, which are the IVR's
verification secret), ID numbers only ever show their last four digits. Verification digits
the caller entered are never shown: the transcript says only that they were entered and
whether they matched. Building reads; showing is audited by the desk (see crm.live.desk_hub),
because only then has a person seen it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, assert_never

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from crm.agents.auth import mask_id_number, mask_phone
from crm.callbacks import service as callback_service
from crm.callbacks.service import CallbackView
from crm.cases import service as case_service
from crm.cases.numbers import is_valid_case_number
from crm.cases.service import CaseView
from crm.consultations.service import (
    ConsultationDetail,
    find_consultations,
    get_consultation,
)
from crm.errors import CaseNotFound, HotlineError
from crm.live.calls import CallSoFar
from crm.storage.db import SessionFactory
from crm.storage.models import Case, Consultation, Resident, ResidentPhone
from crm.telephony.events import CallStep
from crm.telephony.steps import (
    AgentCompleted,
    AgentConnected,
    AgentNoAnswer,
    AgentRung,
    ArticleRead,
    BargeIn,
    CallbackClosedByCall,
    CallbackDialling,
    CallbackNotPossible,
    CallbackOffered,
    CallbackOutcome,
    CallbackRequested,
    CallerLeftIvr,
    CallReconciled,
    CaseLookedUp,
    CaseNumberConfirmed,
    CaseNumberInvalid,
    CaseNumberRejected,
    CaseUrged,
    CommentTranscribed,
    IntentChosen,
    IvrAtCapacity,
    IvrConnected,
    KeysEntered,
    LanguageChosen,
    LookupBlocked,
    NoSuchCase,
    NothingHeard,
    NotUnderstood,
    PromptPlayed,
    QueueAbandoned,
    QueueJoined,
    QueuePositionAnnounced,
    RecordingStarted,
    RouteChosen,
    SpeechHeard,
    StatusRepeated,
    StatusTold,
    Step,
    SurveyAbandoned,
    SurveyCommented,
    SurveyEnded,
    SurveyRated,
    SurveySkipped,
    SurveyStarted,
    SurveyUnrated,
    SurveyWriteDeferred,
    UnknownStep,
    VerificationDigits,
    VerificationResult,
    redact_secret_steps,
    step_from_row,
)

RECENT_CONSULTATIONS = 5
RESIDENT_CASES = 10


# -- the IVR's part of the call, from its steps (pure) ------------------------------------------
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


def _verified_line(v: VerificationResult) -> str:
    if v.by == "last4":
        return ("Verification by the last four digits of the contact phone: "
                + ("ok" if v.ok else "failed"))
    if v.ok:
        return f"Caller verified by {str(v.by or '').replace('_', ' ')}"
    if v.reason == "verification_locked":
        return "Caller NOT verified (too many failed verifications of this case lately)"
    return f"Caller NOT verified ({v.by or v.reason})"


def _as_fields(step: Step) -> str:
    return f"{step.kind}: {', '.join(f'{k}={v}' for k, v in step.detail().items())}"


def transcript_text(step: Step) -> str | None:
    """One step as a line for the agent; None for steps the agent does not need. Every step
    class has its case here: a new one that has none fails the type check (assert_never)."""
    match step:
        case (PromptPlayed() | BargeIn() | IvrConnected() | QueueJoined() | AgentRung()
              | AgentNoAnswer() | AgentConnected() | AgentCompleted() | RecordingStarted()
              | QueuePositionAnnounced()):
            return None
        case VerificationDigits(via=via, length=length, intent=intent):
            how = "keyed" if via == "keys" else "said"
            return (f"Verification digits {how} ({length} digits, not recorded)"
                    + (" → agent" if intent == "agent" else ""))
        case LanguageChosen(language=language, by=by):
            return f"Language {language} (by {by})"
        case IntentChosen(intent=intent, by=by):
            return f"Asked for: {intent} (by {by})"
        case ArticleRead(article_id=article_id, title=title):
            return f"Heard knowledge article {article_id}: {title}"
        case KeysEntered(keys=keys):
            return f"Keyed: {keys}"
        case SpeechHeard(text=text, intent=intent):
            return f"Said: “{text or ''}”" + (f" → {intent}" if intent else "")
        case CaseNumberInvalid(digits=digits):
            return f"Invalid case number {digits}"
        case CaseNumberConfirmed(number=number):
            return f"Case number confirmed: {number}"
        case CaseNumberRejected():
            return "Caller rejected the case number read back"
        case CaseLookedUp(number=number, found=found):
            return f"Looked up case {number}: {'found' if found else 'not found'}"
        case NoSuchCase(number=number):
            return f"No case {number}"
        case LookupBlocked():
            return "Case lookups blocked: too many failed attempts"
        case VerificationResult():
            return _verified_line(step)
        case StatusTold(case=case, stage=stage, verified=verified):
            return (f"Told case {case} is {stage}"
                    + (" (full status)" if verified else " (stage only)"))
        case StatusRepeated():
            return "Asked to hear the status again"
        case CaseUrged(case=case, count=count):
            return f"Urged case {case} (催办)" + (f", {count} in all" if count else "")
        case RouteChosen(route=route, reason=reason):
            return f"Routed to {route}" + (f" ({reason})" if reason else "")
        case NothingHeard(state=state):
            return f"No input ({state})"
        case NotUnderstood(state=state):
            return f"Not understood ({state})"
        case CallerLeftIvr(state=state):
            return f"Caller left the IVR ({state})"
        case QueueAbandoned():
            return "Caller hung up while waiting"
        case CallbackRequested(reason=reason, merged=merged):
            return (f"Callback requested ({reason})" if not merged
                    else f"Missed call merged into the open callback ({reason})")
        case CallbackNotPossible(reason=reason):
            return f"No callback possible: the number is {reason}"
        case CallbackClosedByCall():
            return "The open callback was closed: the resident called in"
        case CallbackOffered(reason=reason, answer=answer):
            return f"Callback offered ({reason}): {answer}"
        case CallbackDialling(attempt=attempt, reason=reason):
            return f"This is a callback ({reason}), attempt {attempt}"
        case CallbackOutcome(outcome=outcome, by=by):
            return f"Callback outcome: {outcome} ({by})"
        case CallReconciled(ended_at=ended_at):
            return ("Ended while the hotline service was down; closed from Asterisk's record "
                    f"(ended {ended_at})")
        case (IvrAtCapacity() | SurveyStarted() | SurveyRated() | SurveyUnrated()
              | SurveyCommented() | SurveyAbandoned() | SurveyEnded() | SurveySkipped()
              | SurveyWriteDeferred() | CommentTranscribed() | UnknownStep()):
            return _as_fields(step)
        case _:
            assert_never(step)


def summarise_steps(steps: Iterable[tuple[str | None, Step]]) -> IvrSummary:
    """A call's steps (``at`` as ISO text, step), in order -> what the pop shows. Verification
    digits in steps stored before the IVR redacted them are taken out here."""
    timed = list(steps)
    redacted = redact_secret_steps([step for _, step in timed])
    transcript: list[TranscriptLine] = []
    path: list[str] = []
    told = found = confirmed = None
    verified: bool | None = None
    verified_by = language = recording = None
    for (at, _), step in zip(timed, redacted, strict=True):
        if isinstance(step, PromptPlayed) and step.prompt:
            path.append(step.prompt)
        elif isinstance(step, StatusTold):
            told = step.case
        elif isinstance(step, CaseLookedUp) and step.found:
            found = step.number
        elif isinstance(step, CaseNumberConfirmed):
            confirmed = step.number
        elif isinstance(step, VerificationResult):
            verified, verified_by = step.ok, step.by or step.reason
        elif isinstance(step, LanguageChosen):
            language = step.language
        elif isinstance(step, RecordingStarted):
            recording = step.file
        text = transcript_text(step)
        if text is not None:
            transcript.append(TranscriptLine(at, step.kind, text))
    asked = next((n for n in (told, found, confirmed) if n and is_valid_case_number(str(n))),
                 None)
    return IvrSummary(tuple(transcript), tuple(path), asked, verified, verified_by, language,
                      recording)


def summarise_ivr(steps: Iterable[Mapping[str, Any]]) -> IvrSummary:
    """Steps as stored on a consultation ({"at", "kind", "detail"}) -> what the pop shows."""
    return summarise_steps((s.get("at"), step_from_row(str(s.get("kind") or ""), s.get("detail")))
                           for s in steps)


def _with_unwritten(stored: list[tuple[datetime, Step]],
                    so_far: Sequence[CallStep]) -> list[tuple[str | None, Step]]:
    """Stored steps and those of ``so_far`` not stored (yet), in time order."""
    written = {(step.kind, at) for at, step in stored}
    missing = [(e.at, e.step) for e in so_far if (e.kind, e.at) not in written]
    merged = sorted(stored + missing, key=lambda s: s[0]) if missing else stored
    return [(at.isoformat(), step) for at, step in merged]


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
class CallbackCard:
    """Why this call is a callback, for the agent it rings: the request's reason, when the
    resident called and how long they waited, and what they did in the IVR then."""

    request: CallbackView
    attempt: int
    transcript: tuple[TranscriptLine, ...] = ()

    def to_json(self) -> dict[str, Any]:
        r = self.request
        return {"request_id": r.id, "reason": r.reason, "attempt": self.attempt,
                "attempts": r.attempts, "status": r.status,
                "called_at": (r.queued_at or r.created_at).isoformat(),
                "requested_at": r.created_at.isoformat(), "waited_s": r.waited_s,
                "language": r.language, "note": r.note,
                "transcript": [line.to_json() for line in self.transcript]}


async def callback_card(sessions: SessionFactory, steps: Sequence[tuple[str | None, Step]]
                        ) -> CallbackCard | None:
    """The callback block of a callback call's pop (None for any other call)."""
    dialling = next((s for _, s in steps if isinstance(s, CallbackDialling)), None)
    if dialling is None:
        return None
    try:
        request = await callback_service.get_callback(sessions, dialling.request_id)
    except HotlineError:
        return None
    transcript: tuple[TranscriptLine, ...] = ()
    if request.consultation_id is not None:
        try:
            first = await get_consultation(sessions, request.consultation_id)
        except HotlineError:
            first = None
        if first is not None:
            transcript = summarise_ivr(first.steps).transcript
    return CallbackCard(request, dialling.attempt, transcript)


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
    callback: CallbackCard | None = None
    """Set when the call is a callback to a missed caller."""

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
            "callback": self.callback.to_json() if self.callback else None,
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
                           caller_name: str | None = None,
                           so_far: CallSoFar | None = None) -> ScreenPop:
    """Everything the desk shows about this call. The IVR's part is ``so_far`` (the call's
    events the desk hub holds) when that is the whole call; otherwise what the consultation
    recorder has written, with the steps of ``so_far`` it has not written yet. The rest
    (resident, cases, earlier calls) is history, read from the database."""
    if so_far is not None:
        caller_number = so_far.caller_number or caller_number
        caller_name = so_far.caller_name or caller_name
    steps: list[tuple[str | None, Step]]
    async with sessions() as session:
        if so_far is not None and so_far.complete:
            consultation_id = await session.scalar(
                select(Consultation.id).where(Consultation.call_id == call_id))
            steps = [(e.at.isoformat(), e.step) for e in so_far.steps]
        else:
            consultation = await session.scalar(
                select(Consultation).where(Consultation.call_id == call_id)
                .options(selectinload(Consultation.steps))
                .execution_options(populate_existing=True))
            stored = ([(s.at, step_from_row(s.kind, s.detail)) for s in consultation.steps]
                      if consultation else [])
            steps = _with_unwritten(stored, so_far.steps if so_far else ())
            consultation_id = consultation.id if consultation else None
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
    ivr = summarise_steps(steps)
    case = None
    if ivr.asked_case:
        try:
            case = await case_service.get_case(sessions, ivr.asked_case)
        except CaseNotFound:
            case = None
    recent: list[ConsultationDetail] = []
    if caller_number:
        found = await find_consultations(sessions, phone=caller_number,
                                         limit=RECENT_CONSULTATIONS + 1, with_steps=False)
        recent = [c for c in found if c.call_id != call_id][:RECENT_CONSULTATIONS]
    address = case.address if case else None
    card = (ResidentCard(resident.id, resident.name, resident.community,
                         resident.preferred_language, resident.id_number_last4)
            if resident else None)
    return ScreenPop(call_id, consultation_id, caller_number, caller_name, card, ivr, case,
                     tuple(resident_cases), tuple(recent), address,
                     await callback_card(sessions, steps))
