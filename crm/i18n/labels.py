"""The names of the codes that records carry, in English (the message ids); a catalog gives
them in another language. A page never shows a code where a person reads: it shows
``label(kind, code)``. A code without a name here is shown as it is (and the zh_CN page
test finds it)."""

from __future__ import annotations

from types import MappingProxyType

CLOSED_LOOP = ("accepted", "dispatched", "in_progress", "resolved", "closed",
               "return_visit", "rated")
"""The closed loop of a case as a supervisor reads it (受理 → 派单 → 办理 → 办结 → 结案 →
回访 → 评价). The first five are the case's stages; the last two are what became of the
return visit (crm.surveys)."""

_LABELS: dict[str, dict[str, str]] = {
    "stage": {
        "accepted": "Accepted", "dispatched": "Dispatched", "in_progress": "In handling",
        "resolved": "Replied", "closed": "Closed", "return_visit": "Return visit",
        "rated": "Rated",
    },
    "disposition": {
        "information_given": "Information given", "case_created": "Case created",
        "case_updated": "Case updated", "transferred": "Transferred",
        "callback_required": "Callback required", "complaint_recorded": "Complaint recorded",
        "no_action": "No action",
    },
    "language": {"cmn": "Mandarin", "en": "English", "ko": "Korean", "yue": "Cantonese"},
    "outcome": {
        "ivr_completed": "Finished in the IVR", "to_agent": "To an agent",
        "ivr_fallback": "IVR fallback to an agent", "caller_hung_up": "Caller hung up",
        "abandoned": "Hung up while waiting", "callback": "Callback call",
        "lost": "Lost with its media node", "in_progress": "In progress",
    },
    "agent_status": {
        "available": "Available", "ringing": "Ringing", "on_call": "On call",
        "paused": "Paused", "unavailable": "Phone offline", "unreachable": "Phone unreachable",
        "logged_out": "Not in queue",
    },
    "call_phase": {"ringing": "Ringing", "connected": "On call", "ended": "Wrap-up"},
    "role": {"agent": "Agent", "supervisor": "Supervisor", "admin": "Administrator",
             "department": "Department"},
    "intent": {"check_status": "case status", "service_info": "service information",
               "agent": "a person", "callback": "a callback", "urge": "hurry the case"},
    "route": {"end": "end of call", "agent": "an agent", "fallback": "an agent (fallback)",
              "callback": "a callback", "lost": "lost"},
    "verified_by": {"calling_number": "calling number", "last4": "last four digits",
                    "id_number": "ID number"},
    "channel": {"keys": "keys", "speech": "speech", "ivr_keys": "IVR keys",
                "ivr_speech": "IVR speech", "desk": "agent desk", "api": "open API"},
    "callback_reason": {
        "abandoned": "hung up while waiting", "chosen": "chose a callback",
        "closed": "called while closed", "overload": "line overloaded",
        "no_answer": "no agent answered", "lost": "call lost",
    },
    "callback_status": {
        "pending": "Pending", "dialling": "Dialling", "completed": "Completed",
        "failed": "Failed", "cancelled": "Cancelled", "closed_by_call_in": "Resident called in",
    },
    "callback_outcome": {
        "reached": "Reached", "no_answer": "No answer", "busy": "Busy",
        "wrong_number": "Wrong number", "declined": "Declined",
    },
    "survey_kind": {"after_call": "After the call", "return_visit": "Return visit"},
    "yes_no": {"yes": "Yes", "no": "No"},
    "ami_state": {"disconnected": "disconnected", "connecting": "connecting",
                  "logged_in": "connected", "login_failed": "login refused",
                  "closed": "closed"},
    # domain errors (crm/errors.py: the names their messages give)
    "field": {
        "description": "description", "address": "address", "contact_phone": "contact phone",
        "resident_phone": "resident phone", "note": "note", "notes": "notes",
        "latest_update": "latest update", "stage": "stage", "department": "department",
        "until": "until", "since": "since", "from": "from", "to": "to", "limit": "limit",
        "page": "page", "kind": "kind", "outcome": "outcome", "min_score": "minimum score",
        "max_score": "maximum score", "agent": "agent", "category": "category",
        "phone": "phone", "bucket": "period", "actor": "actor", "action": "action",
        "object_type": "object type", "object_id": "object id", "result": "result",
        "reason": "reason",
    },
    "dispatch_request_kind": {"return": "return", "extension": "extension"},
    "dispatch_request_status": {"pending": "pending", "granted": "granted",
                                "refused": "refused"},
    "period_bucket": {"hour": "hour", "day": "day"},
}
LABELS = MappingProxyType({k: MappingProxyType(v) for k, v in _LABELS.items()})


def english(kind: str, code: str | None) -> str:
    """The English name of ``code`` (the message id a catalog translates); the code itself
    when it has none."""
    if code is None:
        return ""
    return LABELS.get(kind, {}).get(code, code)


def msgids() -> list[str]:
    """Every label's message id (the catalogs must translate each)."""
    return sorted({name for table in LABELS.values() for name in table.values()})
