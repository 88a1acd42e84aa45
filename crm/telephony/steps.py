"""The steps of one call, one class per kind: what the IVR played, heard and decided, and the
call's way through the agent queue, as the consultation records them and the pop shows them.

The IVR's flows and drivers (and the queue tracker, for recordings) publish steps inside
``crm.telephony.events.CallStep``; the consultation recorder stores them (queue events become
steps there too, see ``crm.telephony.events.queue_step``); the screen pop, the console and the
consultation JSON read them back. This module is the contract between them and imports
nothing of the project.

Serialised forms:

- a consultation steps row (and a journal line written before steps were typed):
  ``kind`` + ``detail``, the step's fields by name. Rows hold no version: they are version 1
  (a later version of a step stores ``"v"`` in its detail; a cluster's recorder adds the media
  node it happened on as ``"node"``). :func:`step_from_row` reads them.
- :meth:`StepFields.to_json`: ``{"kind", "v", **fields}``, for journals;
  :func:`step_from_json` reads it, and the row form as well.

A field declared with :func:`optional` is left out of the detail while it holds its default;
every other field is always written, so stored rows look as they always did. Reading, a
missing field takes its default if it has one. A row of a kind this code does not know, of a
newer version, or whose fields do not fit its class reads as an :class:`UnknownStep`, kept as
it was (never lost, never guessed at).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_args

SECRET_INPUT = "verification"
"""A :class:`VerificationDigits` step is stored as an input step (kind ``keys`` or ``speech``)
whose detail is ``{"secret": SECRET_INPUT, "length": n}``: verification digits the caller
entered. What they were is never recorded, only that they were entered and how many."""
_SECRET_PROMPT = "ask_phone_last4"
_SECRET_STATE = "verify_last4"
_RESERVED = frozenset({"kind", "v", "detail", "at"})
ROW_NODE = "node"
"""A steps row's detail may also name the media node the step happened on (a cluster's
recorder adds it from the event); it is not one of the step's fields."""


def optional(default: Any = None) -> Any:
    """A field left out of the stored detail while it holds ``default``."""
    return field(default=default, metadata={"omit_default": True})


@dataclass(frozen=True)
class StepFields:
    """What every step class shares: its stored ``kind``, its ``detail`` and serialisation."""

    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    @property
    def kind(self) -> str:
        return self.KIND

    def detail(self) -> dict[str, Any]:
        """The step's fields as stored in a consultation steps row."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("omit_default") and type(value) is type(f.default) \
                    and value == f.default:
                continue
            out[f.metadata.get("key", f.name)] = value
        return out

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "v": self.VERSION, **self.detail()}

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> Any:
        """The step from its stored fields; ValueError or TypeError if they do not fit."""
        names = {f.metadata.get("key", f.name): f.name for f in dataclasses.fields(cls)}
        unknown = set(detail) - set(names)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
        return cls(**{names[key]: value for key, value in detail.items()})


# -- the IVR dialogue ----------------------------------------------------------------------------
@dataclass(frozen=True)
class IvrConnected(StepFields):
    """The IVR took the call (its media socket connected)."""

    KIND = "ivr_connected"
    caller_known: bool


@dataclass(frozen=True)
class PromptPlayed(StepFields):
    KIND = "prompt"
    prompt: str
    language: str | None = None


@dataclass(frozen=True)
class BargeIn(StepFields):
    """The caller keyed or spoke during a prompt, which stopped it."""

    KIND = "barge_in"
    prompt: str


@dataclass(frozen=True)
class KeysEntered(StepFields):
    KIND = "keys"
    keys: str


@dataclass(frozen=True)
class SpeechHeard(StepFields):
    KIND = "speech"
    text: str
    confidence: float | None = None
    intent: str | None = None
    digits: str = ""
    rating: int | None = optional()
    """A satisfaction score 1..5, when listening with the ``rating`` grammar."""


@dataclass(frozen=True)
class VerificationDigits(StepFields):
    """The caller keyed or said verification digits (see :data:`SECRET_INPUT`): only how
    many, never which. Stored as an input step of kind ``via``."""

    via: str
    """keys or speech"""
    length: int
    confidence: float | None = None
    intent: str | None = None
    """Set only when the caller asked for an agent instead (``agent``)."""

    @property
    def kind(self) -> str:
        return self.via

    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {"secret": SECRET_INPUT, "length": self.length}
        if self.confidence is not None:
            out["confidence"] = self.confidence
        if self.intent is not None:
            out["intent"] = self.intent
        return out

    @classmethod
    def from_row(cls, kind: str, detail: Mapping[str, Any]) -> VerificationDigits:
        if detail.get("secret") != SECRET_INPUT or set(detail) - {
                "secret", "length", "confidence", "intent"}:
            raise ValueError(f"not a verification input: {sorted(detail)}")
        return cls(kind, int(detail.get("length") or 0), detail.get("confidence"),
                   detail.get("intent"))


@dataclass(frozen=True)
class NothingHeard(StepFields):
    """No input before the timeout, in the flow's ``state``; ``count`` of them in a row."""

    KIND = "no_input"
    state: str
    count: int | None = optional()


