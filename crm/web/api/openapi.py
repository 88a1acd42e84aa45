"""The OpenAPI 3.1 document of the open API (crm.web.api.routes), written by hand.

Request bodies are the JSON Schemas of the very pydantic models the handlers validate with,
so they cannot drift; responses are described here and checked against real responses by
tests/api/test_openapi.py, which also checks that every route is documented and vice versa.
"""

from __future__ import annotations

import functools
from typing import Any

from crm.agents.tokens import SCOPES
from crm.cases.service import STAGES
from crm.consultations.service import DISPOSITIONS
from crm.reports import service_levels as levels
from crm.web.api.schemas import (
    MAX_BODY_BYTES,
    CaseCreate,
    CaseUpdate,
    DepartmentAccept,
    DepartmentExtension,
    DepartmentReply,
    DepartmentReturn,
    ExtensionDecision,
    ReturnRuling,
)

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_NTIME = {"type": ["string", "null"], "format": "date-time"}
_CODE_NAME = {"type": "object", "required": ["code", "name"], "additionalProperties": False,
              "properties": {"code": _STR, "name": _STR}}
_RESIDENT = {
    "type": ["object", "null"], "required": ["name", "id_number"], "additionalProperties": False,
    "properties": {"name": _STR, "id_number": {
        **_NSTR, "description": "only ever the last four digits, e.g. ****2316"}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any], *, nullable: bool = False, optional: tuple[str, ...] = (),
         description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": ["object", "null"] if nullable else "object",
        "required": [k for k in properties if k not in optional],
        "additionalProperties": False, "properties": properties}
    if description:
        schema["description"] = description
    return schema


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _response(description: str, schema_name: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": _json_content(_ref(schema_name)), **extra}


SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({
        "code": {**_STR, "description": "stable, machine-readable: e.g. invalid_transition"},
        "message": {**_STR, "description": "for people, in English (the console and the "
                                           "desk show theirs in the reader's language); may "
                                           "change"},
        "details": {"type": "object", "description": "extra facts, depending on the code"},
    }, optional=("details",))}),
    "CaseCreate": CaseCreate.model_json_schema(),
    "CaseUpdate": {**CaseUpdate.model_json_schema(), "minProperties": 1},
    "HistoryEntry": _obj({
        "at": _TIME, "actor": {**_STR, "description": "token:<name>, agent:<login>, ..."},
        "from_stage": _NSTR, "to_stage": _NSTR, "from_department": _NSTR,
        "to_department": _NSTR, "latest_update": _NSTR, "note": _NSTR}),
    "Case": _obj({
        "number": {**_STR, "pattern": "^[0-9]{11}$"},
        "stage": {"enum": list(STAGES)},
        "next_stages": {"type": "array", "items": {"enum": list(STAGES)}},
        "category": _CODE_NAME,
        "department": {**_CODE_NAME, "type": ["object", "null"]},
        "description": _STR,
        "contact_phone": _NSTR,
        "address": _NSTR,
        "resident": _RESIDENT,
        "deadline": _TIME,
        "overdue": {"type": "boolean"},
        "latest_update": _NSTR,
        "created_at": _TIME,
        "updated_at": _TIME,
        "history": {"type": "array", "items": _ref("HistoryEntry")},
        "consultations": {"type": "array", "items": {"type": "integer"},
                          "description": "ids of consultations about this case"},
    }),
    "CaseReceipt": _obj({
        "number": {**_STR, "pattern": "^[0-9]{11}$"},
        "stage": {"enum": list(STAGES)},
        "updated_at": _TIME,
    }, description="What a write returns to a token without cases:read: the case's number, "
                   "its stage and when it last changed, nothing about the resident."),
    "Step": _obj({"at": _TIME, "kind": _STR, "detail": {"type": "object"}}),
}
_WRITTEN_CASE = {"anyOf": [_ref("Case"), _ref("CaseReceipt")]}
_SCOPES_OF_WRITES = (
    " What comes back depends on the token: with cases:read as well, the whole case (and "
    "that read is audited); with cases:write alone, only a CaseReceipt (number, stage, "
    "updated_at): a scope to write is not a scope to read.")
