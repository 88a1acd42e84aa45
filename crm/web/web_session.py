"""What the agent desk and the supervisor console share about browser sessions: the encrypted
session cookie, the CSRF token, the same-site checks, and websockets that last as long as the
session.

Each application keeps its own cookie (name, path and key): signing in at one does not sign
anyone in at the other. Sessions are aiohttp-session's EncryptedCookieStorage (Fernet:
encrypted and authenticated, nothing kept server-side). POSTs carry the session's CSRF token
(form field ``csrf`` or header ``X-CSRF-Token``) and, when the browser sends one, this site's
Origin; websockets check Origin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from aiohttp import WSMsgType, hdrs, web
from aiohttp_session import Session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from crm.errors import PermissionDenied

CSRF_FIELD = "csrf"
"""The form field, and the session key, of the CSRF token."""
CSRF_HEADER = "X-CSRF-Token"
SESSION_EXPIRED = 4401
"""The websocket close code when the session behind it has expired: the page signs in again."""


def cookie_storage(secret: str, *, purpose: str, cookie_name: str, path: str, max_age: float,
                   secure: bool) -> EncryptedCookieStorage:
    """Fernet keyed from the web session secret and ``purpose`` (one application's cookie does
    not open in another's); a strict same-site, script-proof cookie under ``path``."""
    key = base64.urlsafe_b64encode(hashlib.sha256(f"{purpose}:{secret}".encode()).digest())
    return EncryptedCookieStorage(Fernet(key), cookie_name=cookie_name, max_age=int(max_age),
                                  path=path, httponly=True, samesite="Strict", secure=secure)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(session: Session) -> str:
    """The session's CSRF token, made on first use."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = new_csrf_token()
    return str(session[CSRF_FIELD])


def check_origin(request: web.Request) -> None:
    """Browsers send Origin on POSTs and websockets: it must be this site."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise PermissionDenied("request from another site refused")


async def check_csrf(request: web.Request, session: Session, *,
                     reload: str = "the page") -> None:
    """This site's Origin (when sent) and the session's CSRF token, from the header or a
    posted form; ``reload`` is what the error tells the user to reload."""
    check_origin(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in ("application/x-www-form-urlencoded",
                                                 "multipart/form-data"):
        sent = str((await request.post()).get(CSRF_FIELD, ""))
    expected = session.get(CSRF_FIELD)
    if not sent or not expected or not hmac.compare_digest(str(sent), str(expected)):
        raise PermissionDenied(f"missing or wrong CSRF token; reload {reload}")


async def hold_until_expired(ws: web.WebSocketResponse,
                             expires_at: Callable[[], float | None]) -> None:
    """Keep a prepared websocket open, ignoring what the page sends (its own pings), until the
    page closes it, ``expires_at()`` (asked again after every wait) says the session is gone
    (None) or the time it gave has passed: then close it with :data:`SESSION_EXPIRED`."""
    while not ws.closed:
        deadline = expires_at()
        if deadline is None:
            break
        remaining = deadline - time.time()
        if remaining <= 0:
            await ws.close(code=SESSION_EXPIRED, message=b"session expired")
            break
        try:
            msg = await ws.receive(timeout=min(remaining, 3600.0))
        except TimeoutError:
            continue
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            break