@dataclass(frozen=True)
class NotUnderstood(StepFields):
    """Input that answers nothing the flow asked, in its ``state``."""

    KIND = "no_match"
    state: str
    count: int | None = optional()


@dataclass(frozen=True)
class LanguageChosen(StepFields):
    KIND = "language"
    language: str
    by: str
    """profile (the resident's language on file), key or speech"""


@dataclass(frozen=True)
class IntentChosen(StepFields):
    KIND = "intent"
    intent: str
    by: str


@dataclass(frozen=True)
class ArticleRead(StepFields):
    """The IVR read a knowledge-base article's spoken answer to the caller."""

    KIND = "article_read"
    article_id: int
    title: str
    by: str
    """keys or speech: how the caller chose the topic."""


@dataclass(frozen=True)
class CaseNumberInvalid(StepFields):
    KIND = "case_number_invalid"
    digits: str
    attempt: int = field(default=1, metadata={"key": "try"})


@dataclass(frozen=True)
class CaseNumberRejected(StepFields):
    """The caller said the case number read back to them was wrong."""

    KIND = "case_number_rejected"


@dataclass(frozen=True)
class CaseNumberConfirmed(StepFields):
    KIND = "case_number_confirmed"
    number: str


@dataclass(frozen=True)
class CaseLookedUp(StepFields):
    KIND = "case_lookup"
    number: str
    found: bool


@dataclass(frozen=True)
class NoSuchCase(StepFields):
    KIND = "case_not_found"
    number: str


@dataclass(frozen=True)
class LookupBlocked(StepFields):
    """Too many failed lookups from this number lately: no more lookups."""

    KIND = "lookup_blocked"


@dataclass(frozen=True)
class VerificationResult(StepFields):
    """Whether the caller was verified against the case's contact phone."""

    KIND = "verified"
    by: str | None = optional()
    """calling_number or last4 (the last four digits of the contact phone)"""
    result: bool | None = optional()
    """The outcome of a check the caller answered; None when no check was needed."""
    reason: str | None = optional()
    """Why the caller could not be verified (no contact, verification_locked)."""
    length: int | None = optional()
    """How many digits the caller entered (last4)."""

    @property
    def ok(self) -> bool:
        return self.result is not False


@dataclass(frozen=True)
class StatusTold(StepFields):
    KIND = "told"
    case: str
    stage: str
    verified: bool = False
    """The full status (verified caller) rather than the stage only."""


@dataclass(frozen=True)
class StatusRepeated(StepFields):
    KIND = "repeat_status"


@dataclass(frozen=True)
class CaseUrged(StepFields):
    """The caller asked for their overdue case to be hurried (催办); ``count``: how often it
    has been urged in all (None: the urge could not be recorded)."""

    KIND = "urge"
    case: str
    by: str
    """keys or speech"""
    count: int | None = None


@dataclass(frozen=True)
class RouteChosen(StepFields):
    KIND = "route"
    route: str
    """agent or end"""
    reason: str | None = optional()


@dataclass(frozen=True)
class CallerLeftIvr(StepFields):
    """The caller hung up (or the socket broke) in the IVR, in the flow's ``state``."""

    KIND = "caller_left"
    state: str
    reason: str | None = None