_CONSULTATION = {
    "id": {"type": "integer"},
    "call_id": _STR,
    "caller_number": _NSTR,
    "caller_name": _NSTR,
    "started_at": _NTIME,
    "ended_at": _NTIME,
    "duration_s": {"type": ["number", "null"]},
    "outcome": _NSTR,
    "ivr_route": _NSTR,
    "hangup_cause": _NSTR,
    "hangup_party": {"enum": ["caller", "agent", "ivr", "system", None]},
    "notes": _NSTR,
    "disposition": {"enum": [*DISPOSITIONS, None]},
    "agent": _obj({"login": _STR, "name": _STR}, nullable=True),
    "resident": _RESIDENT,
    "cases": {"type": "array", "items": _STR},
}
SCHEMAS["RepeatCandidates"] = _obj({"repeats": {"type": "array", "items": _obj({
    "number": _STR, "stage": _STR, "category_name": _STR, "address": _NSTR, "description": _STR,
    "created_at": _TIME, "calls": {"type": "integer", "minimum": 0},
    "address_similarity": {"type": ["number", "null"], "minimum": 0, "maximum": 1}})}})
SCHEMAS["ConsultationSummary"] = _obj(_CONSULTATION)
SCHEMAS["Consultation"] = _obj({**_CONSULTATION,
                                "steps": {"type": "array", "items": _ref("Step")}})
SCHEMAS["ConsultationList"] = _obj({"consultations": {
    "type": "array", "items": _ref("ConsultationSummary")}})

_COUNT = {"type": "integer", "minimum": 0}
_NCOUNT = {"type": ["integer", "null"], "minimum": 0}
_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_NSECONDS = {"type": ["number", "null"], "minimum": 0}
_LEVEL_FIELDS: dict[str, Any] = {
    "start": {**_STR, "format": "date-time", "description": "local start of the bucket"},
    "end": {**_STR, "format": "date-time", "description": "local end (excluded)"},
    **{key: _NCOUNT if key.startswith("callbacks_") else _COUNT for key in levels.COUNTS},
    **{key: _NSECONDS if key.endswith("_s") else
       {"type": ["number", "null"], "minimum": 1, "maximum": 5} if key == "average_score"
       else _RATE for key in levels.VALUES},
    "below_target": {"type": "array", "items": {"enum": [
        f.key for f in levels.FIGURES if f.target]},
        "description": "the figures with a target that this bucket falls short of"},
}
SCHEMAS["ServiceLevelBucket"] = _obj(_LEVEL_FIELDS, description=(
    "The figures of one hour or day (or of the whole period). Counts are whole; rates are "
    "shares 0..1 (4 decimals); seconds to 0.1; null where there is nothing to divide by, and "
    "the callback counts are null where the database has no callback requests table."))
SCHEMAS["ServiceLevels"] = _obj({
    "from": {**_STR, "format": "date"}, "to": {**_STR, "format": "date"},
    "bucket": {"enum": list(levels.BUCKETS)},
    "timezone": {**_STR, "description": "the hotline's zone: days and hours are local to it"},
    "targets": {"type": "object", "additionalProperties": {"type": "number"},
                "description": "answer_within_s, short_abandon_s, and the target share of "
                               "each figure that has one"},
    "total": _ref("ServiceLevelBucket"),
    "buckets": {"type": "array", "items": _ref("ServiceLevelBucket")},
})

RESPONSES = {
    "BadRequest": _response("bad input: malformed JSON, wrong types, unknown fields, bad "
                            "parameters", "Error"),
    "Unauthorized": _response("no token, or the token is unknown or revoked", "Error",
                              headers={"WWW-Authenticate": {"schema": _STR}}),
    "Forbidden": _response("the token lacks the scope this needs (code insufficient_scope)",
                           "Error"),
    "NotFound": _response("no such case or consultation", "Error"),
    "Conflict": _response("clashes with the case's state, e.g. invalid_transition", "Error"),
    "TooLarge": _response(f"body larger than {MAX_BODY_BYTES} bytes", "Error"),
    "UnsupportedMediaType": _response("the body is not sent as application/json", "Error"),
}

_NUMBER = {"name": "number", "in": "path", "required": True,
           "description": "case number: 11 digits, the last a Damm check digit",
           "schema": {"type": "string", "pattern": "^[0-9]{11}$"}}


def _errors(*names: str) -> dict[str, Any]:
    statuses = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403",
                "NotFound": "404", "Conflict": "409", "TooLarge": "413",
                "UnsupportedMediaType": "415"}
    return {statuses[n]: {"$ref": f"#/components/responses/{n}"} for n in names}


