"""The supervisor console's supervision page (督办): overdue and due-soon cases with their
urge counts and reminder marks, the departments' pending returns and extension requests with
the forms to rule on them, and a button that sends the reminders now."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from crm.cases import dispatch
from crm.errors import InvalidInput
from crm.i18n.catalogs import SOURCE_LOCALE
from crm.i18n.labels import CLOSED_LOOP
from crm.i18n.phrases import Phrase
from crm.reports.audit_log import actor_parts
from crm.storage.models import CaseCategory, Department
from crm.web import locale
from crm.web.console.auth import PREFIX, ConsoleUser, console_route
from crm.web.console.common import CONSOLE_KEY, local, record_id, render_page, when

PAGE = f"{PREFIX}/supervision"


async def directory_names(request: web.Request, user: ConsoleUser
                          ) -> tuple[dict[str, str], dict[str, str]]:
    """The names of the departments (in English for a reader of English, where one is
    recorded) and of the case categories, by code: the pages show names, not codes."""
    english = locale.chosen(request, user.locale).locale == SOURCE_LOCALE
    async with request.app[CONSOLE_KEY].sessions() as session:
        departments = (await session.execute(
            select(Department.code, Department.name, Department.name_en)
            .order_by(Department.code))).all()
        categories = (await session.execute(select(CaseCategory.code, CaseCategory.name))).all()
    return ({d.code: (english and d.name_en) or d.name for d in departments},
            {c.code: c.name for c in categories})


def who(actor: str) -> str:
    """Who an actor is, without its kind ("agent:housing1" -> "housing1")."""
    return actor_parts(actor)[1] or actor


async def _reminded(deps: object, numbers: set[str]) -> dict[str, str]:
    """The latest reminder kind of each listed case (the console's mark)."""
    found = await dispatch.reminders(deps.sessions, department=None)  # type: ignore[attr-defined]
    return {r.case_number: r.kind for r in found if r.case_number in numbers}


@console_route(page=True)
async def supervision_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    now = deps.clock()
    overdue = await dispatch.overdue_cases(deps.sessions, now=now)
    due_soon = await dispatch.due_soon_cases(deps.sessions, now=now)
    requests = await dispatch.list_requests(deps.sessions)
    reminded = await _reminded(deps, {c.number for c in (*overdue, *due_soon)})
    departments, categories = await directory_names(request, user)
    return render_page(request, "console/supervision.html", user, "supervision",
                       overdue=overdue, due_soon=due_soon, requests=requests,
                       reminded=reminded, now=now, closed_loop=CLOSED_LOOP,
                       departments=departments, categories=categories, who=who,
                       local=lambda v: when(local(deps, v), "%Y-%m-%d %H:%M"))


def _note(form: object) -> str | None:
    return str(form.get("note", "")).strip() or None  # type: ignore[attr-defined]


@console_route(page=True, post=True)
async def rule_on_return(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    form = await request.post()
    ruling = str(form.get("ruling", ""))
    if ruling not in ("redispatch", "uphold"):
        raise InvalidInput(Phrase("choose redispatch or uphold"))
    await dispatch.rule_on_return(deps.sessions, record_id(request), ruling,  # type: ignore[arg-type]
                                  actor=user.actor, note=_note(form),
                                  department=str(form.get("department", "")).strip() or None)
    raise web.HTTPSeeOther(PAGE)


@console_route(page=True, post=True)
async def decide_extension(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    form = await request.post()
    grant = str(form.get("grant", ""))
    if grant not in ("yes", "no"):
        raise InvalidInput(Phrase("grant must be yes or no"))
    await dispatch.decide_extension(deps.sessions, record_id(request), grant == "yes",
                                    actor=user.actor, note=_note(form))
    raise web.HTTPSeeOther(PAGE)


@console_route(page=True, post=True)
async def send_reminders(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    await dispatch.send_reminders(deps.sessions, now=deps.clock())
    raise web.HTTPSeeOther(PAGE)
