"""The open JSON API, mounted under /api: cases and consultation records for other systems
(department back offices, the city platform), and the hotline's service-level figures for
city dashboards, authorised by bearer tokens with scopes.

Errors are ``{"error": {"code": ..., "message": ...}}``, made in one place (api_errors, from
crm.web.errors' lookup of the domain exception tree in crm.errors). The OpenAPI document is
crm.web.api.openapi.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, TypeVar

from aiohttp import hdrs, web
from pydantic import ValidationError

from crm.agents import tokens as api_tokens
from crm.agents.tokens import TokenRecord
from crm.audit import log as audit
from crm.cases import dispatch, repeats
from crm.cases import service as cases
from crm.categories.time_limits import TimeLimitRules
from crm.consultations import service as consultation_desk
from crm.errors import (
    BodyTooLarge,
    ConsultationNotFound,
    HotlineError,
    InsufficientScope,
    InvalidInput,
    InvalidToken,
    MalformedJson,
    PermissionDenied,
    Unauthenticated,
    UnsupportedMediaType,
)
from crm.reports import service_levels as levels
from crm.settings import RepeatRequestSettings, ServiceLevelSettings
from crm.storage.db import SessionFactory
from crm.web.api.openapi import openapi_document
from crm.web.api.schemas import (
    MAX_BODY_BYTES,
    CaseCreate,
    CaseUpdate,
    DepartmentAccept,
    DepartmentExtension,
    DepartmentReply,
    DepartmentReturn,
    ExtensionDecision,
    RequestBody,
    ReturnRuling,
)
from crm.web.errors import ErrorReply, error_middleware, json_error
from crm.web.session import audit_origin

log = logging.getLogger(__name__)

API_VIEWER_ROLE = "supervisor"
"""Token holders are authorised back-office systems that call residents back: they see phone
numbers in full (every read is audited). ID numbers stay masked for everyone."""

CASE_READ_SCOPE = "cases:read"
"""Protects everything a case holds but its number, stage and last change: a token with only
cases:write gets those three back from its writes (see CaseView.to_receipt)."""

REPORTS_READ_SCOPE = "reports:read"
"""The service-level figures: counts and rates, nothing about any resident."""

API_SESSIONS_KEY = web.AppKey("api_sessions", SessionFactory)
API_NUMBERING_TZ_KEY = web.AppKey("api_numbering_tz", tzinfo)
API_REPORT_TZ_KEY = web.AppKey("api_report_tz", tzinfo)
API_SERVICE_LEVELS_KEY = web.AppKey("api_service_levels", ServiceLevelSettings)
API_TIME_LIMITS_KEY = web.AppKey("api_time_limits", TimeLimitRules)
API_REPEATS_KEY = web.AppKey("api_repeats", RepeatRequestSettings)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TokenHandler = Callable[[web.Request, TokenRecord], Awaitable[web.StreamResponse]]


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def _challenge(exc: HotlineError) -> dict[str, str] | None:
    """RFC 6750 WWW-Authenticate for 401s and scope refusals."""
    if isinstance(exc, InvalidToken):
        return {hdrs.WWW_AUTHENTICATE: 'Bearer realm="hotline", error="invalid_token"'}
    if isinstance(exc, Unauthenticated):
        return {hdrs.WWW_AUTHENTICATE: 'Bearer realm="hotline"'}
    if isinstance(exc, InsufficientScope):
        scope = exc.details.get("required_scope", "")
        return {hdrs.WWW_AUTHENTICATE:
                f'Bearer realm="hotline", error="insufficient_scope", scope="{scope}"'}
    return None


def _api_error(request: web.Request, reply: ErrorReply) -> web.Response:
    response = json_error(request, reply)
    if reply.error is not None:
        response.headers.update(_challenge(reply.error) or {})
    return response


api_errors = error_middleware(_api_error, headers={hdrs.CACHE_CONTROL: "no-store"},
                              answer_all=True)
"""Every error, routing ones (unknown path, wrong method...) and unexpected ones included,
is a JSON error."""


# -- authorisation ----------------------------------------------------------------------------
async def _token(request: web.Request) -> TokenRecord:
    header = request.headers.get(hdrs.AUTHORIZATION)
    if not header:
        raise Unauthenticated("send an API token: Authorization: Bearer <token>")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthenticated("use the Bearer scheme: Authorization: Bearer <token>")
    token = await api_tokens.verify(request.app[API_SESSIONS_KEY], credentials.strip())
    if token is None:
        raise InvalidToken("the API token is unknown or revoked")
    return token


def requires(scope: str) -> Callable[[TokenHandler], Handler]:
    """Let the handler run only for a live token holding ``scope``; it gets the token."""
    if scope not in api_tokens.SCOPES:
        raise ValueError(f"unknown scope {scope}")

    def wrap(handler: TokenHandler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            token = await _token(request)
            if not token.allows(scope):
                raise InsufficientScope(f"this needs a token with the {scope} scope",
                                        details={"required_scope": scope})
            return await handler(request, token)

        checked.required_scope = scope  # type: ignore[attr-defined]
        return checked

    return wrap


# -- input ------------------------------------------------------------------------------------
BodyT = TypeVar("BodyT", bound=RequestBody)


def _pydantic_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)]


async def _body(request: web.Request, model: type[BodyT]) -> BodyT:
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as JSON (Content-Type: application/json)")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(16 * 1024):  # may come in pieces: read to EOF
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
        json.dumps(data, ensure_ascii=False).encode()  # lone surrogates ("\ud800") fail here
    except (ValueError, RecursionError) as exc:  # UnicodeError is a ValueError
        raise MalformedJson("the body is not valid JSON (UTF-8)") from exc
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = _pydantic_errors(exc)
        raise InvalidInput("; ".join(f"{e['field']}: {e['message']}" for e in errors),
                           details={"fields": errors}) from exc


def _query(request: web.Request, allowed: set[str]) -> dict[str, str]:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise InvalidInput(f"unknown query parameter(s): {', '.join(unknown)}; allowed: "
                           f"{', '.join(sorted(allowed))}")
    repeated = sorted(k for k in set(request.query) if len(request.query.getall(k)) > 1)
    if repeated:
        raise InvalidInput(f"query parameter(s) given more than once: {', '.join(repeated)}")
    return dict(request.query)


def _parse_since(value: str) -> datetime:
    try:
        since = datetime.fromisoformat(value)
        return since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"since={value!r} is not an ISO 8601 date or date-time") from exc


def _parse_limit(value: str) -> int:
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 200:
        raise InvalidInput("limit must be a whole number from 1 to 200")
    return int(value)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


# -- reads and their audit ----------------------------------------------------------------------
async def _audit_read(request: web.Request, token: TokenRecord, *, action: str,
                      object_type: str, object_id: str | int | None = None,
                      detail: dict[str, Any] | None = None) -> None:
    """Every read of personal data through the API is in the audit log, by token."""
    await audit.write(request.app[API_SESSIONS_KEY], actor=token.actor, action=action,
                      object_type=object_type, object_id=object_id, detail=detail,
                      **audit_origin(request))


async def _written_case(request: web.Request, token: TokenRecord, view: cases.CaseView,
                        via: str) -> dict[str, Any]:
    """What a write answers: the whole case (an audited read) for a token that may also read
    cases (cases:read), else only the receipt (number, stage, updated_at)."""
    if not token.allows(CASE_READ_SCOPE):
        return view.to_receipt()
    await _audit_read(request, token, action="case.read", object_type="case",
                      object_id=view.number, detail={"via": via})
    return view.to_json(viewer_role=API_VIEWER_ROLE)


# -- handlers ---------------------------------------------------------------------------------
@requires("cases:write")
async def post_case(request: web.Request, token: TokenRecord) -> web.Response:
    body = await _body(request, CaseCreate)
    view = await cases.create_case(
        request.app[API_SESSIONS_KEY], category=body.category, description=body.description,
        actor=token.actor, contact_phone=body.contact_phone, resident_phone=body.resident_phone,
        address=body.address, numbering_tz=request.app[API_NUMBERING_TZ_KEY],
        time_limits=request.app[API_TIME_LIMITS_KEY])
    return _json(await _written_case(request, token, view, "api.create"), 201,
                 headers={hdrs.LOCATION: f"/api/cases/{view.number}"})


@requires(CASE_READ_SCOPE)
async def get_case(request: web.Request, token: TokenRecord) -> web.Response:
    await _own_case(request, token)
    view = await cases.get_case(request.app[API_SESSIONS_KEY], request.match_info["number"])
    await _audit_read(request, token, action="case.read", object_type="case",
                      object_id=view.number, detail={"via": "api.get"})
    return _json(view.to_json(viewer_role=API_VIEWER_ROLE))


@requires(CASE_READ_SCOPE)
async def get_repeats(request: web.Request, token: TokenRecord) -> web.Response:
    """The open cases a new request may repeat (crm.cases.repeats)."""
    query = _query(request, {"category", "phone", "address"})
    phone = query.get("phone", "").strip()
    if not phone:
        raise InvalidInput("give the caller's phone")
    cases.check_phone(phone)
    address = (query.get("address") or "").strip() or None
    if address is not None and len(address) > 256:
        raise InvalidInput("address is longer than 256 characters")
    settings = request.app[API_REPEATS_KEY]
    found = await repeats.find_repeats(
        request.app[API_SESSIONS_KEY], category=query.get("category", ""), phones=[phone],
        address=address, window_days=settings.window_days,
        min_similarity=settings.min_address_similarity)
    for candidate in found:
        await _audit_read(request, token, action="case.read", object_type="case",
                          object_id=candidate.number, detail={"via": "api.repeats"})
    return _json({"repeats": [c.to_json() for c in found]})


@requires("cases:write")
async def patch_case(request: web.Request, token: TokenRecord) -> web.Response:
    body = await _body(request, CaseUpdate)
    if await _own_case(request, token) is not None and body.department is not None:
        raise PermissionDenied("a department's token cannot move a case to another "
                               "department: return it with a reason instead")
    view = await cases.update_case(
        request.app[API_SESSIONS_KEY], request.match_info["number"],
        actor=token.actor, stage=body.stage, note=body.note,
        department=body.department, latest_update=body.latest_update)
    return _json(await _written_case(request, token, view, "api.update"))


@requires("consultations:read")
async def list_consultations(request: web.Request, token: TokenRecord) -> web.Response:
    query = _query(request, {"phone", "case", "since", "limit"})
    phone = cases.check_phone(query.get("phone") or None, "phone")
    case_number = query.get("case") or None
    since = _parse_since(query["since"]) if query.get("since") else None
    limit = _parse_limit(query["limit"]) if "limit" in query else 50
    sessions = request.app[API_SESSIONS_KEY]
    found = await consultation_desk.find_consultations(
        sessions, phone=phone, case_number=case_number, since=since, limit=limit)
    await _audit_read(request, token, action="consultation.search", object_type="consultation",
                      detail={"query": query, "ids": [c.id for c in found], "via": "api"})
    return _json({"consultations": [c.to_json(viewer_role=API_VIEWER_ROLE, include_steps=False)
                                    for c in found]})


@requires("consultations:read")
async def get_consultation(request: web.Request, token: TokenRecord) -> web.Response:
    consultation_id = int(request.match_info["id"])
    if consultation_id > 2**31 - 1:
        raise ConsultationNotFound(f"no consultation {consultation_id}")
    sessions = request.app[API_SESSIONS_KEY]
    found = await consultation_desk.get_consultation(sessions, consultation_id)
    await _audit_read(request, token, action="consultation.read", object_type="consultation",
                      object_id=found.id, detail={"via": "api"})
    return _json(found.to_json(viewer_role=API_VIEWER_ROLE))


@requires(REPORTS_READ_SCOPE)
async def get_service_levels(request: web.Request, token: TokenRecord) -> web.StreamResponse:
    """The figures of a period by hour or by day, as JSON or CSV (``format=csv``)."""
    query = _query(request, {"from", "to", "bucket", "format"})
    output = query.get("format") or "json"
    if output not in ("json", "csv"):
        raise InvalidInput(f"format must be json or csv, not {output!r}")
    tz = request.app[API_REPORT_TZ_KEY]
    settings = request.app[API_SERVICE_LEVELS_KEY]
    period = levels.Period.from_query(query, today=datetime.now(tz).date())
    found = await levels.service_levels(request.app[API_SESSIONS_KEY], period, tz, settings)
    buckets = [levels.bucket_json(b, settings) for b in found.buckets]
    if output == "csv":
        return _csv(f"service-levels_{period.bucket}_{period.since}_{period.until}",
                    levels.COLUMNS, buckets)
    return _json({"from": period.since.isoformat(), "to": period.until.isoformat(),
                  "bucket": period.bucket, "timezone": str(tz),
                  "targets": levels.targets_json(settings),
                  "total": levels.bucket_json(found.total, settings), "buckets": buckets})


def _csv(name: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> web.Response:
    """UTF-8 (with a byte order mark, for spreadsheets); lists joined with "; "."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["; ".join(map(str, v)) if isinstance(v, list)
                         else "" if v is None else v for v in (row[c] for c in columns)])
    return web.Response(body=out.getvalue().encode(), content_type="text/csv", charset="utf-8",
                        headers={hdrs.CONTENT_DISPOSITION: f'attachment; filename="{name}.csv"'})