@dataclass(frozen=True)
class IvrAtCapacity(StepFields):
    """The IVR was at its limit of calls and handed the caller straight to the queue."""

    KIND = "ivr_at_capacity"
    reason: str
    max_calls: int | None = None


# -- the agent queue (from queue events, see crm.telephony.events.queue_step) -------------------
@dataclass(frozen=True)
class QueueJoined(StepFields):
    KIND = "queued"
    queue: str = ""
    position: int | None = None


@dataclass(frozen=True)
class AgentRung(StepFields):
    KIND = "agent_ringing"
    queue: str = ""
    agent: str | None = None
    """The agent's desk phone (extension)."""
    interface: str = ""


@dataclass(frozen=True)
class AgentNoAnswer(StepFields):
    KIND = "agent_no_answer"
    queue: str = ""
    agent: str | None = None
    ring_time_s: int | None = None


@dataclass(frozen=True)
class AgentConnected(StepFields):
    KIND = "agent_answered"
    queue: str = ""
    agent: str | None = None
    interface: str = ""
    hold_time_s: int | None = None
    resynchronised: bool = optional(False)
    """Known from the resynchronisation after an AMI login, not from the answer itself."""


@dataclass(frozen=True)
class AgentCompleted(StepFields):
    KIND = "agent_completed"
    queue: str = ""
    agent: str | None = None
    talk_time_s: int | None = None
    reason: str | None = None
    """Who hung up: caller, agent or transfer."""


@dataclass(frozen=True)
class QueueAbandoned(StepFields):
    """The caller hung up while waiting in the queue."""

    KIND = "abandoned"
    queue: str = ""
    position: int | None = None
    hold_time_s: int | None = None


@dataclass(frozen=True)
class RecordingStarted(StepFields):
    """The queue call is recorded to ``file`` (the dialplan's HotlineRecording)."""

    KIND = "recording"
    file: str | None
    queue: str | None = None


# -- the satisfaction survey ---------------------------------------------------------------------
@dataclass(frozen=True)
class SurveyStarted(StepFields):
    KIND = "survey_started"
    survey: str
    """after_call or return_visit"""


@dataclass(frozen=True)
class SurveyRated(StepFields):
    KIND = "survey_rating"
    score: int
    by: str


@dataclass(frozen=True)
class SurveyUnrated(StepFields):
    KIND = "survey_unrated"
    misses: int


@dataclass(frozen=True)
class SurveyCommented(StepFields):
    KIND = "survey_comment"
    seconds: float
    """Length of the recorded comment; 0 when the caller left none."""


@dataclass(frozen=True)
class SurveyAbandoned(StepFields):
    KIND = "survey_abandoned"
    state: str


@dataclass(frozen=True)
class SurveyEnded(StepFields):
    KIND = "survey_result"
    survey_id: int
    outcome: str | None
    """rated, no_answer, or deferred (the result waits for the database)"""
    score: int | None = None


@dataclass(frozen=True)
class SurveySkipped(StepFields):
    KIND = "survey_skipped"
    reason: str
    fatigue_days: int | None = optional()
    max_calls: int | None = optional()


@dataclass(frozen=True)
class SurveyWriteDeferred(StepFields):
    """A survey write the database refused, queued to be written later."""

    KIND = "survey_write_deferred"
    survey_id: int
    op: str
    """rating, comment, transcript or finish; the fields below are those of the op."""
    queued: bool
    score: int | None = optional()
    by: str | None = optional()
    path: str | None = optional()
    seconds: float | None = optional()
    text: str | None = optional()


@dataclass(frozen=True)
class CommentTranscribed(StepFields):
    KIND = "survey_comment_text"
    survey_id: int
    text: str


# -- waiting in the queue (from the queue's announcements, see ivr.asterisk.queue_announcements) --
@dataclass(frozen=True)
class QueuePositionAnnounced(StepFields):
    """Asterisk told the waiting caller their place (and the expected wait, and the callback
    key) between the hold music: ``prompt`` is the first sound played, ``seconds`` how long
    the announcement lasted."""

    KIND = "queue_position_announced"
    queue: str = ""
    position: int | None = None
    prompt: str = ""
    language: str | None = None
    seconds: float | None = None
