"""The agent desk: sign-in, the live desk page, its websocket and the forms agents use during
and after a call. Mounted under /desk by crm.web.app.

This module builds the desk's sub-application and signs out desks whose sessions ended; its
parts are crm.web.desk_auth (who may use the desk: its dependencies, cookie and the check on
every route), crm.web.desk_page (the page, sign-in, pausing and the websocket) and
crm.web.desk_calls (cases and the consultation during and after a call).

Sessions are crm.web.session's server-side sessions behind an encrypted cookie of the
desk's own (name, path and key): refreshed while the agent is active, refused after
``idle_timeout`` seconds without a request and at the latest ``max_age`` after sign-in, and
ended at once (websockets included) by signing out, a new password or role, or a disabled
account. Sign-in is throttled per account and per source address. Every POST carries the
session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``); the websocket checks
Origin. Signing in joins the agent's desk phone to the queue, signing out leaves it, pausing
pauses it; a desk whose sessions ended leaves it too.

Which cases an agent may open or move on is the need-to-know rule of crm.cases.access (403
need_to_know, audited); every answer that shows a case is audited as a read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import jinja2
from aiohttp import hdrs, web
from aiohttp_session import session_middleware

from crm.agents.sessions import Revoked, live_logins
from crm.audit import log as audit
from crm.live.desk_hub import AgentDesk
from crm.telephony.queue import TelephonyUnavailable
from crm.web.desk_auth import (
    COOKIE_NAME,
    DESK_JINJA_KEY,
    DESK_KEY,
    PREFIX,
    SIGNED_OUT,
    DeskDeps,
    Handler,
    agent_required,
    session_storage,
)
from crm.web.desk_calls import (
    add_note,
    call_for,
    change_stage,
    close_call,
    create_case,
    get_case,
    link_case,
    set_disposition,
    transfer,
)
from crm.web.desk_page import (
    current_call,
    desk_page,
    desk_socket,
    leave_queue,
    login,
    login_form,
    logout,
    set_paused,
)
from crm.web.errors import STATUS_FOR_ERROR, error_middleware, json_error_for_reader
from crm.web.session import SECURITY_KEY, WebSessions

# What other modules import from the desk.
__all__ = ["COOKIE_NAME", "DESK_KEY", "PREFIX", "DeskDeps", "agent_required", "call_for",
           "create_desk_app", "expire_idle_desks", "session_storage"]

log = logging.getLogger(__name__)

REAPER_INTERVAL = 30.0
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")


# -- errors ------------------------------------------------------------------------------------
desk_errors = error_middleware(
    json_error_for_reader, statuses={**STATUS_FOR_ERROR, TelephonyUnavailable: 503},
    headers={hdrs.CONTENT_SECURITY_POLICY: CSP, hdrs.CACHE_CONTROL: "no-store"})
"""Domain errors become JSON errors (the desk's forms are posted by its script, which shows
the message: it is in the agent's language)."""


# -- idle expiry -------------------------------------------------------------------------------
async def expire_idle_desks(deps: DeskDeps, now: float | None = None,
                            security: WebSessions | None = None) -> list[str]:
    """Sign out desks idle past the timeout or past their session's absolute end, and (with
    ``security``) desks none of whose sessions is live any more (ended by another process,
    e.g. ``hotline agents disable``): their phones leave the queue, so the queue does not
    ring agents who went home."""
    gone = []
    for desk in deps.hub.expired(now):
        await _sign_out_desk(deps, desk, "desk.expired")
        gone.append(desk.login)
    if security is not None:
        every = deps.hub.expired(float("inf"))  # every signed-in desk
        signed_in = [d.login for d in every if d.login not in gone]
        live = await live_logins(deps.sessions, "desk", signed_in,
                                 idle_timeout=deps.idle_timeout, now=now)
        for login in signed_in:
            desk = deps.hub.desk(login)
            if login not in live and desk is not None:
                await _sign_out_desk(deps, desk, "desk.session_ended")
                gone.append(login)
    return gone


async def _sign_out_desk(deps: DeskDeps, desk: AgentDesk, action: str,
                         detail: dict[str, Any] | None = None) -> None:
    await leave_queue(deps, desk)
    await deps.hub.sign_out(desk.login)
    await audit.write(deps.sessions, actor=desk.actor, action=action, object_type="agent",
                      object_id=desk.login, detail=detail)


async def _session_ended(deps: DeskDeps, ended: Revoked) -> None:
    """A desk session ended in this process (disabled, new password or role...): the desk
    signs out and its phone leaves the queue, unless the agent has another live session.
    (Signing out at the desk does that itself.)"""
    desk = deps.hub.desk(ended.login)
    if desk is None or ended.reason == SIGNED_OUT:
        return
    if ended.login in await live_logins(deps.sessions, "desk", [ended.login],
                                        idle_timeout=deps.idle_timeout):
        return
    await _sign_out_desk(deps, desk, "desk.session_ended", {"reason": ended.reason})


async def _reaper(app: web.Application) -> AsyncIterator[None]:
    deps = app[DESK_KEY]
    security = app[SECURITY_KEY]

    async def loop() -> None:
        while True:
            await asyncio.sleep(min(REAPER_INTERVAL, deps.idle_timeout))
            try:
                await expire_idle_desks(deps, security=security)
            except Exception:
                log.exception("expiring idle desks failed")

    task = asyncio.create_task(loop(), name="desk-idle-reaper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _close_sockets(app: web.Application) -> None:
    await app[DESK_KEY].hub.close_sockets()


def create_desk_app(deps: DeskDeps, jinja: jinja2.Environment,
                    security: WebSessions | None = None) -> web.Application:
    """The sub-application mounted at ``PREFIX``; ``security`` is the web app's sessions and
    sign-in (shared with the console; None: the desk's own, started with it)."""
    storage = session_storage(deps.session_secret, idle_timeout=deps.idle_timeout,
                              secure=deps.secure_cookies)
    app = web.Application(middlewares=[desk_errors, session_middleware(storage)],
                          client_max_size=64 * 1024)
    app[DESK_KEY] = deps
    app[DESK_JINJA_KEY] = jinja
    if security is None:
        security = WebSessions(deps.sessions)
        app.cleanup_ctx.append(security.lifecycle)
    app[SECURITY_KEY] = security
    security.on_revoked("desk", functools.partial(_session_ended, deps))
    app.cleanup_ctx.append(_reaper)
    app.on_shutdown.append(_close_sockets)
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/login", login_form),
        ("POST", "/login", login),
        ("POST", "/logout", logout),
        ("GET", "/", desk_page),
        ("GET", "/ws", desk_socket),
        ("GET", "/current-call", current_call),
        ("POST", "/pause", set_paused),
        ("POST", "/calls/{call_id}/cases", create_case),
        ("POST", "/calls/{call_id}/notes", add_note),
        ("POST", "/calls/{call_id}/links", link_case),
        ("POST", "/calls/{call_id}/disposition", set_disposition),
        ("POST", "/calls/{call_id}/transfer", transfer),
        ("POST", "/calls/{call_id}/close", close_call),
        ("GET", "/cases/{number}", get_case),
        ("POST", "/cases/{number}/stage", change_stage),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app
