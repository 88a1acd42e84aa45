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
    # zhoff: the office pages (callbacks, knowledge, supervision, department, data, audit)
    "audit_action": {
        "account.locale": "Chose the interface language",
        "agent.bind_department": "Bound an account to a department",
        "token.bind_department": "Bound an API token to a department",
        "api_token.create": "Created an API token", "api_token.revoke": "Revoked API tokens",
        "audit.read": "Searched the audit log", "call.transfer": "Transferred a call",
        "callback_outcome": "Recorded a callback's outcome",
        "callback_cancel": "Cancelled a callback", "callback_reassign": "Reassigned a callback",
        "callback_assignment_lapsed": "A callback's assignment lapsed",
        "case.create": "Created a case", "case.update": "Updated a case",
        "case.read": "Read a case", "case.access_denied": "Refused access to a case",
        "case.link_denied": "Refused to link a case",
        "case.dept_accept": "Department accepted a case",
        "case.dept_reply": "Department replied to a case",
        "case.dept_return": "Department asked to return a case",
        "case.dept_extension": "Department asked for an extension",
        "case.return_ruling": "Ruled on a returned case",
        "case.extension_decision": "Decided on an extension",
        "case.remind": "Reminded a department", "case.urge": "Resident urged a case",
        "console.login": "Signed in to the console",
        "console.login_failed": "Console sign-in failed",
        "console.login_refused": "Console sign-in refused",
        "console.logout": "Signed out of the console",
        "consultation.link_case": "Linked a case to a call",
        "consultation.update": "Updated a call record",
        "consultation.read": "Read a call record",
        "consultation.search": "Searched call records",
        "consultation.view": "Viewed a call record (command line)",
        "desk.login": "Signed in at the desk", "desk.login_failed": "Desk sign-in failed",
        "desk.logout": "Signed out of the desk", "desk.pause": "Paused at the desk",
        "desk.ready": "Ready at the desk", "desk.expired": "Desk session expired",
        "desk.session_ended": "Desk session ended",
        "export.csv": "Exported a CSV file",
        "knowledge.create": "Created an article", "knowledge.update": "Updated an article",
        "knowledge.answered": "Answered from an article",
        "pop.view": "Viewed a screen pop",
        "recording.play": "Played a recording",
        "recording.range": "Read part of a recording",
        "survey_comment.play": "Played a survey comment",
        "survey_comment.range": "Read part of a survey comment",
        "resident.read": "Read a resident's record",
        "retention.purge": "Purged old records",
        "survey.search": "Searched surveys", "survey.view": "Viewed a survey",
        "survey_follow_up.search": "Searched follow-ups",
        "survey_follow_up.assign": "Assigned a follow-up",
        "survey_follow_up.close": "Closed a follow-up",
        "departments.import": "Imported departments",
        "departments.import_refused": "Refused a departments import",
        "departments.export": "Exported departments",
        "categories.import": "Imported case categories",
        "categories.import_refused": "Refused a case categories import",
        "categories.export": "Exported case categories",
        "agents.import": "Imported agents", "agents.import_refused": "Refused an agents import",
        "agents.export": "Exported agents",
        "residents.import": "Imported residents",
        "residents.import_refused": "Refused a residents import",
        "residents.export": "Exported residents",
    },
    "audit_object": {
        "agent": "Account", "api_token": "API token", "audit": "Audit log",
        "callback_request": "Callback request", "case": "Case", "consultation": "Call record",
        "knowledge_article": "Knowledge article", "resident": "Resident record",
        "retention": "Retention", "survey": "Survey", "survey_follow_up": "Follow-up",
        "service_levels": "Service levels", "departments": "Departments",
        "categories": "Case categories", "agents": "Agents", "residents": "Residents",
    },
    "audit_actor": {
        "agent": "Account", "token": "API token", "system": "System",
        "system:reminders": "System (reminders)", "resident": "Resident",
        "cli": "Command line", "demo": "Demo data", "retention": "Retention",
    },
    "audit_detail": {
        "via": "via", "query": "query", "rows": "rows", "file": "file", "range": "range",
        "call_id": "call", "case": "case", "cases": "cases", "consultation": "call record",
        "consultations": "call records", "title": "title", "changed": "changed",
        "department": "department", "request": "request", "ids": "records", "to": "to",
        "retry_after": "retry after", "phone_revealed": "phone shown", "name": "name",
        "locale": "language", "limit": "limit", "from_agent_id": "from agent",
        "assignee": "assignee", "wanted": "wanted", "waited_s": "waited (s)",
        "ties": "ties", "status": "status", "scopes": "scopes", "ruling": "ruling",
        "role": "role", "resident": "resident", "removed": "removed", "phone": "phone",
        "phase": "phase", "outcome": "outcome", "note": "note", "granted": "granted",
        "count": "count", "by": "by", "article": "article", "created": "added",
        "updated": "updated", "problems": "problems", "stage": "stage", "stages": "stages",
        "field": "field", "allowed_from": "allowed from", "categories": "categories",
        "notes": "notes", "cutoffs": "cutoffs", "since": "from", "until": "to",
        "actor": "actor", "action": "action", "object_type": "object",
        "object_id": "record", "agent": "agent", "survey": "survey", "score": "score",
        "reason": "reason",
    },
    "audit_via": {
        "console": "console", "desk": "agent desk", "desk.stage": "agent desk (stage)",
        "desk.repeats": "agent desk (repeat calls)", "desk.create": "agent desk (new case)",
        "api": "open API", "api.get": "open API (read)", "api.repeats": "open API (repeat calls)",
        "cli": "command line", "push": "screen pop", "refresh": "desk refresh",
    },
    "article_field": {
        "title": "Title", "body": "Text", "answer_cmn": "Mandarin spoken answer",
        "answer_en": "English spoken answer", "answer_ko": "Korean spoken answer",
        "ivr_key": "IVR key", "review_date": "Review date", "category": "Category code",
        "department": "Owner department", "article": "Article",
    },
    "audit_status": {"open": "open", "closed": "closed", "all": "all"},
    "dispatch_request": {"return": "Return", "extension": "Deadline extension"},
    "case_reminder": {"overdue": "Overdue", "due_soon": "Due soon"},
    "data_kind": {"departments": "Departments", "categories": "Case categories",
                  "agents": "Agents", "residents": "Residents"},
    "data_column": {
        "code": "code", "name": "name", "name_en": "name_en", "name_ko": "name_ko",
        "phone": "phone", "parent": "parent", "time_limit": "time_limit",
        "department": "department", "phones": "phones",
        "preferred_language": "preferred_language", "community": "community",
        "login": "login", "role": "role", "extension": "extension", "languages": "languages",
    },
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
