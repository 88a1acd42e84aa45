"""The agent desk: sign-in, the live desk page, its websocket and the forms agents use during
and after a call. Mounted under /desk by crm.web.app.

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

import jinja2
from aiohttp import hdrs, web
from aiohttp_session import Session, get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from sqlalchemy import select

from crm.agents.sessions import Revoked, live_logins
from crm.agents.view import AgentView
from crm.audit import log as audit
from crm.cases import access as case_access
from crm.cases import service as cases
from crm.consultations import service as consultation_desk
from crm.errors import (
    ConsultationNotFound,
    HotlineError,
    InvalidInput,
    PermissionDenied,
    Unauthenticated,
    UnknownDepartment,
)
from crm.live.desk_hub import AgentDesk, DeskCall, DeskHub
from crm.storage.db import SessionFactory
from crm.storage.models import CaseCategory, Consultation, Department
from crm.telephony.queue import AgentQueue, TelephonyUnavailable, interface_for
from crm.web import session as web_session
from crm.web.errors import STATUS_FOR_ERROR, error_middleware, json_error
from crm.web.session import (
    SECURITY_KEY,
    WebSessions,
    check_csrf,
    check_origin,
    cookie_storage,
    csrf_token,
)

log = logging.getLogger(__name__)

PREFIX = "/desk"
COOKIE_NAME = "hotline_desk"
SEEN_REFRESH = 60.0
"""Seconds between re-issues of the session cookie while the agent is active."""
REAPER_INTERVAL = 30.0
SIGNED_OUT = "signed_out"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")


@dataclass
class DeskDeps:
    """What the desk needs, built by the composition root."""

    sessions: SessionFactory
    hub: DeskHub
    queue: AgentQueue | None
    """None: no telephony (the desk still works for cases and consultations)."""
    session_secret: str
    idle_timeout: float = 8 * 3600
    numbering_tz: tzinfo = UTC
    secure_cookies: bool = False


DESK_KEY = web.AppKey("desk", DeskDeps)
DESK_JINJA_KEY = web.AppKey("desk_jinja", jinja2.Environment)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AgentHandler = Callable[[web.Request, AgentDesk], Awaitable[web.StreamResponse]]


def session_storage(secret: str, *, idle_timeout: float, secure: bool) -> EncryptedCookieStorage:
    """Its TTL is the idle timeout (the cookie is re-issued while the agent is active)."""
    return cookie_storage(secret, purpose="hotline-desk", cookie_name=COOKIE_NAME, path=PREFIX,
                          max_age=idle_timeout, secure=secure)


# -- errors ------------------------------------------------------------------------------------
desk_errors = error_middleware(
    json_error, statuses={**STATUS_FOR_ERROR, TelephonyUnavailable: 503},
    headers={hdrs.CONTENT_SECURITY_POLICY: CSP, hdrs.CACHE_CONTROL: "no-store"})
"""Domain errors become JSON errors (the desk's forms are posted by its script)."""


# -- sessions ----------------------------------------------------------------------------------
async def _signed_in(request: web.Request) -> tuple[Session, AgentView] | None:
    """The session's agent, if signed in, active and the session live (not ended, not idle
    too long, not past its absolute end); refreshes it."""
    deps = request.app[DESK_KEY]
    session = await get_session(request)
    live = await request.app[SECURITY_KEY].current(
        request, session, app="desk", idle_timeout=deps.idle_timeout, now=time.time(),
        refresh_after=SEEN_REFRESH)
    if live is None:
        return None
    agent = live.agent
    ends = live.ends_at(deps.idle_timeout)
    desk = deps.hub.desk(agent.login)
    if desk is None:  # e.g. the service restarted under a live session
        deps.hub.sign_in(agent, expires_at=ends)
    else:
        deps.hub.touch(agent.login, ends)
    return session, agent


def agent_required(*, page: bool = False, post: bool = False) -> Callable[[AgentHandler],
                                                                           Handler]:
    """Run the handler for a signed-in agent (with a CSRF check for POSTs). Pages redirect
    to the sign-in form; everything else answers 401."""

    def wrap(handler: AgentHandler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            found = await _signed_in(request)
            if found is None:
                if page:
                    raise web.HTTPSeeOther(f"{PREFIX}/login")
                raise Unauthenticated("sign in at the desk first")
            session, agent = found
            if post:
                await check_csrf(request, session, reload="the desk")
            desk = request.app[DESK_KEY].hub.desk(agent.login)
            if desk is None:  # signed out by idle expiry a moment ago
                raise Unauthenticated("sign in at the desk first")
            return await handler(request, desk)

        return checked

    return wrap


def _render(request: web.Request, template: str, status: int = 200,
            **context: Any) -> web.Response:
    html = request.app[DESK_JINJA_KEY].get_template(template).render(**context)
    return web.Response(text=html, content_type="text/html", status=status)


# -- sign in and out ---------------------------------------------------------------------------
async def login_form(request: web.Request) -> web.Response:
    if await _signed_in(request) is not None:
        raise web.HTTPSeeOther(f"{PREFIX}/")
    session = await get_session(request)
    return _render(request, "desk/login.html", csrf=csrf_token(session), error=None)


async def login(request: web.Request) -> web.Response:
    deps = request.app[DESK_KEY]
    security = request.app[SECURITY_KEY]
    session = await get_session(request)
    form = await request.post()
    try:
        await check_csrf(request, session, reload="the desk")
    except PermissionDenied:
        return _render(request, "desk/login.html", 403, csrf=csrf_token(session),
                       error="The form expired; please sign in again.")
    login_name = str(form.get("login", "")).strip().lower()[:64]
    result = await security.authenticate(request, login_name, str(form.get("password", "")))
    if result.agent is None:
        if result.status == 401:
            await audit.write(deps.sessions, actor=f"agent:{login_name or '?'}",
                              action="desk.login_failed", object_type="agent",
                              object_id=login_name,
                              detail={"retry_after": result.retry_after}
                              if result.retry_after else None,
                              **web_session.audit_origin(request))
        response = _render(request, "desk/login.html", result.status,
                           csrf=csrf_token(session),
                           error=result.explain("Wrong login or password."))
        if result.retry_after:
            response.headers[hdrs.RETRY_AFTER] = str(result.retry_after)
        return response
    agent = result.agent
    session = await new_session(request)  # a fresh session: no fixation
    live = await security.begin(request, session, app="desk", agent=agent, now=time.time())
    deps.hub.sign_in(agent, expires_at=live.ends_at(deps.idle_timeout))
    await audit.write(deps.sessions, actor=f"agent:{agent.login}", action="desk.login",
                      object_type="agent", object_id=agent.login,
                      **web_session.audit_origin(request))
    await _join_queue(deps, agent)
    raise web.HTTPSeeOther(f"{PREFIX}/")


async def _join_queue(deps: DeskDeps, agent: AgentView | AgentDesk) -> None:
    name = agent.display_name
    if deps.queue is None or not agent.extension:
        return
    try:
        await deps.queue.join(interface_for(agent.extension), name, agent.languages)
    except HotlineError as exc:  # the desk shows "logged out" and offers to join again
        log.warning("agent %s could not join queue %s: %s", agent.login, deps.queue.queue, exc)


async def _leave_queue(deps: DeskDeps, desk: AgentDesk) -> None:
    if deps.queue is None or not desk.extension:
        return
    try:
        await deps.queue.leave(interface_for(desk.extension))
    except HotlineError as exc:
        log.warning("agent %s could not leave queue %s: %s", desk.login, deps.queue.queue, exc)


@agent_required(post=True)
async def logout(request: web.Request, desk: AgentDesk) -> web.Response:
    deps = request.app[DESK_KEY]
    origin = web_session.audit_origin(request)
    # Every desk session of this agent ends in every process, and their websockets close
    # (code 4401: the pages go to the sign-in form); then the phone leaves the queue.
    await request.app[SECURITY_KEY].end(desk.agent_id, app="desk", reason=SIGNED_OUT)
    await _leave_queue(deps, desk)
    await deps.hub.sign_out(desk.login)
    (await get_session(request)).invalidate()
    await audit.write(deps.sessions, actor=desk.actor, action="desk.logout",
                      object_type="agent", object_id=desk.login, **origin)
    raise web.HTTPSeeOther(f"{PREFIX}/login")


@agent_required(post=True)
async def set_paused(request: web.Request, desk: AgentDesk) -> web.Response:
    """paused=1 pauses the desk phone in the queue, paused=0 makes it ready (joining the queue
    again if it had left)."""
    deps = request.app[DESK_KEY]
    if deps.queue is None or not desk.extension:
        raise InvalidInput("this desk has no phone in a queue")
    paused = str((await request.post()).get("paused", "")) == "1"
    if not paused and desk.status == "logged_out":
        await deps.queue.join(interface_for(desk.extension), desk.display_name,
                              desk.languages)
    else:
        await deps.queue.pause(interface_for(desk.extension), paused, "desk")
    await audit.write(deps.sessions, actor=desk.actor,
                      action="desk.pause" if paused else "desk.ready", object_type="agent",
                      object_id=desk.login)
    return web.json_response({"paused": paused})


# -- the desk page, its state and websocket ----------------------------------------------------
async def _options(sessions: SessionFactory) -> dict[str, Any]:
    async with sessions() as session:
        categories = (await session.scalars(select(CaseCategory).order_by(CaseCategory.code))
                      ).all()
        departments = (await session.scalars(select(Department).order_by(Department.code))
                       ).all()
    return {"categories": [(c.code, c.name) for c in categories],
            "departments": [(d.code, d.name, d.name_en, d.phone) for d in departments
                            if d.phone],
            "dispositions": consultation_desk.DISPOSITIONS, "stages": cases.STAGES}


@agent_required(page=True)
async def desk_page(request: web.Request, desk: AgentDesk) -> web.Response:
    session = await get_session(request)
    options = await _options(request.app[DESK_KEY].sessions)
    return _render(request, "desk/page.html", agent=desk, csrf=csrf_token(session), **options)


@agent_required()
async def current_call(request: web.Request, desk: AgentDesk) -> web.Response:
    snapshot = await request.app[DESK_KEY].hub.current(
        desk.login, origin=web_session.audit_origin(request))
    return web.json_response(snapshot)


async def desk_socket(request: web.Request) -> web.StreamResponse:
    """Pushes the desk's changes; closes when the session idles out, reaches its absolute
    end or is ended (signed out anywhere, password or role changed, account disabled)."""
    check_origin(request)
    found = await _signed_in(request)
    if found is None:
        raise Unauthenticated("sign in at the desk first")
    hub = request.app[DESK_KEY].hub
    login = found[1].login
    session_id = request[web_session.WEB_SESSION_ID]
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await ws.prepare(request)

    def expires_at() -> float | None:  # None: signed out
        desk = hub.desk(login)
        return None if desk is None else desk.expires_at

    hub.attach(login, ws)
    try:
        await request.app[SECURITY_KEY].hold(ws, session_id, expires_at)
    finally:
        hub.detach(login, ws)
    return ws


# -- during and after the call -----------------------------------------------------------------
async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: str(v).strip() for k, v in form.items() if isinstance(v, str)}


async def _call_for(request: web.Request, desk: AgentDesk) -> tuple[str, int, DeskCall | None]:
    """The call named in the path, if this agent may work on it: their current call, or one
    they answered (its consultation names them)."""
    deps = request.app[DESK_KEY]
    call_id = request.match_info["call_id"]
    live = deps.hub.call_of(desk.login, call_id)
    if live is not None and live.pop.consultation_id is not None:
        return call_id, live.pop.consultation_id, live
    async with deps.sessions() as session:
        row = (await session.execute(select(Consultation.id, Consultation.agent_id)
                                     .where(Consultation.call_id == call_id))).first()
    if row is None or (live is None and row.agent_id != desk.agent_id):
        raise ConsultationNotFound(f"no call {call_id} on your desk")
    return call_id, row.id, live


def _number(form: dict[str, str], key: str = "case") -> str:
    number = form.get(key, "").replace(" ", "")
    if not number:
        raise InvalidInput("give a case number")
    return cases.check_number(number)


@agent_required(post=True)
async def create_case(request: web.Request, desk: AgentDesk) -> web.Response:
    deps = request.app[DESK_KEY]
    call_id, consultation_id, live = await _call_for(request, desk)
    form = await _form(request)
    caller = live.pop.caller_number if live else None
    if caller is None:
        caller = (await consultation_desk.get_consultation(deps.sessions,
                                                           consultation_id)).caller_number
    contact = form.get("contact_phone") or caller
    view = await cases.create_case(
        deps.sessions, category=form.get("category", ""), description=form.get("description", ""),
        actor=desk.actor, contact_phone=contact,
        resident_phone=caller if caller and cases.PHONE_PATTERN.fullmatch(caller) else None,
        address=form.get("address") or None, numbering_tz=deps.numbering_tz)
    await consultation_desk.link_case(deps.sessions, consultation_id, view.number,
                                      actor=desk.actor)
    await deps.hub.refresh_pop(call_id)
    reveal = live is not None and live.phase == "connected" and contact == caller
    await _audit_case_read(request, desk, view, "desk.create", reveal)
    return web.json_response({"case": view.to_json(viewer_role=desk.role, reveal_phone=reveal)},
                             status=201)


@agent_required(post=True)
async def add_note(request: web.Request, desk: AgentDesk) -> web.Response:
    """A note on the call's consultation, or, with ``case``, in that case's history."""
    deps = request.app[DESK_KEY]
    call_id, consultation_id, _ = await _call_for(request, desk)
    form = await _form(request)
    note = form.get("note", "")
    if not note:
        raise InvalidInput("the note is empty")
    if form.get("case"):
        number = _number(form)
        await _check_link(request, desk, call_id)
        await cases.add_note(deps.sessions, number, note, actor=desk.actor)
        await consultation_desk.link_case(deps.sessions, consultation_id, number,
                                          actor=desk.actor)
        await deps.hub.refresh_pop(call_id)
        return web.json_response({"case": number, "note": note})
    current = await consultation_desk.get_consultation(deps.sessions, consultation_id)
    stamp = f"[{time.strftime('%H:%M', time.localtime())} {desk.display_name}] {note}"
    notes = f"{current.notes}\n{stamp}" if current.notes else stamp
    await consultation_desk.update_consultation(
        deps.sessions, consultation_id, actor=desk.actor, notes=notes, agent_login=desk.login)
    return web.json_response({"note": stamp})  # what they wrote; the record is read elsewhere


@agent_required(post=True)
async def link_case(request: web.Request, desk: AgentDesk) -> web.Response:
    deps = request.app[DESK_KEY]
    call_id, consultation_id, _ = await _call_for(request, desk)
    number = _number(await _form(request))
    await _check_link(request, desk, call_id)
    await consultation_desk.link_case(deps.sessions, consultation_id, number, actor=desk.actor)
    await deps.hub.refresh_pop(call_id)
    return web.json_response({"linked": number})


@agent_required(post=True)
async def set_disposition(request: web.Request, desk: AgentDesk) -> web.Response:
    deps = request.app[DESK_KEY]
    _, consultation_id, _ = await _call_for(request, desk)
    disposition = (await _form(request)).get("disposition", "")
    updated = await consultation_desk.update_consultation(
        deps.sessions, consultation_id, actor=desk.actor, disposition=disposition,
        agent_login=desk.login)
    return web.json_response({"disposition": updated.disposition})


@agent_required(post=True)
async def transfer(request: web.Request, desk: AgentDesk) -> web.Response:
    """Blind transfer of the connected caller to a department's phone."""
    deps = request.app[DESK_KEY]
    call_id, consultation_id, live = await _call_for(request, desk)
    if deps.queue is None:
        raise TelephonyUnavailable("no telephony connected to this desk")
    if live is None or live.phase != "connected" or not live.caller_channel:
        raise InvalidInput("only a caller connected to you now can be transferred")
    code = (await _form(request)).get("department", "")
    async with deps.sessions() as session:
        department = await session.scalar(select(Department).where(Department.code == code))
    if department is None or not department.phone:
        raise UnknownDepartment(f"no department {code!r} with a phone")
    await deps.queue.blind_transfer(live.caller_channel, department.phone)
    await consultation_desk.update_consultation(
        deps.sessions, consultation_id, actor=desk.actor, disposition="transferred",
        agent_login=desk.login)
    await audit.write(deps.sessions, actor=desk.actor, action="call.transfer",
                      object_type="consultation", object_id=consultation_id,
                      detail={"call_id": call_id, "department": code,
                              "number": department.phone})
    return web.json_response({"transferred_to": department.phone, "department": code})


@agent_required(post=True)
async def close_call(request: web.Request, desk: AgentDesk) -> web.Response:
    closed = await request.app[DESK_KEY].hub.dismiss(desk.login, request.match_info["call_id"])
    if not closed:
        raise InvalidInput("only a call that has ended can be closed")
    return web.json_response({"closed": True})


@agent_required(post=True)
async def change_stage(request: web.Request, desk: AgentDesk) -> web.Response:
    deps = request.app[DESK_KEY]
    number = cases.check_number(request.match_info["number"])
    form = await _form(request)
    await case_access.check(deps.sessions, number, viewer_of(desk), "change_stage",
                            via="desk.stage", audit_origin=web_session.audit_origin(request))
    view = await cases.change_stage(deps.sessions, number, form.get("stage", ""),
                                    actor=desk.actor, note=form.get("note") or None)
    if desk.call is not None:
        await deps.hub.refresh_pop(desk.call.call_id)
    return web.json_response({"case": await _case_json(request, desk, view, "desk.stage")})


@agent_required()
async def get_case(request: web.Request, desk: AgentDesk) -> web.Response:
    deps = request.app[DESK_KEY]
    number = cases.check_number(request.match_info["number"])
    await case_access.check(deps.sessions, number, viewer_of(desk), "read",
                            via="desk", audit_origin=web_session.audit_origin(request))
    view = await cases.get_case(deps.sessions, number)
    return web.json_response({"case": await _case_json(request, desk, view, "desk")})


def viewer_of(desk: AgentDesk) -> case_access.Viewer:
    """The viewer signed in at this desk, with the call on it (for crm.cases.access)."""
    call = desk.call
    line = None
    if call is not None:
        line = case_access.Line(call.call_id, call.phase, call.pop.caller_number,
                                call.pop.case.number if call.pop.case is not None else None)
    return case_access.Viewer(desk.agent_id, desk.login, desk.role, line)


async def _check_link(request: web.Request, desk: AgentDesk, call_id: str) -> None:
    """Need to know: cases are taken up by linking them to the call the agent is on (or one
    they answered lately), never to a call still ringing or long gone (crm.cases.access)."""
    deps = request.app[DESK_KEY]
    async with deps.sessions() as session:
        row = (await session.execute(
            select(Consultation.agent_id, Consultation.started_at, Consultation.ended_at)
            .where(Consultation.call_id == call_id))).first()
    viewer = viewer_of(desk)
    decision = case_access.may_link(
        viewer, call_id, answered_by_viewer=row is not None and row.agent_id == desk.agent_id,
        started_at=row.started_at if row else None, ended_at=row.ended_at if row else None)
    if not decision.allowed:
        await audit.write(deps.sessions, actor=desk.actor, action="case.link_denied",
                          object_type="consultation", object_id=call_id,
                          detail={"via": "desk"}, **web_session.audit_origin(request))
        raise case_access.NeedToKnow(decision.reason, details={"call_id": call_id})


async def _audit_case_read(request: web.Request, desk: AgentDesk, view: cases.CaseView,
                           via: str, phone_revealed: bool) -> None:
    await audit.write(request.app[DESK_KEY].sessions, actor=desk.actor, action="case.read",
                      object_type="case", object_id=view.number,
                      detail={"via": via, "phone_revealed": phone_revealed},
                      **web_session.audit_origin(request))


async def _case_json(request: web.Request, desk: AgentDesk, view: cases.CaseView,
                     via: str) -> dict[str, Any]:
    """The case as this agent may see it (the read is audited): the contact phone in full
    only when it is the caller connected to them."""
    call = desk.call
    reveal = (call is not None and call.phase == "connected"
              and view.contact_phone is not None and view.contact_phone == call.pop.caller_number)
    await _audit_case_read(request, desk, view, via, reveal)
    return view.to_json(viewer_role=desk.role, reveal_phone=reveal)


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
    await _leave_queue(deps, desk)
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