# -- callback requests (crm.callbacks) -------------------------------------------------------
@dataclass(frozen=True)
class CallbackRequested(StepFields):
    """The call left a callback request behind (or merged into the number's open one)."""

    KIND = "callback_requested"
    request_id: int
    reason: str
    """abandoned, chosen, closed, overload or no_answer"""
    merged: bool = False


@dataclass(frozen=True)
class CallbackNotPossible(StepFields):
    """No callback request for this call: the calling number is withheld or malformed."""

    KIND = "callback_not_possible"
    reason: str
    """withheld or malformed"""
    told: bool = False
    """The caller heard why (in the callback offer)."""


@dataclass(frozen=True)
class CallbackClosedByCall(StepFields):
    """The resident called in and was served before we called back: the request is closed."""

    KIND = "callback_closed_by_call"
    request_id: int


@dataclass(frozen=True)
class CallbackOffered(StepFields):
    """The callback offer (dialplan context hotline-callback-offer) and the caller's answer."""

    KIND = "callback_offer"
    reason: str
    """chosen, closed or max_wait (the dialplan's CALLBACK_REASON)"""
    answer: str
    """yes, no, none (no answer), unheard (the IVR could not take the call)"""


@dataclass(frozen=True)
class CallbackDialling(StepFields):
    """This call is a callback: the first step of the callback call's consultation."""

    KIND = "callback_dialling"
    request_id: int
    attempt: int
    reason: str
    order: str
    """agent_first or resident_first"""
    position: int | None = None
    """Where the callback joined the queue (arrival order)."""


@dataclass(frozen=True)
class CallbackOutcome(StepFields):
    """How calling the resident back went, on the callback call's consultation."""

    KIND = "callback_outcome"
    request_id: int
    outcome: str
    """reached, no_answer, busy, wrong_number, declined, or not_dialled (no agent took it)"""
    by: str = "system"
    """system (the telephone side) or agent:<login>"""



@dataclass(frozen=True)
class CallReconciled(StepFields):
    """The call ended while the hotline service was not running: its end, who hung up and
    the queue steps beside this one were taken from Asterisk's own record (``source``) when
    the service started again, not guessed."""

    KIND = "reconciled"
    source: str = "asterisk_cel"
    ended_at: str = ""
    """When the call really ended (ISO 8601): this step is written later, at the start."""


# -- read back but not understood ---------------------------------------------------------------
@dataclass(frozen=True)
class UnknownStep(StepFields):
    """A stored step this code cannot read as one of its classes (an unknown kind, a newer
    version, fields that do not fit): kept exactly as it was."""

    stored_kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    version: int = 1

    @property
    def kind(self) -> str:
        return self.stored_kind

    def detail(self) -> dict[str, Any]:
        return {**self.fields, "v": self.version} if self.version != 1 else dict(self.fields)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.stored_kind, "v": self.version, "detail": dict(self.fields)}


Step = (IvrConnected | PromptPlayed | BargeIn | KeysEntered | SpeechHeard | VerificationDigits
        | NothingHeard | NotUnderstood | LanguageChosen | IntentChosen | ArticleRead
        | CaseNumberInvalid
        | CaseNumberRejected | CaseNumberConfirmed | CaseLookedUp | NoSuchCase | LookupBlocked
        | VerificationResult | StatusTold | StatusRepeated | CaseUrged | RouteChosen | CallerLeftIvr
        | IvrAtCapacity | QueueJoined | AgentRung | AgentNoAnswer | AgentConnected
        | AgentCompleted | QueueAbandoned | RecordingStarted | SurveyStarted | SurveyRated
        | SurveyUnrated | SurveyCommented | SurveyAbandoned | SurveyEnded | SurveySkipped
        | SurveyWriteDeferred | CommentTranscribed | QueuePositionAnnounced
        | CallbackRequested | CallbackNotPossible | CallbackClosedByCall | CallbackOffered
        | CallbackDialling | CallbackOutcome | CallReconciled | UnknownStep)
"""Every step of a call."""
STEP_CLASSES: tuple[type[StepFields], ...] = get_args(Step)
_BY_KIND: dict[str, type[StepFields]] = {cls.KIND: cls for cls in STEP_CLASSES if cls.KIND}
_INPUT_KINDS = (KeysEntered.KIND, SpeechHeard.KIND)
assert len(_BY_KIND) == len([c for c in STEP_CLASSES if c.KIND]), "two classes, one kind"
assert not any(f.metadata.get("key", f.name) in _RESERVED | {ROW_NODE}
               for cls in STEP_CLASSES for f in dataclasses.fields(cls)), "reserved field name"


