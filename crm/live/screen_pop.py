"""The screen pop: what an agent's desk shows about a caller the moment the phone rings.

Built once per call: the IVR's part from the call's steps (the events the desk hub holds in
memory, or the consultation as written when the hub has not seen the whole call), the rest
from the database (the resident behind the calling number, the case the caller asked about
or the agent created or linked on the call -- the desk hub hands that one over -- their last
calls); and rendered per viewer: phone numbers are masked for agents except the
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
from crm.i18n.catalogs import Translator, translator
from crm.i18n.phrases import Label, Phrase
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
ENGLISH = translator("en")
"""Renders a line's phrase as the English text the API and JSON users get."""


@dataclass(frozen=True)
class TranscriptLine:
    at: str | None
    kind: str
    text: str
    """In English (the API's and the records' text)."""
    phrase: Phrase | None = None
    """The same sentence kept as a message id and values, for a reader's own language."""

    def text_in(self, t: Translator | None) -> str:
        """The line in ``t``'s language (English without one)."""
        return t.phrase(self.phrase) if t is not None and self.phrase is not None else self.text

    def to_json(self, t: Translator | None = None) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, "text": self.text_in(t)}


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


def _code(kind: str, code: str | None) -> Label | str:
    """A code as a label to name (its name per reader); "" for none."""
    return Label(kind, code) if code else ""


def _verified_line(v: VerificationResult) -> Phrase:
    if v.by == "last4":
        if v.ok:
            return Phrase("Verification by the last four digits of the contact phone: ok")
        return Phrase("Verification by the last four digits of the contact phone: failed")
    if v.ok:
        return Phrase("Caller verified by {by}", {"by": _code("verified_by", v.by)})
    if v.reason == "verification_locked":
        return Phrase("Caller NOT verified (too many failed verifications of this case lately)")
    if v.by:
        return Phrase("Caller NOT verified ({reason})", {"reason": _code("verified_by", v.by)})
    return Phrase("Caller NOT verified ({reason})",
                  {"reason": _code("verification_reason", v.reason)})


def _as_fields(step: Step) -> Phrase:
    return Phrase("{kind}: {fields}", {
        "kind": step.kind, "fields": ", ".join(f"{k}={v}" for k, v in step.detail().items())})


def transcript_phrase(step: Step) -> Phrase | None:
    """One step as a line for the agent, kept as a phrase each reader gets in their own
    language; None for steps the agent does not need. Every step class has its case here: a
    new one that has none fails the type check (assert_never)."""
    match step:
        case (PromptPlayed() | BargeIn() | IvrConnected() | QueueJoined() | AgentRung()
              | AgentNoAnswer() | AgentConnected() | AgentCompleted() | RecordingStarted()
              | QueuePositionAnnounced()):
            return None
        case VerificationDigits(via=via, length=length, intent=intent):
            n = {"length": length}
            if via == "keys" and intent == "agent":
                return Phrase("Verification digits keyed ({length} digits, not recorded) → agent",
                              n)
            if via == "keys":
                return Phrase("Verification digits keyed ({length} digits, not recorded)", n)
            if intent == "agent":
                return Phrase("Verification digits said ({length} digits, not recorded) → agent",
                              n)
            return Phrase("Verification digits said ({length} digits, not recorded)", n)
        case LanguageChosen(language=language, by=by):
            return Phrase("Language {language} (by {by})",
                          {"language": _code("language", language), "by": _code("chosen_by", by)})
        case IntentChosen(intent=intent, by=by):
            return Phrase("Asked for: {intent} (by {by})",
                          {"intent": _code("intent", intent), "by": _code("chosen_by", by)})
        case ArticleRead(article_id=article_id, title=title):
            return Phrase("Heard knowledge article {article_id}: {title}",
                          {"article_id": article_id, "title": title})
        case KeysEntered(keys=keys):
            return Phrase("Keyed: {keys}", {"keys": keys})
        case SpeechHeard(text=text, intent=intent):
            if intent:
                return Phrase("Said: “{text}” → {intent}",
                              {"text": text or "", "intent": _code("intent", intent)})
            return Phrase("Said: “{text}”", {"text": text or ""})
        case CaseNumberInvalid(digits=digits):
            return Phrase("Invalid case number {digits}", {"digits": digits})
        case CaseNumberConfirmed(number=number):
            return Phrase("Case number confirmed: {number}", {"number": number})
        case CaseNumberRejected():
            return Phrase("Caller rejected the case number read back")
        case CaseLookedUp(number=number, found=found):
            if found:
                return Phrase("Looked up case {number}: found", {"number": number})
            return Phrase("Looked up case {number}: not found", {"number": number})
        case NoSuchCase(number=number):
            return Phrase("No case {number}", {"number": number})
        case LookupBlocked():
            return Phrase("Case lookups blocked: too many failed attempts")
        case VerificationResult():
            return _verified_line(step)
        case StatusTold(case=case, stage=stage, verified=verified):
            told = {"case": case, "stage": _code("stage", stage)}
            if verified:
                return Phrase("Told case {case} is {stage} (full status)", told)
            return Phrase("Told case {case} is {stage} (stage only)", told)
        case StatusRepeated():
            return Phrase("Asked to hear the status again")
        case CaseUrged(case=case, count=count):
            if count:
                return Phrase("Urged case {case} (催办), {count} in all",
                              {"case": case, "count": count})
            return Phrase("Urged case {case} (催办)", {"case": case})
        case RouteChosen(route=route, reason=reason):
            if reason:
                return Phrase("Routed to {route} ({reason})",
                              {"route": _code("route", route),
                               "reason": _code("route_reason", reason)})
            return Phrase("Routed to {route}", {"route": _code("route", route)})
        case NothingHeard(state=state):
            return Phrase("No input ({state})", {"state": _code("ivr_state", state)})
        case NotUnderstood(state=state):
            return Phrase("Not understood ({state})", {"state": _code("ivr_state", state)})
        case CallerLeftIvr(state=state):
            return Phrase("Caller left the IVR ({state})", {"state": _code("ivr_state", state)})
        case QueueAbandoned():
            return Phrase("Caller hung up while waiting")
        case CallbackRequested(reason=reason, merged=merged):
            why = {"reason": _code("callback_reason", reason)}
            if merged:
                return Phrase("Missed call merged into the open callback ({reason})", why)
            return Phrase("Callback requested ({reason})", why)
        case CallbackNotPossible(reason=reason):
            return Phrase("No callback possible: the number is {reason}",
                          {"reason": _code("number_problem", reason)})
        case CallbackClosedByCall():
            return Phrase("The open callback was closed: the resident called in")
        case CallbackOffered(reason=reason, answer=answer):
            return Phrase("Callback offered ({reason}): {answer}",
                          {"reason": _code("callback_reason", reason),
                           "answer": _code("offer_answer", answer)})
        case CallbackDialling(attempt=attempt, reason=reason):
            return Phrase("This is a callback ({reason}), attempt {attempt}",
                          {"reason": _code("callback_reason", reason), "attempt": attempt})
        case CallbackOutcome(outcome=outcome, by=by):
            return Phrase("Callback outcome: {outcome} ({by})",
                          {"outcome": _code("callback_outcome", outcome),
                           "by": _code("outcome_by", by)})
        case CallReconciled(ended_at=ended_at):
            return Phrase("Ended while the hotline service was down; closed from Asterisk's "
                          "record (ended {ended_at})", {"ended_at": ended_at})
        case (IvrAtCapacity() | SurveyStarted() | SurveyRated() | SurveyUnrated()
              | SurveyCommented() | SurveyAbandoned() | SurveyEnded() | SurveySkipped()
              | SurveyWriteDeferred() | CommentTranscribed() | UnknownStep()):
            return _as_fields(step)
        case _:
            assert_never(step)


