"""A department's page in the console (承办部门): an account bound to a department (see
crm.cases.dispatch.bind_agent) signs in to the console and sees only its department's open
cases -- due-soon and overdue ones marked, reminders shown -- and acts on them: accept,
reply with the result, return with a reason, ask for an extension. It reaches no other page
of the console (they need the supervisor role) and no other department's case."""

from __future__ import annotations

from datetime import datetime, time

from aiohttp import web

from crm.cases import dispatch
from crm.errors import InvalidInput, PermissionDenied
from crm.i18n.labels import CLOSED_LOOP
from crm.i18n.phrases import Phrase
from crm.storage.db import SessionFactory
from crm.web.console.auth import PREFIX, ConsoleUser, console_route
from crm.web.console.common import CONSOLE_KEY, local, render_page, when
from crm.web.console.supervision import directory_names

DEPARTMENT_PAGE = f"{PREFIX}/department"
ACTS = ("accept", "reply", "return", "extension")


class DepartmentAccountRequired(PermissionDenied):
    code = "department_account_required"


async def department_of(sessions: SessionFactory, agent_id: int) -> str | None:
    return await dispatch.agent_department(sessions, agent_id)


async def _department(request: web.Request, user: ConsoleUser) -> str:
    department = await department_of(request.app[CONSOLE_KEY].sessions, user.agent_id)
    if department is None:
        raise DepartmentAccountRequired(Phrase("this page is for a department's accounts"))
    return department


@console_route("agent", page=True)
async def department_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    department = await _department(request, user)
    now = deps.clock()
    cases = await dispatch.department_cases(deps.sessions, department)
    reminded: dict[str, str] = {}
    for r in await dispatch.reminders(deps.sessions, department=department):
        reminded[r.case_number] = r.kind
    requests = await dispatch.list_requests(deps.sessions, department=department)
    departments, categories = await directory_names(request, user)
    return render_page(request, "console/department.html", user, "department",
                       department=department, cases=cases, reminded=reminded, now=now,
                       department_name=departments.get(department, department),
                       categories=categories, closed_loop=CLOSED_LOOP,
                       pending={r.case_number for r in requests},
                       local=lambda v: when(local(deps, v), "%Y-%m-%d %H:%M"))


def _until(value: str, deps: object) -> datetime:
    """The new deadline from the form's date (end of that local day) or date-time."""
    try:
        if "T" in value:
            parsed = datetime.fromisoformat(value)
        else:
            parsed = datetime.combine(datetime.fromisoformat(value).date(), time(23, 59))
    except ValueError as exc:
        raise InvalidInput(Phrase("until must be a date (YYYY-MM-DD)")) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=deps.tz)  # type: ignore[attr-defined]


@console_route("agent", page=True, post=True)
async def department_act(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    department = await _department(request, user)
    act, number = request.match_info["act"], request.match_info["number"]
    form = await request.post()
    text = str(form.get("text", ""))
    common = {"department": department, "actor": user.actor}
    if act == "accept":
        await dispatch.accept(deps.sessions, number, **common)
    elif act == "reply":
        await dispatch.reply(deps.sessions, number, text, **common)
    elif act == "return":
        await dispatch.request_return(deps.sessions, number, text, **common)
    elif act == "extension":
        until = _until(str(form.get("until", "")).strip(), deps)
        await dispatch.request_extension(deps.sessions, number, until, text, **common)
    else:
        raise InvalidInput(Phrase("act must be one of {acts}", {"acts": ", ".join(ACTS)}))
    raise web.HTTPSeeOther(f"{DEPARTMENT_PAGE}#case-{number}")