def step_from_row(kind: str, detail: Mapping[str, Any] | None) -> Step:
    """A step as a consultation steps row holds it (``kind``, ``detail``)."""
    fields = dict(detail or {})
    if isinstance(fields.get(ROW_NODE), str):
        del fields[ROW_NODE]
    version = fields.pop("v", 1) if isinstance(fields.get("v"), int) else 1
    return _parse(kind, version, fields)


def step_from_json(data: Mapping[str, Any]) -> Step:
    """A step from :meth:`StepFields.to_json`, or from the row form ``{"kind", "detail"}`` that
    journals and readers of stored steps held before steps had versions."""
    kind = str(data.get("kind") or "")
    detail = data.get("detail")
    if isinstance(detail, Mapping) and set(data) <= _RESERVED:
        if "v" not in data:
            return step_from_row(kind, detail)
        return _parse(kind, data["v"], dict(detail))
    fields = {k: v for k, v in data.items() if k not in ("kind", "v")}
    return _parse(kind, data.get("v", 1), fields)


def _parse(kind: str, version: Any, fields: dict[str, Any]) -> Step:
    if kind in _INPUT_KINDS and fields.get("secret") is not None:
        cls: type[StepFields] | None = VerificationDigits
    else:
        cls = _BY_KIND.get(kind)
    if cls is None or not isinstance(version, int) or version > cls.VERSION:
        return UnknownStep(kind, fields, version if isinstance(version, int) else 1)
    try:
        if cls is VerificationDigits:
            return VerificationDigits.from_row(kind, fields)
        step: Step = cls.from_detail(fields)
        return step
    except (TypeError, ValueError):
        return UnknownStep(kind, fields, version)


# -- verification digits stored before the IVR redacted them at the source -----------------------
def _answers_secret_prompt(step: Step) -> bool:
    if isinstance(step, VerificationResult):
        return step.by == "last4"
    return isinstance(step, NothingHeard | NotUnderstood) and step.state == _SECRET_STATE


def _entered(step: Step) -> str | None:
    """What an input step holds (keys or spoken digits); None for other steps."""
    if isinstance(step, KeysEntered):
        return step.keys
    if isinstance(step, SpeechHeard):
        return step.digits
    if isinstance(step, UnknownStep) and step.kind in _INPUT_KINDS \
            and step.fields.get("secret") is None:
        return str(step.fields.get("keys") or step.fields.get("digits") or "")
    return None


def redact_secret_steps(steps: Sequence[Step]) -> list[Step]:
    """``steps`` with any verification digits taken out: an input step answering the
    ``ask_phone_last4`` prompt, or followed by the verification's outcome or a re-prompt in
    its state, becomes a :class:`VerificationDigits`. Steps recorded since the IVR redacts at
    the source carry none; this catches those stored before."""
    out = list(steps)
    asked = False
    for i, step in enumerate(out):
        if isinstance(step, PromptPlayed):
            asked = step.prompt.startswith(_SECRET_PROMPT)
            continue
        entered = _entered(step)
        if entered is None:
            if not isinstance(step, BargeIn):
                asked = False
            continue
        following = next((s for s in out[i + 1:] if not isinstance(s, PromptPlayed | BargeIn)),
                         None)
        if asked or (following is not None and _answers_secret_prompt(following)):
            out[i] = VerificationDigits(step.kind, sum(c.isdigit() for c in entered))
        asked = False
    return out


def redact_secret_inputs(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stored steps as rows (``{"kind", "detail", ...}``) with any verification digits taken
    out (see :func:`redact_secret_steps`); other rows are returned as they were."""
    out = [dict(row) for row in rows]
    steps = [step_from_row(str(row.get("kind") or ""), row.get("detail")) for row in out]
    for i, (before, after) in enumerate(zip(steps, redact_secret_steps(steps), strict=True)):
        if after is not before:
            out[i] = {**out[i], "detail": after.detail()}
    return out
