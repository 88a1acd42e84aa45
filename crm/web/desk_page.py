"""The desk's page and sign-in: signing in and out, pausing, the desk page, the current call
and the websocket that pushes the desk's changes. Sign-in is throttled per account and per
source address; the websocket checks Origin. Signing in joins the agent's desk phone to the
queue, signing out leaves it, pausing pauses it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import hdrs, web
from aiohttp_session import get_session, new_session
from sqlalchemy import select

from crm.agents.view import AgentView
from crm.audit import log as audit
from crm.cases import service as cases
from crm.categories import tree as category_tree
from crm.consultations import service as consultation_desk
from crm.errors import HotlineError, InvalidInput, PermissionDenied, Unauthenticated
from crm.i18n.phrases import N_, Phrase
from crm.live.desk_hub import AgentDesk
from crm.storage.db import SessionFactory
from crm.storage.models import Department
from crm.telephony.queue import interface_for
from crm.web import locale
from crm.web import session as web_session
from crm.web.desk_auth import (
    DESK_KEY,
    PREFIX,
    SIGNED_OUT,
    DeskDeps,
    agent_required,
    render,
    signed_in,
)
from crm.web.desk_labels import labels_json
from crm.web.session import SECURITY_KEY, check_csrf, check_origin, csrf_token

log = logging.getLogger(__name__)
FORM_EXPIRED = N_("The form expired; please sign in again.")
WRONG_PASSWORD = N_("Wrong login or password.")


# -- sign in and out ---------------------------------------------------------------------------
async def login_form(request: web.Request) -> web.Response:
    if await signed_in(request) is not None:
        raise web.HTTPSeeOther(f"{PREFIX}/")
    session = await get_session(request)
    return render(request, "desk/login.html", csrf=csrf_token(session), error=None)


async def login(request: web.Request) -> web.Response:
    deps = request.app[DESK_KEY]
    security = request.app[SECURITY_KEY]
    session = await get_session(request)
    form = await request.post()
    try:
        await check_csrf(request, session, reload="the desk")
    except PermissionDenied:
        return render(request, "desk/login.html", 403, csrf=csrf_token(session),
                      error=locale.chosen(request).gettext(FORM_EXPIRED))
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
        response = render(request, "desk/login.html", result.status,
                          csrf=csrf_token(session),
                          error=result.explain(WRONG_PASSWORD, locale.chosen(request)))
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
    await join_queue(deps, agent)
    raise web.HTTPSeeOther(f"{PREFIX}/")


async def join_queue(deps: DeskDeps, agent: AgentView | AgentDesk) -> None:
    name = agent.display_name
    if deps.queue is None or not agent.extension:
        return
    try:
        await deps.queue.join(interface_for(agent.extension), name, agent.languages,
                              agent_id=agent.id if isinstance(agent, AgentView)
                              else agent.agent_id)
    except HotlineError as exc:  # the desk shows "logged out" and offers to join again
        log.warning("agent %s could not join queue %s: %s", agent.login, deps.queue.queue, exc)


async def leave_queue(deps: DeskDeps, desk: AgentDesk) -> None:
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
    await leave_queue(deps, desk)
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
        raise InvalidInput(Phrase("this desk has no phone in a queue"))
    paused = str((await request.post()).get("paused", "")) == "1"
    if not paused and desk.status == "logged_out":
        await deps.queue.join(interface_for(desk.extension), desk.display_name,
                              desk.languages, agent_id=desk.agent_id)
    else:
        await deps.queue.pause(interface_for(desk.extension), paused, "desk")
    await audit.write(deps.sessions, actor=desk.actor,
                      action="desk.pause" if paused else "desk.ready", object_type="agent",
                      object_id=desk.login)
    return web.json_response({"paused": paused})


# -- the desk page, its state and websocket ----------------------------------------------------
async def _options(sessions: SessionFactory) -> dict[str, Any]:
    async with sessions() as session:
        categories = await category_tree.leaf_choices(session)
        departments = (await session.scalars(select(Department).order_by(Department.code))
                       ).all()
    return {"categories": [(c.code, c.path) for c in categories],
            "departments": [(d.code, d.name, d.name_en, d.phone) for d in departments
                            if d.phone],
            "dispositions": consultation_desk.DISPOSITIONS, "stages": cases.STAGES}


@agent_required(page=True)
async def desk_page(request: web.Request, desk: AgentDesk) -> web.Response:
    session = await get_session(request)
    options = await _options(request.app[DESK_KEY].sessions)
    t = locale.chosen(request)
    if request.get(locale.USER_LOCALE) is None:  # no saved choice: pushes read like the page
        request.app[DESK_KEY].hub.set_locale(desk.login, t.locale)
    return render(request, "desk/page.html", agent=desk, csrf=csrf_token(session),
                  labels_json=labels_json(t), **options)


@agent_required()
async def current_call(request: web.Request, desk: AgentDesk) -> web.Response:
    snapshot = await request.app[DESK_KEY].hub.current(
        desk.login, origin=web_session.audit_origin(request))
    return web.json_response(snapshot)


async def desk_socket(request: web.Request) -> web.StreamResponse:
    """Pushes the desk's changes; closes when the session idles out, reaches its absolute
    end or is ended (signed out anywhere, password or role changed, account disabled)."""
    check_origin(request)
    found = await signed_in(request)
    if found is None:
        raise Unauthenticated(Phrase("sign in at the desk first"))
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