def _scope(scope: str) -> list[dict[str, list[str]]]:
    return [{"bearerToken": [scope]}]


PATHS: dict[str, Any] = {
    "/api/cases": {"post": {
        "operationId": "createCase", "summary": "Accept a new case (work order)",
        "description": "The number is allocated here; the department comes from the category "
                       "and the deadline from its time limit. The case starts as accepted."
                       + _SCOPES_OF_WRITES,
        "security": _scope("cases:write"),
        "requestBody": {"required": True, "content": _json_content(_ref("CaseCreate"))},
        "responses": {
            "201": {"description": "the new case (whole, or its receipt: see above)",
                    "content": _json_content(_WRITTEN_CASE),
                    "headers": {"Location": {"schema": _STR}}},
            **_errors("BadRequest", "Unauthorized", "Forbidden", "Conflict", "TooLarge",
                      "UnsupportedMediaType")}}},
    "/api/cases/repeats": {"get": {
        "operationId": "getRepeatCandidates",
        "summary": "Open cases a new request may repeat (重复诉求), the most alike first",
        "description": "Open cases accepted within [repeat_requests] window_days under the "
                       "same category, of the same resident or phone, at a similar address "
                       "(a missing address cannot rule a case out: those come last). `calls` "
                       "counts the calls linked to each case. Each case shown is an audited "
                       "read.",
        "security": _scope("cases:read"),
        "parameters": [
            {"name": "category", "in": "query", "required": True, "schema": _STR},
            {"name": "phone", "in": "query", "required": True,
             "schema": {"type": "string", "pattern": "^\\+?[0-9]{3,20}$"}},
            {"name": "address", "in": "query", "schema": {"type": "string", "maxLength": 256}}],
        "responses": {"200": _response("the candidates (at most five)", "RepeatCandidates"),
                      **_errors("BadRequest", "Unauthorized", "Forbidden")}}},
    "/api/cases/{number}": {
        "parameters": [_NUMBER],
        "get": {
            "operationId": "getCase", "summary": "A case with its stage, department, deadline "
                                                 "and history (the read is audited)",
            "security": _scope("cases:read"),
            "responses": {"200": _response("the case", "Case"),
                          **_errors("BadRequest", "Unauthorized", "Forbidden", "NotFound")}},
        "patch": {
            "operationId": "updateCase", "summary": "Move a case to another stage, department, "
                                                    "or add a note or progress message",
            "description": "Stages: accepted -> dispatched -> in_progress -> resolved -> "
                           "closed; resolved -> in_progress reopens. Any other stage change "
                           "is refused with 409 invalid_transition. The IVR sees the change "
                           "at once." + _SCOPES_OF_WRITES,
            "security": _scope("cases:write"),
            "requestBody": {"required": True, "content": _json_content(_ref("CaseUpdate"))},
            "responses": {"200": {"description": "the case after the change (whole, or its "
                                                 "receipt: see above)",
                                  "content": _json_content(_WRITTEN_CASE)},
                          **_errors("BadRequest", "Unauthorized", "Forbidden", "NotFound",
                                    "Conflict", "TooLarge", "UnsupportedMediaType")}}},
    "/api/consultations": {"get": {
        "operationId": "listConsultations",
        "summary": "Consultations (calls), newest first (the search is audited)",
        "security": _scope("consultations:read"),
        "parameters": [
            {"name": "phone", "in": "query", "schema": {"type": "string",
                                                        "pattern": r"^\+?[0-9]{3,20}$"},
             "description": "caller's number"},
            {"name": "case", "in": "query", "schema": {"type": "string",
                                                       "pattern": "^[0-9]{11}$"},
             "description": "only consultations linked to this case"},
            {"name": "since", "in": "query", "schema": {"type": "string"},
             "description": "ISO 8601 date or date-time; without an offset it is UTC"},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
        ],
        "responses": {"200": _response("matching consultations, without their steps",
                                       "ConsultationList"),
                      **_errors("BadRequest", "Unauthorized", "Forbidden")}}},
    "/api/consultations/{id}": {"get": {
        "operationId": "getConsultation",
        "summary": "One consultation with its IVR steps (the read is audited)",
        "security": _scope("consultations:read"),
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 0}}],
        "responses": {"200": _response("the consultation", "Consultation"),
                      **_errors("Unauthorized", "Forbidden", "NotFound")}}},
    "/api/service-levels": {"get": {
        "operationId": "getServiceLevels",
        "summary": "The 12345 service-level figures of a period, by hour or by day",
        "description": "Calls offered, answered by a person, 接通率 (answered by a person or "
                       "finished in self-service, of the calls offered), the share answered "
                       "within the threshold (of the calls that reached the queue), abandon "
                       "rate and short abandons, average and 90th percentile wait, average "
                       "handle time, self-service share, callbacks and 满意率 with the average "
                       "score; definitions in docs/service-levels.md. Aggregates only: no "
                       "resident's data, so the read is not audited. `format=csv` returns the "
                       "buckets as CSV, one row each, the same columns as the JSON keys.",
        "security": _scope("reports:read"),
        "parameters": [
            {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"},
             "description": "first local day (default: 29 days before `to`; hour: `to`)"},
            {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"},
             "description": "last local day, included (default: today)"},
            {"name": "bucket", "in": "query",
             "schema": {"enum": list(levels.BUCKETS), "default": "day"},
             "description": f"hour (at most {levels.MAX_DAYS['hour']} days) or day (at most "
                            f"{levels.MAX_DAYS['day']} days)"},
            {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"],
                                                         "default": "json"}},
        ],
        "responses": {"200": {"description": "the figures",
                              "content": {**_json_content(_ref("ServiceLevels")),
                                          "text/csv": {"schema": _STR}}},
                      **_errors("BadRequest", "Unauthorized", "Forbidden")}}},
    "/api/openapi.json": {"get": {
        "operationId": "getOpenApi", "summary": "This document", "security": [],
        "responses": {"200": {"description": "OpenAPI 3.1 document",
                              "content": _json_content({"type": "object"})}}}},
}