# -- dispatch and supervision (crm.cases.dispatch) ------------------------------------------------
class DepartmentTokenRequired(PermissionDenied):
    code = "department_token_required"


class SupervisorTokenRequired(PermissionDenied):
    code = "supervisor_token_required"


async def _department_of(request: web.Request, token: TokenRecord) -> str | None:
    return await dispatch.token_department(request.app[API_SESSIONS_KEY], token.id)


async def _own_case(request: web.Request, token: TokenRecord) -> str | None:
    """A department's token reaches only its department's cases (others: 404 like a missing
    case). Returns the token's department (None: a hotline-wide token)."""
    department = await _department_of(request, token)
    if department is not None:
        await dispatch.check_departments_case(request.app[API_SESSIONS_KEY],
                                              request.match_info["number"], department)
    return department


async def _acting_department(request: web.Request, token: TokenRecord) -> str:
    department = await _department_of(request, token)
    if department is None:
        raise DepartmentTokenRequired("this is a department's act: use a token bound to the "
                                      "department (hotline token bind-department)")
    return department


async def _supervisor(request: web.Request, token: TokenRecord) -> None:
    if await _department_of(request, token) is not None:
        raise SupervisorTokenRequired("a supervisor rules on this: a department's token "
                                      "cannot")


async def _acted(request: web.Request, token: TokenRecord, via: str) -> web.Response:
    view = await cases.get_case(request.app[API_SESSIONS_KEY], request.match_info["number"])
    return _json(await _written_case(request, token, view, via))


