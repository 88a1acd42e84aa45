"""Callback requests on the web: the pending list on the agent desk, the outcome an agent
records for the callback on their line, and the supervisors' list (with the wallboard's)
where they cancel or reassign a request (audited). Routes are added to the desk's and the
console's tables (crm.web.desk, crm.web.console.app)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crm.agents import accounts
from crm.agents.auth import mask_phone
from crm.callbacks import service
from crm.callbacks.service import CallbackView
from crm.errors import InvalidInput
from crm.i18n.catalogs import Translator, translator
from crm.i18n.phrases import Phrase
from crm.live.desk_hub import AgentDesk
from crm.reports.audit_log import actor_parts
from crm.web import locale
from crm.web import session as web_session
from crm.web.console.auth import ConsoleUser, console_route
from crm.web.console.common import CONSOLE_KEY, PREFIX, local, record_id, render_page
from crm.web.desk import DESK_KEY, agent_required, call_for


def callback_json(view: CallbackView, role: str, t: Translator | None = None) -> dict[str, Any]:
    """A request as a desk or console list shows it; agents see masked numbers. The reason
    and status are named in ``t``'s language (the reader's; the default language without)."""
    t = t or translator()
    data = view.to_json()
    data["caller_number"] = mask_phone(view.caller_number, role)
    data["reason_text"] = t.label("callback_reason", view.reason)
    data["status_text"] = t.label("callback_status", view.status)
    data.pop("call_id", None)
    return data


# -- the desk -----------------------------------------------------------------------------------
@agent_required()
async def desk_callbacks(request: web.Request, desk: AgentDesk) -> web.Response:
    """Pending callbacks in the order they will be called back."""
    deps = request.app[DESK_KEY]
    pending = await service.list_pending(deps.sessions)
    t = locale.chosen(request, desk.locale)
    return web.json_response({"callbacks": [
        {**callback_json(v, desk.role, t), "mine": v.assigned_agent == desk.login}
        for v in pending]})


@agent_required(post=True)
async def desk_callback_outcome(request: web.Request, desk: AgentDesk) -> web.Response:
    """The agent on a callback call records how it went (reached, wrong_number, declined,
    or no_answer / busy): the request's outcome and a step on the callback's consultation."""
    deps = request.app[DESK_KEY]
    call_id, _, live = await call_for(request, desk)
    card = live.pop.callback if live is not None else None
    if card is None:
        raise InvalidInput(Phrase("this call is not a callback"))
    outcome = str((await request.post()).get("outcome", ""))
    if deps.callbacks is not None:
        view = await deps.callbacks.record_outcome(card.request.id, outcome, actor=desk.actor,
                                                   call_id=call_id)
    else:
        view = await service.record_outcome(deps.sessions, card.request.id, outcome,
                                            actor=desk.actor,
                                            rules=service.RetryRules())
    return web.json_response({"callback": callback_json(view, desk.role,
                                                         locale.chosen(request, desk.locale)),
                              "disposition": f"{outcome} → {view.status}"})


# -- the console --------------------------------------------------------------------------------
@console_route(page=True)
async def callbacks_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    pending = await service.list_pending(deps.sessions)
    done = [v for v in await service.list_callbacks(deps.sessions, open_only=False, limit=50)
            if not v.open]
    agents = [(a.login, a.display_name) for a in await accounts.list_agents(deps.sessions)]
    names = dict(agents)
    return render_page(request, "console/callbacks.html", user, "callbacks",
                       pending=pending, done=done, agents=agents,
                       agent_name=lambda login: names.get(login, login),
                       actor_name=lambda actor: names.get(actor_parts(actor)[1], actor),
                       local=lambda value: local(deps, value))


@console_route()
async def callbacks_json(request: web.Request, user: ConsoleUser) -> web.Response:
    """What the wallboard's callback panel shows (refreshed by its script)."""
    deps = request.app[CONSOLE_KEY]
    t = locale.chosen(request, user.locale)
    pending = await service.list_pending(deps.sessions)
    return web.json_response({"pending": len(pending),
                              "callbacks": [callback_json(v, user.role, t) for v in pending]})


@console_route(page=True, post=True)
async def cancel_callback(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    note = str((await request.post()).get("note", "")).strip() or None
    origin = web_session.audit_origin(request)
    source, session = origin["source"], origin["web_session"]
    request_id = record_id(request)
    if deps.callbacks is not None:
        await deps.callbacks.cancel(request_id, actor=user.actor, note=note, source=source,
                                    web_session=session)
    else:
        await service.cancel_callback(deps.sessions, request_id, actor=user.actor, note=note,
                                      source=source, web_session=session)
    raise web.HTTPSeeOther(f"{PREFIX}/callbacks#callback-{request_id}")


@console_route(page=True, post=True)
async def reassign_callback(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    agent = str((await request.post()).get("agent", "")).strip() or None
    request_id = record_id(request)
    origin = web_session.audit_origin(request)
    if deps.callbacks is not None:  # a callback waiting in a queue moves to the new agent
        await deps.callbacks.reassign(request_id, agent, actor=user.actor, **origin)
    else:
        await service.reassign_callback(deps.sessions, request_id, agent, actor=user.actor,
                                        **origin)
    raise web.HTTPSeeOther(f"{PREFIX}/callbacks#callback-{request_id}")


DESK_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/callbacks", desk_callbacks),
    ("POST", "/calls/{call_id}/callback-outcome", desk_callback_outcome),
]
CONSOLE_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/callbacks", callbacks_page),
    ("GET", "/callbacks.json", callbacks_json),
    ("POST", r"/callbacks/{id:\d+}/cancel", cancel_callback),
    ("POST", r"/callbacks/{id:\d+}/reassign", reassign_callback),
]
