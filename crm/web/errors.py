"""Where errors become HTTP answers, for the JSON API, the agent desk and the supervisor
console alike: one lookup from the domain exception tree (crm.errors) to a status, a stable
code and a message, and one middleware factory; each web app supplies only how an answer
looks (a JSON body, or an error page).

A domain error whose family has no status is a 500 "internal_error" (logged): its message is
not shown, it was not meant for the client.

The console and the desk show the message to a person, in their language
(:func:`for_reader`: the error's phrase rendered by the request's translator); the open API
answers its programs in English (``exc.message``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web

from crm.errors import (
    BodyTooLarge,
    Conflict,
    HotlineError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RecordsUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
)
from crm.i18n.phrases import N_
from crm.web import locale

log = logging.getLogger(__name__)

# Most specific first: the first class in an exception's MRO found here gives the status.
STATUS_FOR_ERROR: dict[type[HotlineError], int] = {
    BodyTooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidInput: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    RecordsUnavailable: 503,
}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ErrorReply:
    """What an error is answered with, whatever it looks like."""

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    error: HotlineError | None = None
    """The domain error answered (None: a routing error, or an unexpected one)."""


INTERNAL = ErrorReply(500, "internal_error", N_("internal error"))
HTTP_REASONS = (N_("Not Found"), N_("Method Not Allowed"), N_("Request Entity Too Large"))
"""aiohttp's reasons of the routing errors a page may answer (message ids, for the catalogs)."""

ErrorRenderer = Callable[[web.Request, ErrorReply], web.StreamResponse]


def reply_for(exc: HotlineError,
              statuses: Mapping[type[HotlineError], int] = STATUS_FOR_ERROR) -> ErrorReply:
    """The lookup: the status of the nearest family of ``exc`` in ``statuses``."""
    status = next((statuses[c] for c in type(exc).__mro__ if c in statuses), 500)
    if status == 500:
        return INTERNAL
    return ErrorReply(status, exc.code, exc.message, exc.details, error=exc)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def error_response(status: int, code: str, message: str, *,
                   details: dict[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    """``{"error": {"code": ..., "message": ..., "details": ...}}`` (details when any)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=status, headers=headers, dumps=_dumps)


def json_error(request: web.Request, reply: ErrorReply) -> web.Response:
    """The JSON rendering of an error (the API, and the desk's and console's scripts)."""
    return error_response(reply.status, reply.code, reply.message, details=reply.details,
                          headers=reply.headers or None)


def readable(request: web.Request, exc: HotlineError) -> str:
    """The message of ``exc`` in the language of the request's reader (for a page that shows
    an error itself, e.g. next to a form)."""
    t = locale.chosen(request)
    phrase = getattr(exc, "phrase", None)  # None also for an error that skipped __init__
    return t.phrase(phrase) if phrase is not None else t.gettext(exc.message)


def for_reader(request: web.Request, reply: ErrorReply) -> ErrorReply:
    """``reply`` with its message in the language of the request's reader
    (crm.web.locale.chosen): the error's phrase, or its text read as a message id."""
    message = (readable(request, reply.error) if reply.error is not None
               else locale.chosen(request).gettext(reply.message))
    return dataclasses.replace(reply, message=message)


def json_error_for_reader(request: web.Request, reply: ErrorReply) -> web.Response:
    """The JSON rendering of an error whose message a person reads (the desk's and the
    console's scripts show it): in their language."""
    return json_error(request, for_reader(request, reply))


def _http_reply(exc: web.HTTPException) -> ErrorReply:
    headers = {hdrs.ALLOW: exc.headers[hdrs.ALLOW]} if hdrs.ALLOW in exc.headers else {}
    code = _HTTP_CODES.get(exc.status, (exc.reason or "error").lower().replace(" ", "_"))
    return ErrorReply(exc.status, code, exc.reason, headers=headers)


def error_middleware(render: ErrorRenderer, *,
                     statuses: Mapping[type[HotlineError], int] = STATUS_FOR_ERROR,
                     headers: Mapping[str, str] | None = None,
                     answer_all: bool = False) -> Middleware:
    """A middleware answering domain errors with ``render`` (``statuses``: the lookup, for an
    app with errors of its own). ``headers`` go on every response that passes through it
    (unless the handler set them). ``answer_all``: routing errors (aiohttp's HTTP errors) and
    unexpected exceptions are answered with ``render`` too (a 500, logged), so that clients
    always get the app's error format; otherwise they go on to aiohttp."""
    extra = dict(headers or {})

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except HotlineError as exc:
            reply = reply_for(exc, statuses)
            if reply is INTERNAL:
                log.error("%s %s: unmapped domain error %r", request.method, request.path,
                          exc)
            response = render(request, reply)
        except web.HTTPException as exc:
            if not answer_all or exc.status < 400:
                raise
            response = render(request, _http_reply(exc))
        except Exception:
            if not answer_all:
                raise
            log.exception("%s %s failed", request.method, request.path)
            response = render(request, INTERNAL)
        for name, value in extra.items():
            response.headers.setdefault(name, value)
        return response

    return errors