# -- dispatch and supervision ----------------------------------------------------------------
_DEPT_NOTE = (" Only with a token bound to a department (`hotline token bind-department`), and "
              "only on that department's cases: another department's case answers 404 like a "
              "missing one.")
for _name, _model in (("DepartmentAccept", DepartmentAccept),
                      ("DepartmentReturn", DepartmentReturn),
                      ("DepartmentExtension", DepartmentExtension),
                      ("DepartmentReply", DepartmentReply), ("ReturnRuling", ReturnRuling),
                      ("ExtensionDecision", ExtensionDecision)):
    SCHEMAS[_name] = _model.model_json_schema()
SCHEMAS["DispatchRequest"] = _obj({
    "id": {"type": "integer"}, "case_number": _STR, "department": _STR,
    "kind": {"enum": ["return", "extension"]}, "reason": _STR,
    "requested_deadline": _NTIME, "status": {"enum": ["pending", "granted", "refused"]},
    "requested_by": _STR, "requested_at": _TIME, "decided_by": _NSTR, "decided_at": _NTIME,
    "decision_note": _NSTR})
SCHEMAS["DispatchRequestList"] = _obj({"requests": {"type": "array",
                                                    "items": _ref("DispatchRequest")}})
SCHEMAS["SupervisedCase"] = _obj({
    "number": _STR, "stage": {"enum": list(STAGES)}, "stage_label": _STR,
    "department": _NSTR, "category": _STR, "deadline": _TIME,
    "urges": {**_COUNT, "description": "times residents urged it (催办)"},
    "pending_requests": _COUNT})
SCHEMAS["SupervisedCaseList"] = _obj({"cases": {"type": "array",
                                                "items": _ref("SupervisedCase")}})
SCHEMAS["Reminder"] = _obj({"id": {"type": "integer"}, "case_number": _STR,
                            "department": _STR, "kind": {"enum": ["due_soon", "overdue"]},
                            "deadline": _TIME, "at": _TIME})
SCHEMAS["ReminderList"] = _obj({"reminders": {"type": "array", "items": _ref("Reminder")}})


def _act(op_id: str, summary: str, body: str, ok: dict[str, Any], status: str = "200",
         description: str = "") -> dict[str, Any]:
    return {"parameters": [_NUMBER], "post": {
        "operationId": op_id, "summary": summary, "description": description + _DEPT_NOTE,
        "security": _scope("cases:write"),
        "requestBody": {"required": True, "content": _json_content(_ref(body))},
        "responses": {status: ok, **_errors("BadRequest", "Unauthorized", "Forbidden",
                                            "NotFound", "Conflict", "TooLarge",
                                            "UnsupportedMediaType")}}}


