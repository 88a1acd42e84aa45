"""The CRM's exception tree. Each error has a stable ``code`` that clients may rely on and a
human message; the web layer translates the families below to HTTP in one place
(crm.web.errors), and nothing here knows about HTTP.

A message a person may read is raised as a :class:`~crm.i18n.phrases.Phrase` (an English
message id with ``{placeholders}`` and their values): ``str(exc)`` and ``exc.message`` are its
English text (logs, the open API, the CLI); the console and the desk show ``exc.phrase`` in
their reader's language."""

from __future__ import annotations

from typing import Any

from crm.i18n.phrases import Label, Labels, Phrase


class HotlineError(Exception):
    """Base of every domain error."""

    code = "error"

    def __init__(self, message: str | Phrase, *,
                 details: dict[str, Any] | None = None) -> None:
        text = message.render() if isinstance(message, Phrase) else message
        super().__init__(text)
        self.message = text
        """The English text."""
        self.phrase = message if isinstance(message, Phrase) else None
        """The message for a reader (None: the text, its own message id, is read as it is)."""
        self.details = details or {}


# -- bad input (the request itself is wrong) ------------------------------------------------
class InvalidInput(HotlineError):
    code = "invalid_input"


class UnknownCategory(InvalidInput):
    code = "unknown_category"


class UnknownDepartment(InvalidInput):
    code = "unknown_department"


class UnknownStage(InvalidInput):
    code = "unknown_stage"


class InvalidCaseNumber(InvalidInput):
    code = "invalid_case_number"


class InvalidScope(InvalidInput):
    code = "invalid_scope"


class MalformedJson(InvalidInput):
    code = "malformed_json"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"


class BodyTooLarge(InvalidInput):
    code = "body_too_large"


# -- who is asking ----------------------------------------------------------------------------
class Unauthenticated(HotlineError):
    code = "unauthenticated"


class InvalidToken(Unauthenticated):
    code = "invalid_token"


class PermissionDenied(HotlineError):
    code = "forbidden"


class InsufficientScope(PermissionDenied):
    code = "insufficient_scope"


# -- what is asked for does not exist ---------------------------------------------------------
class NotFound(HotlineError):
    code = "not_found"


class CaseNotFound(NotFound):
    code = "case_not_found"


class ConsultationNotFound(NotFound):
    code = "consultation_not_found"


class AgentNotFound(NotFound):
    code = "agent_not_found"


# -- the request clashes with the current state -----------------------------------------------
class Conflict(HotlineError):
    code = "conflict"


class InvalidTransition(Conflict):
    """A case stage change the workflow does not allow (e.g. accepted -> closed)."""

    code = "invalid_transition"

    def __init__(self, from_stage: str, to_stage: str, allowed: list[str]) -> None:
        values = {"from_stage": Label("stage", from_stage), "to_stage": Label("stage", to_stage),
                  "allowed": Labels("stage", tuple(allowed))}
        super().__init__(
            Phrase("a case cannot go from {from_stage} to {to_stage}; from {from_stage} it may "
                   "go to: {allowed}", values) if allowed else
            Phrase("a case cannot go from {from_stage} to {to_stage}; from {from_stage} it may "
                   "go to: none (the case is closed)", values),
            details={"from": from_stage, "to": to_stage, "allowed": allowed})
        self.from_stage = from_stage
        self.to_stage = to_stage


class AlreadyExists(Conflict):
    code = "already_exists"


class CaseChangedConcurrently(Conflict):
    code = "case_changed"


class CaseNumbersExhausted(Conflict):
    code = "case_numbers_exhausted"


# -- the records cannot be reached (the database is down) ----------------------------------
class RecordsUnavailable(HotlineError):
    """The CRM's records cannot be read or written right now (the database is down or
    refuses). Telephony catches this family to keep a caller's call going without them."""

    code = "records_unavailable"

# -- callback requests (crm.callbacks) ----------------------------------------------------------
class CallbackNotFound(NotFound):
    code = "callback_not_found"


class CallbackClosed(Conflict):
    """The callback request is no longer open (completed, failed, cancelled or closed by the
    resident's own call): it cannot be changed."""

    code = "callback_closed"


class InvalidCallbackOutcome(InvalidInput):
    code = "invalid_callback_outcome"


# -- call events on the wire (crm.telephony.wire: the networked event bus) -----------------------
class WireFormatError(InvalidInput):
    """A call event cannot be written to or read from the wire: a field of the wrong type, a
    naive datetime, text that is not an encoded event. Never dropped silently: the reader
    logs the entry and moves it aside."""

    code = "wire_format"


class UnknownEventType(WireFormatError):
    """An event type this code has no codec for (written by a newer hotline, or a class added
    to the bus without one)."""

    code = "unknown_event_type"


class UnsupportedEventVersion(WireFormatError):
    """A known event type in a version this code cannot read (written by a newer hotline)."""

    code = "unsupported_event_version"