@requires("cases:write")
async def post_accept(request: web.Request, token: TokenRecord) -> web.Response:
    body = await _body(request, DepartmentAccept)
    department = await _acting_department(request, token)
    await dispatch.accept(request.app[API_SESSIONS_KEY], request.match_info["number"],
                          department=department, actor=token.actor, note=body.note)
    return await _acted(request, token, "api.accept")


@requires("cases:write")
async def post_reply(request: web.Request, token: TokenRecord) -> web.Response:
    body = await _body(request, DepartmentReply)
    department = await _acting_department(request, token)
    await dispatch.reply(request.app[API_SESSIONS_KEY], request.match_info["number"],
                         body.result, department=department, actor=token.actor)
    return await _acted(request, token, "api.reply")


@requires("cases:write")
async def post_return(request: web.Request, token: TokenRecord) -> web.Response:
    body = await _body(request, DepartmentReturn)
    department = await _acting_department(request, token)
    made = await dispatch.request_return(request.app[API_SESSIONS_KEY],
                                         request.match_info["number"], body.reason,
                                         department=department, actor=token.actor)
    return _json(made.to_json(), 201)


@requires("cases:write")
async def post_extension(request: web.Request, token: TokenRecord) -> web.Response:
    body = await _body(request, DepartmentExtension)
    department = await _acting_department(request, token)
    made = await dispatch.request_extension(request.app[API_SESSIONS_KEY],
                                            request.match_info["number"],
                                            body.until.astimezone(UTC), body.reason,
                                            department=department, actor=token.actor)
    return _json(made.to_json(), 201)


