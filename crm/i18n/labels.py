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
    # zhrep (the console's reports)
    "survey_outcome": {"in_progress": "Survey running", "rated": "Rated",
                       "no_answer": "Not rated"},
    "follow_up_status": {"open": "Open", "closed": "Done"},
    "prompt": {  # what the IVR played (the prompts of speech/language_packs/*.toml)
        "greeting": "Greeting", "ask_case_number": "Ask for the case number",
        "case_number_invalid": "Case number not valid",
        "confirm_case_number": "Confirm the case number",
        "ask_phone_last4": "Ask for the phone's last four digits",
        "verification_failed": "Phone not verified", "case_not_found": "Case not found",
        "status_full": "Case status, in full", "status_stage_only": "Case stage only",
        "after_status_menu": "Menu after the status", "urge_recorded": "Urge recorded",
        "urge_failed": "Urge not recorded", "service_info": "Service centres and hours",
        "no_input": "Nothing heard", "no_match": "Not understood",
        "transfer_to_agent": "Transfer to an agent", "too_many_attempts": "Too many tries",
        "goodbye": "Goodbye", "survey_intro": "Survey introduction",
        "survey_return_visit_intro": "Return visit introduction",
        "survey_rating": "Ask for a rating", "survey_comment": "Ask for a comment",
        "survey_thanks": "Thanks for the rating", "technical_difficulty": "Technical difficulty",
        "please_wait": "Please wait", "callback_offer": "Offer a callback",
        "callback_confirmed": "Callback confirmed",
        "callback_not_possible": "Callback not possible", "ask_topic": "Ask for a topic",
        "knowledge_answer": "Knowledge base answer",
    },
    # zhdesk: the codes in the screen pop's IVR transcript (crm.live.screen_pop)
    "chosen_by": {"keys": "keys", "key": "a key", "speech": "speech",
                  "profile": "the resident's profile"},
    "ivr_state": {"greeting": "greeting", "case_number": "case number",
                  "confirm_case": "case number check", "lookup": "case lookup",
                  "verify_last4": "last four digits", "status_menu": "status menu",
                  "topic": "topic", "done": "goodbye"},
    "route_reason": {"silent": "no input", "greeting repeated": "greeting repeated",
                     "not understood": "not understood", "asked": "asked for it",
                     "not a status request": "not a status request", "stray key": "stray key",
                     "no article": "no article", "invalid numbers": "invalid case numbers",
                     "after status": "after the status", "not found": "case not found",
                     "too many failed attempts": "too many failed attempts"},
    "verification_reason": {"no contact": "no contact phone on the case"},
    "number_problem": {"withheld": "withheld", "malformed": "not a phone number"},
    "offer_answer": {"yes": "yes", "no": "no", "none": "no answer", "withheld": "withheld",
                     "requeue": "back to the queue"},
    "outcome_by": {"system": "the telephone side"},
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
