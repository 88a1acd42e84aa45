"""The language switch of the desk and the console: a signed-in user's choice is saved on
their account (every page and push follows it, on every web node); the cookie keeps it for
the sign-in pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from crm.agents import accounts
from crm.audit import log as audit
from crm.errors import InvalidInput
from crm.i18n.catalogs import SUPPORTED, normalize
from crm.i18n.phrases import Phrase
from crm.live.desk_hub import AgentDesk
from crm.web import locale
from crm.web import session as web_session
from crm.web.console.auth import PREFIX as CONSOLE_PREFIX
from crm.web.console.auth import ConsoleUser, console_route
from crm.web.console.common import CONSOLE_KEY
from crm.web.desk_auth import DESK_KEY, agent_required
from crm.web.desk_auth import PREFIX as DESK_PREFIX


async def _chosen(request: web.Request) -> str:
    form = await request.post()
    value = normalize(str(form.get("locale", "")))
    if value is None:
        raise InvalidInput(Phrase("locale must be one of {locales}",
                                  {"locales": ", ".join(SUPPORTED)}))
    return value


def _back(request: web.Request, prefix: str) -> str:
    """The page the switch was used on (same site and app only), else the app's home."""
    referer = urlsplit(request.headers.get("Referer", ""))
    if referer.path.startswith(f"{prefix}/") and (not referer.netloc
                                                  or referer.netloc == request.host):
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return f"{prefix}/"


def _redirect(request: web.Request, prefix: str, value: str, secure: bool) -> web.Response:
    response = web.HTTPSeeOther(_back(request, prefix))
    locale.remember(response, request, value, secure=secure)
    return response


@console_route("agent", post=True)  # a department's account (role agent) chooses too
async def console_locale(request: web.Request, user: ConsoleUser) -> web.Response:
    value = await _chosen(request)
    deps = request.app[CONSOLE_KEY]
    await accounts.set_locale(deps.sessions, user.login, value)
    await audit.write(deps.sessions, actor=user.actor, action="account.locale",
                      object_type="agent", object_id=user.login, detail={"locale": value},
                      **web_session.audit_origin(request))
    raise _redirect(request, CONSOLE_PREFIX, value, deps.secure_cookies)


@agent_required(post=True)
async def desk_locale(request: web.Request, desk: AgentDesk) -> web.Response:
    value = await _chosen(request)
    deps = request.app[DESK_KEY]
    await accounts.set_locale(deps.sessions, desk.login, value)
    deps.hub.set_locale(desk.login, value)
    await audit.write(deps.sessions, actor=desk.actor, action="account.locale",
                      object_type="agent", object_id=desk.login, detail={"locale": value},
                      **web_session.audit_origin(request))
    raise _redirect(request, DESK_PREFIX, value, deps.secure_cookies)


CONSOLE_ROUTES = [("POST", "/locale", console_locale)]
DESK_ROUTES = [("POST", "/locale", desk_locale)]