def _request_id(request: web.Request) -> int:
    request_id = int(request.match_info["id"])
    if request_id > 2**31 - 1:
        raise dispatch.RequestNotFound(f"no request {request_id}")
    return request_id


@requires("cases:write")
async def post_ruling(request: web.Request, token: TokenRecord) -> web.Response:
    body = await _body(request, ReturnRuling)
    await _supervisor(request, token)
    ruled = await dispatch.rule_on_return(request.app[API_SESSIONS_KEY], _request_id(request),
                                          body.ruling, actor=token.actor,
                                          department=body.department, note=body.note)
    return _json(ruled.to_json())


@requires("cases:write")
async def post_decision(request: web.Request, token: TokenRecord) -> web.Response:
    body = await _body(request, ExtensionDecision)
    await _supervisor(request, token)
    decided = await dispatch.decide_extension(request.app[API_SESSIONS_KEY],
                                              _request_id(request), body.grant,
                                              actor=token.actor, note=body.note)
    return _json(decided.to_json())


@requires(CASE_READ_SCOPE)
async def list_requests(request: web.Request, token: TokenRecord) -> web.Response:
    query = _query(request, {"status"})
    status = query.get("status") or "pending"
    if status not in ("pending", "granted", "refused", "all"):
        raise InvalidInput("status must be pending, granted, refused or all")
    found = await dispatch.list_requests(
        request.app[API_SESSIONS_KEY], status=None if status == "all" else status,
        department=await _department_of(request, token))
    return _json({"requests": [r.to_json() for r in found]})