_ACTED = {"description": "the case after the act (whole, or its receipt)",
          "content": _json_content(_WRITTEN_CASE)}
_REQUESTED = _response("the request, pending until a supervisor decides", "DispatchRequest")
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer",
                                                                  "minimum": 0}}]


def _ruling(op_id: str, summary: str, body: str) -> dict[str, Any]:
    return {"post": {
        "operationId": op_id, "summary": summary,
        "description": "A supervisor's act: a token not bound to a department.",
        "security": _scope("cases:write"), "parameters": _ID,
        "requestBody": {"required": True, "content": _json_content(_ref(body))},
        "responses": {"200": _response("the request, decided", "DispatchRequest"),
                      **_errors("BadRequest", "Unauthorized", "Forbidden", "NotFound",
                                "Conflict", "TooLarge", "UnsupportedMediaType")}}}


def _listing(op_id: str, summary: str, schema: str,
             parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"get": {
        "operationId": op_id, "summary": summary,
        "description": "A department's token gets its own department's only.",
        "security": _scope("cases:read"), "parameters": parameters,
        "responses": {"200": _response("the list", schema),
                      **_errors("BadRequest", "Unauthorized", "Forbidden")}}}


PATHS.update({
    "/api/cases/{number}/accept": _act(
        "acceptCase", "The department takes the case up (dispatched -> in_progress)",
        "DepartmentAccept", _ACTED),
    "/api/cases/{number}/return": _act(
        "returnCase", "The department returns the case with a reason; a supervisor rules",
        "DepartmentReturn", _REQUESTED, "201"),
    "/api/cases/{number}/extension": _act(
        "askExtension", "The department asks for a later deadline; a supervisor decides",
        "DepartmentExtension", _REQUESTED, "201"),
    "/api/cases/{number}/reply": _act(
        "replyCase", "The department replies with the result (in_progress -> resolved)",
        "DepartmentReply", _ACTED),
    "/api/dispatch/requests": _listing(
        "listDispatchRequests", "Returns and extension requests", "DispatchRequestList",
        [{"name": "status", "in": "query",
          "schema": {"enum": ["pending", "granted", "refused", "all"],
                     "default": "pending"}}]),
    "/api/dispatch/returns/{id}/ruling": _ruling(
        "ruleOnReturn", "Rule on a return: redispatch to another department, or uphold the "
                        "dispatch", "ReturnRuling"),
    "/api/dispatch/extensions/{id}/decision": _ruling(
        "decideExtension", "Grant (the deadline moves) or refuse an extension",
        "ExtensionDecision"),
    "/api/supervision/overdue": _listing(
        "listOverdue", "Open cases past their deadline, most overdue first",
        "SupervisedCaseList", []),
    "/api/supervision/due-soon": _listing(
        "listDueSoon", "Open cases due within 24 hours", "SupervisedCaseList", []),
    "/api/reminders": _listing(
        "listReminders", "The reminder feed (due soon, overdue); poll with after=<last id>",
        "ReminderList", [{"name": "after", "in": "query",
                          "schema": {"type": "integer", "minimum": 0, "default": 0}}]),
})


@functools.cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Community hotline open API",
            "version": "1.0.0",
            "description": "Cases (work orders) and consultation records of the community "
                           "service hotline, and its service-level figures (reports:read). "
                           "Send `Authorization: Bearer <token>`; tokens are "
                           "made with `hotline token create --name NAME --scope SCOPE...`. "
                           "Errors are `{\"error\": {\"code\", \"message\"}}` with stable "
                           "codes. Phone numbers are shown in full to token holders; resident "
                           "ID numbers only as their last four digits. Scopes mean what they "
                           "say: residents' data comes back only to a token holding the read "
                           "scope for it (cases:read, consultations:read); a cases:write token "
                           "alone gets a receipt (number, stage, updated_at) from its writes. "
                           "Every read of residents' data, including the case a write returns, "
                           "is in the audit log under the token's name. Tokens belong to "
                           "back-office systems: the agent desk's need-to-know rule (which "
                           "cases an agent may open) applies to desk sessions, not to tokens.",
            "license": {"name": "AGPL-3.0-or-later",
                        "identifier": "AGPL-3.0-or-later"},
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {"bearerToken": {
                "type": "http", "scheme": "bearer",
                "description": "Scopes: " + "; ".join(f"{k}: {v}" for k, v in SCOPES.items()),
            }},
        },
    }