def transcript_text(step: Step) -> str | None:
    """One step as a line for the agent, in English; None for steps the agent does not
    need (see :func:`transcript_phrase`)."""
    phrase = transcript_phrase(step)
    return None if phrase is None else ENGLISH.phrase(phrase)


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
        phrase = transcript_phrase(step)
        if phrase is not None:
            transcript.append(TranscriptLine(at, step.kind, ENGLISH.phrase(phrase), phrase))
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

    def to_json(self, t: Translator | None = None) -> dict[str, Any]:
        """``t``: the reader's language for the transcript (English without one)."""
        r = self.request
        return {"request_id": r.id, "reason": r.reason,
                "reason_label": (t or ENGLISH).label("callback_reason", r.reason),
                "attempt": self.attempt,
                "attempts": r.attempts, "status": r.status,
                "called_at": (r.queued_at or r.created_at).isoformat(),
                "requested_at": r.created_at.isoformat(), "waited_s": r.waited_s,
                "language": r.language, "note": r.note,
                "transcript": [line.to_json(t) for line in self.transcript]}


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
    """The case the caller asked about in the IVR, with its stage and history (else
    :attr:`linked_case`'s)."""
    resident_cases: tuple[CaseLine, ...] = ()
    recent: tuple[ConsultationDetail, ...] = ()
    """The caller's last consultations before this one, newest first."""
    default_address: str | None = None
    callback: CallbackCard | None = None
    """Set when the call is a callback to a missed caller."""
    linked_case: str | None = None
    """The case the agent created or linked last on this call (kept in memory for the pop's
    rebuilds): the case card shows it when the caller asked about none, so the agent can
    move it on (dispatch it) at once."""

    def to_json(self, *, viewer_role: str, reveal: bool = False,
                t: Translator | None = None) -> dict[str, Any]:
        """What this viewer may see; ``reveal`` when the caller is connected to them; the
        transcripts in ``t``'s language (English without one)."""
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
                "transcript": [line.to_json(t) for line in self.ivr.transcript],
                "path": list(self.ivr.path),
                "recording": self.ivr.recording is not None,
            },
            "case": (case.to_json(viewer_role=viewer_role,
                                  reveal_phone=same_phone(case.contact_phone))
                     if case else None),
            "resident_cases": [c.to_json() for c in self.resident_cases],
            "callback": self.callback.to_json(t) if self.callback else None,
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
                           so_far: CallSoFar | None = None,
                           linked_case: str | None = None) -> ScreenPop:
    """Everything the desk shows about this call. The IVR's part is ``so_far`` (the call's
    events the desk hub holds) when that is the whole call; otherwise what the consultation
    recorder has written, with the steps of ``so_far`` it has not written yet. The rest
    (resident, cases, earlier calls) is history, read from the database. ``linked_case``: the
    case the agent created or linked last on this call (the desk hub holds it), shown on the
    case card when the caller asked about none."""
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
    shown = ivr.asked_case or linked_case
    if shown:
        try:
            case = await case_service.get_case(sessions, shown)
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
                     await callback_card(sessions, steps), linked_case)