def _supervision(which: str) -> TokenHandler:
    async def handler(request: web.Request, token: TokenRecord) -> web.Response:
        _query(request, set())
        sessions = request.app[API_SESSIONS_KEY]
        department = await _department_of(request, token)
        found = (await dispatch.overdue_cases(sessions, department=department)
                 if which == "overdue" else
                 await dispatch.due_soon_cases(sessions, department=department))
        return _json({"cases": [c.to_json() for c in found]})

    handler.__name__ = f"list_{which.replace('-', '_')}"
    return handler


list_overdue = requires(CASE_READ_SCOPE)(_supervision("overdue"))
list_due_soon = requires(CASE_READ_SCOPE)(_supervision("due-soon"))


@requires(CASE_READ_SCOPE)
async def list_reminders(request: web.Request, token: TokenRecord) -> web.Response:
    """The reminder feed: a department's token gets its own; poll with after=<last id>."""
    query = _query(request, {"after"})
    after = query.get("after") or "0"
    if not after.isascii() or not after.isdigit() or int(after) > 2**31 - 1:
        raise InvalidInput("after must be the id of the last reminder seen (a whole number)")
    found = await dispatch.reminders(request.app[API_SESSIONS_KEY],
                                     department=await _department_of(request, token),
                                     after_id=int(after))
    return _json({"reminders": [r.to_json() for r in found]})


async def get_openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/cases", post_case),
    ("GET", "/cases/repeats", get_repeats),  # before /cases/{number}
    ("GET", "/cases/{number}", get_case),
    ("PATCH", "/cases/{number}", patch_case),
    ("POST", "/cases/{number}/accept", post_accept),
    ("POST", "/cases/{number}/return", post_return),
    ("POST", "/cases/{number}/extension", post_extension),
    ("POST", "/cases/{number}/reply", post_reply),
    ("GET", "/dispatch/requests", list_requests),
    ("POST", r"/dispatch/returns/{id:\d+}/ruling", post_ruling),
    ("POST", r"/dispatch/extensions/{id:\d+}/decision", post_decision),
    ("GET", "/supervision/overdue", list_overdue),
    ("GET", "/supervision/due-soon", list_due_soon),
    ("GET", "/reminders", list_reminders),
    ("GET", "/consultations", list_consultations),
    ("GET", r"/consultations/{id:\d+}", get_consultation),
    ("GET", "/service-levels", get_service_levels),
    ("GET", "/openapi.json", get_openapi),
]
PREFIX = "/api"


def create_api_app(sessions: SessionFactory, *, numbering_tz: tzinfo = UTC,
                   report_tz: tzinfo = UTC,
                   service_levels: ServiceLevelSettings | None = None,
                   time_limits: TimeLimitRules | None = None,
                   repeat_requests: RepeatRequestSettings | None = None) -> web.Application:
    """The sub-application the main app mounts at ``PREFIX``; the service-level figures are
    counted in the days and hours of ``report_tz``."""
    app = web.Application(middlewares=[api_errors], client_max_size=MAX_BODY_BYTES)
    app[API_SESSIONS_KEY] = sessions
    app[API_NUMBERING_TZ_KEY] = numbering_tz
    app[API_REPORT_TZ_KEY] = report_tz
    app[API_SERVICE_LEVELS_KEY] = service_levels or ServiceLevelSettings()
    app[API_TIME_LIMITS_KEY] = time_limits or TimeLimitRules()  # [time_limits]; the clock
    app[API_REPEATS_KEY] = repeat_requests or RepeatRequestSettings()
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app
