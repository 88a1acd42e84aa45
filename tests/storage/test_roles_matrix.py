"""Who may do what, on every route the web app registers.

``RULES`` names the rule of each route (method and path as the router has them). The first
test fails when a route is added without a rule here (or a rule outlives its route); the
second tries every route with no login, as an agent, a supervisor and an admin (and the API
with no token, a token of another scope and the right one), and checks the answer: the
sign-in page or 401 for nobody, 403 for a role too low, through for the rest (an agent
demoted while signed in to the console is signed out there); POSTs also without their CSRF
token (403). Desk case routes also follow the need-to-know rule
(crm.cases.access): an agent gets 403 need_to_know for a case that is not theirs; the third test
walks that rule through every relation a case can have to an agent (tests.storage.
case_situations.EXPECTED). The last checks that API scopes mean what they say: what each write
returns to a token with and without the read scope. Authorisation does not depend on the
database, so this runs on SQLite only (tests/storage/test_case_access.py covers both).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from crm.agents import accounts as agents
from crm.agents import tokens as api_tokens
from crm.agents.auth import has_role
from crm.audit import log as audit
from crm.cases import service as cases
from crm.demo_data import seed_demo
from crm.live.desk_hub import DeskHub
from crm.live.wallboard import Wallboard
from crm.storage.db import SessionFactory, make_engine, make_session_factory
from crm.storage.migrate import upgrade
from crm.storage.models import Case, ResidentPhone
from crm.storage.recordings import RecordingStore
from crm.storage.survey_models import SurveyFollowUp
from crm.web.app import HealthReport, create_app
from crm.web.console.app import ConsoleDeps
from crm.web.desk import DeskDeps
from ivr.asterisk.queue_control import QueueControl
from tests.console_data import seed_surveys
from tests.storage.case_situations import EXPECTED, build_situations

PASSWORD = "matrix-test-pw"
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Rule:
    kind: str
    """public, login (a sign-in form: public, CSRF-checked), desk, console or api."""
    role: str = "agent"
    """The least role (desk, console)."""
    page: bool = False
    """Nobody signed in: a GET is sent to the sign-in page instead of a 401."""
    scope: str | None = None
    """api: the token scope it needs."""
    signs_out: bool = False
    """Through means: sent to the sign-in page."""
    need_to_know: bool = False
    """desk: agents only for their own cases (the sample case is not the agent's: 403)."""
    department: bool = False
    """console: only accounts bound to a department (none of the identities here: 403
    department_account_required; tests/storage/test_supervision_console.py lets one in)."""


PUBLIC, LOGIN = Rule("public"), Rule("login")
DESK, DESK_PAGE = Rule("desk"), Rule("desk", page=True)
DESK_CASE = Rule("desk", need_to_know=True)
SUPERVISOR, SUPERVISOR_PAGE = Rule("console", "supervisor"), Rule("console", "supervisor",
                                                                      page=True)
ADMIN, ADMIN_PAGE = Rule("console", "admin"), Rule("console", "admin", page=True)


def api(scope: str) -> Rule:
    return Rule("api", scope=scope)


RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/"): PUBLIC, ("HEAD", "/"): PUBLIC,
    ("GET", "/healthz"): PUBLIC, ("HEAD", "/healthz"): PUBLIC,
    ("GET", "/static"): PUBLIC, ("HEAD", "/static"): PUBLIC,
    ("GET", "/api/openapi.json"): PUBLIC,
    ("POST", "/api/cases"): api("cases:write"),
    ("GET", "/api/cases/repeats"): api("cases:read"),
    ("GET", "/api/cases/{number}"): api("cases:read"),
    ("PATCH", "/api/cases/{number}"): api("cases:write"),
    ("GET", "/api/consultations"): api("consultations:read"),
    ("GET", "/api/service-levels"): api("reports:read"),
    ("GET", "/api/consultations/{id}"): api("consultations:read"),
    # dispatch: a department's acts need a token bound to it, rulings a hotline-wide one
    # (tests/api/test_dispatch_api.py); the scopes are checked first, here
    ("POST", "/api/cases/{number}/accept"): api("cases:write"),
    ("POST", "/api/cases/{number}/return"): api("cases:write"),
    ("POST", "/api/cases/{number}/extension"): api("cases:write"),
    ("POST", "/api/cases/{number}/reply"): api("cases:write"),
    ("GET", "/api/dispatch/requests"): api("cases:read"),
    ("POST", "/api/dispatch/returns/{id}/ruling"): api("cases:write"),
    ("POST", "/api/dispatch/extensions/{id}/decision"): api("cases:write"),
    ("GET", "/api/supervision/overdue"): api("cases:read"),
    ("GET", "/api/supervision/due-soon"): api("cases:read"),
    ("GET", "/api/reminders"): api("cases:read"),
    # the agent desk: every role
    ("GET", "/desk"): PUBLIC, ("HEAD", "/desk"): PUBLIC,  # a redirect to /desk/
    ("GET", "/desk/login"): PUBLIC, ("POST", "/desk/login"): LOGIN,
    ("POST", "/desk/logout"): Rule("desk", signs_out=True),
    ("GET", "/desk/"): DESK_PAGE,
    ("GET", "/desk/ws"): DESK,
    ("GET", "/desk/current-call"): DESK,
    ("POST", "/desk/pause"): DESK,
    ("POST", "/desk/locale"): DESK,
    ("POST", "/desk/calls/{call_id}/cases"): DESK,
    ("POST", "/desk/calls/{call_id}/notes"): DESK,
    ("POST", "/desk/calls/{call_id}/links"): DESK,
    ("POST", "/desk/calls/{call_id}/disposition"): DESK,
    ("POST", "/desk/calls/{call_id}/transfer"): DESK,
    ("POST", "/desk/calls/{call_id}/close"): DESK,
    ("GET", "/desk/callbacks"): DESK,
    ("POST", "/desk/calls/{call_id}/callback-outcome"): DESK,
    ("GET", "/desk/calls/{call_id}/knowledge"): DESK,
    ("POST", "/desk/calls/{call_id}/knowledge"): DESK,
    ("GET", "/desk/knowledge/search"): DESK,
    ("GET", "/desk/cases/{number}"): DESK_CASE,
    ("POST", "/desk/cases/{number}/stage"): DESK_CASE,
    # the supervisor console: supervisors and admins; the audit log: admins
    ("GET", "/console"): PUBLIC, ("HEAD", "/console"): PUBLIC,  # a redirect to /console/
    ("GET", "/console/login"): PUBLIC, ("POST", "/console/login"): LOGIN,
    ("POST", "/console/logout"): Rule("console", "agent", signs_out=True),
    ("POST", "/console/locale"): Rule("console", "agent"),
    ("GET", "/console/"): SUPERVISOR_PAGE,
    ("GET", "/console/wallboard/state"): SUPERVISOR,
    ("GET", "/console/wallboard/ws"): SUPERVISOR,
    ("GET", "/console/dashboard"): SUPERVISOR_PAGE,
    ("GET", "/console/surveys"): SUPERVISOR_PAGE,
    ("GET", "/console/surveys.csv"): SUPERVISOR,
    ("GET", "/console/consultations"): SUPERVISOR_PAGE,
    ("GET", "/console/consultations.csv"): SUPERVISOR,
    ("GET", "/console/consultations/{id}"): SUPERVISOR_PAGE,
    ("GET", "/console/consultations/{id}/recording"): SUPERVISOR,
    ("GET", "/console/surveys/{id}/comment"): SUPERVISOR,
    ("GET", "/console/residents/{id}"): SUPERVISOR_PAGE,
    ("GET", "/console/follow-ups"): SUPERVISOR_PAGE,
    ("GET", "/console/follow-ups.csv"): SUPERVISOR,
    ("POST", "/console/follow-ups/{id}/assign"): SUPERVISOR,
    ("POST", "/console/follow-ups/{id}/close"): SUPERVISOR,
    ("GET", "/console/service-levels"): SUPERVISOR_PAGE,
    ("GET", "/console/service-levels.csv"): SUPERVISOR,
    ("GET", "/console/callbacks"): SUPERVISOR_PAGE,
    ("GET", "/console/callbacks.json"): SUPERVISOR,
    ("POST", "/console/callbacks/{id}/cancel"): SUPERVISOR,
    ("POST", "/console/callbacks/{id}/reassign"): SUPERVISOR,
    ("GET", "/console/knowledge"): SUPERVISOR_PAGE,
    ("GET", "/console/knowledge/new"): SUPERVISOR_PAGE,
    ("GET", "/console/knowledge/{id}"): SUPERVISOR_PAGE,
    ("POST", "/console/knowledge"): SUPERVISOR,
    ("POST", "/console/knowledge/{id}"): SUPERVISOR,
    ("GET", "/console/supervision"): SUPERVISOR_PAGE,
    ("POST", "/console/supervision/returns/{id}/ruling"): SUPERVISOR,
    ("POST", "/console/supervision/extensions/{id}/decision"): SUPERVISOR,
    ("POST", "/console/supervision/remind"): SUPERVISOR,
    ("GET", "/console/department"): Rule("console", "agent", page=True, department=True),
    ("POST", "/console/department/cases/{number}/{act}"): Rule("console", "agent",
                                                                department=True),
    ("GET", "/console/audit"): ADMIN_PAGE,
    ("GET", "/console/audit.csv"): ADMIN,
    ("GET", "/console/data"): ADMIN_PAGE,
    ("GET", "/console/data/{kind}.csv"): ADMIN,
    ("POST", "/console/data/{kind}/import"): ADMIN_PAGE,
}


class FakeAmi:
    async def action(self, name: str, *, timeout: float = 5.0, **fields: str) -> dict:
        return {}

    async def action_list(self, name: str, *, timeout: float = 10.0, **fields: str) -> list:
        return []


@dataclass
class Identity:
    name: str
    role: str | None
    client: TestClient
    desk_csrf: str = ""
    console_csrf: str = ""
    console_ended: bool = False
    """Its console session was ended by the server (it was demoted while signed in)."""


@dataclass
class World:
    identities: list[Identity]
    samples: dict[str, str]
    tokens: dict[str, str]
    """scope -> a token holding only that scope."""
    sessions: SessionFactory
    hub: DeskHub


def _csrf(html: str) -> str:
    found = re.search(r'(?:name="csrf" value|data-csrf)="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


async def _sign_in(client: TestClient, area: str, login: str) -> str:
    form = await client.get(f"/{area}/login")
    response = await client.post(f"/{area}/login", data={
        "csrf": _csrf(await form.text()), "login": login, "password": PASSWORD})
    assert response.status == 200 and str(response.url).endswith(f"/{area}/"), \
        (login, area, response.status)
    return _csrf(await response.text())


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'matrix.db'}"
    await upgrade(url)
    await seed_demo(url)
    engine = make_engine(url)
    sessions: SessionFactory = make_session_factory(engine)
    seeded = await seed_surveys(sessions, TZ)
    for login in ("supervisor1", "admin"):
        await agents.set_password(sessions, login, PASSWORD)
    # An agent that had a console session: a supervisor who signed in and was then demoted
    # (which ends their sessions), and cannot sign in to the console again as an agent.
    await agents.create_agent(sessions, login="agent9", display_name="临时", role="supervisor",
                              extension="2009", password=PASSWORD)
    hub = DeskHub(sessions)
    hub.start()
    wallboard = Wallboard(sessions, queue="hotline", tz=TZ)
    await wallboard.start()
    app = the_app(sessions, hub, wallboard, tmp_path)
    server = TestServer(app)
    clients: list[TestClient] = []

    async def client() -> TestClient:
        c = TestClient(server)
        await c.start_server()
        clients.append(c)
        return c

    anonymous = Identity("nobody", None, await client())
    agent = Identity("agent", "agent", await client())
    agent.console_csrf = await _sign_in(agent.client, "console", "agent9")
    await agents.update_agent(sessions, "agent9", role="agent")
    agent.console_ended = True
    form = await agent.client.get("/console/login")
    again = await agent.client.post("/console/login", data={
        "csrf": _csrf(await form.text()), "login": "agent9", "password": PASSWORD})
    assert again.status == 403, again.status
    agent.desk_csrf = await _sign_in(agent.client, "desk", "agent9")
    signed: list[Identity] = []
    for role, login in (("supervisor", "supervisor1"), ("admin", "admin")):
        who = Identity(role, role, await client())
        who.desk_csrf = await _sign_in(who.client, "desk", login)
        who.console_csrf = await _sign_in(who.client, "console", login)
        signed.append(who)
    async with sessions() as session:
        number = await session.scalar(select(Case.number).order_by(Case.id).limit(1))
        follow_up = await session.scalar(select(SurveyFollowUp.id).limit(1))
        resident = await session.scalar(select(ResidentPhone.resident_id).limit(1))
    tokens = {scope: await api_tokens.create_token(sessions, f"matrix-{scope.replace(':', '-')}",
                                                   [scope]) for scope in api_tokens.SCOPES}
    samples = {"/static": "/static/console.css", "{number}": str(number), "{kind}": "agents",
               "{call_id}": seeded.call_ids[0],
               "/console/consultations/{id}": f"/console/consultations/{seeded.consultations[0]}",
               "/api/consultations/{id}": f"/api/consultations/{seeded.consultations[0]}",
               "/console/residents/{id}": f"/console/residents/{resident}",
               "/console/follow-ups/{id}": f"/console/follow-ups/{follow_up}",
               "/console/callbacks/{id}": "/console/callbacks/1",
               "/console/knowledge/{id}": "/console/knowledge/1",
               "/console/department/cases/{number}/{act}":
                   f"/console/department/cases/{number}/accept",
               "/console/supervision/returns/{id}": "/console/supervision/returns/1",
               "/console/supervision/extensions/{id}": "/console/supervision/extensions/1",
               "/api/dispatch/returns/{id}": "/api/dispatch/returns/1",
               "/api/dispatch/extensions/{id}": "/api/dispatch/extensions/1",
               "/console/surveys/{id}": f"/console/surveys/{seeded.surveys[0]}"}
    try:
        yield World([anonymous, agent, *signed], samples, tokens, sessions, hub)
    finally:
        await hub.close()
        await wallboard.close()
        for c in clients:
            await c.close()
        await server.close()
        await engine.dispose()


def concrete(path: str, samples: dict[str, str]) -> str:
    for template, value in sorted(samples.items(), key=lambda kv: -len(kv[0])):
        if template.startswith("/") and path.startswith(template):
            path = value + path[len(template):]
    for template, value in samples.items():
        if template.startswith("{"):
            path = path.replace(template, value)
    assert "{" not in path, path
    return path


def the_app(sessions: SessionFactory, hub: DeskHub, wallboard: Wallboard | None,
            tmp_path: Path) -> web.Application:
    """The web app with everything mounted: API, desk, console."""
    (tmp_path / "monitor").mkdir(exist_ok=True)
    return create_app(
        sessions, lambda: HealthReport("logged_in", 1, 0, 0),
        desk=DeskDeps(sessions, hub, QueueControl(FakeAmi()), "matrix-secret"),
        console=ConsoleDeps(sessions, "matrix-secret", wallboard=wallboard,
                            recordings=RecordingStore(tmp_path / "monitor"), tz=TZ))


def test_every_route_has_a_rule(tmp_path: Path) -> None:
    unused: SessionFactory = make_session_factory(make_engine("sqlite+aiosqlite://"))
    app = the_app(unused, DeskHub(unused), None, tmp_path)
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()}
    missing = sorted(routes - set(RULES))
    assert not missing, f"routes without a rule in RULES: {missing}"
    stale = sorted(set(RULES) - routes)
    assert not stale, f"rules for routes that no longer exist: {stale}"


def _through(response: ClientResponse) -> bool:
    """Not refused and not sent to a sign-in page."""
    location = response.headers.get("Location", "").split("?")[0]
    return response.status not in (401, 403) and not location.endswith("/login")


async def _call(identity: Identity, method: str, path: str, *, csrf: str | None = None,
                headers: dict[str, str] | None = None) -> ClientResponse:
    data = {"csrf": csrf} if csrf else None
    response = await identity.client.request(method, path, data=data, headers=headers,
                                             allow_redirects=False)
    await response.read()
    return response


def _signed_out(rule: Rule, method: str, area: str, response: ClientResponse) -> bool:
    """Answered as to someone not signed in: the sign-in page for pages, else 401."""
    if rule.page and method == "GET":
        return (response.status in (302, 303)
                and response.headers["Location"].split("?")[0] == f"/{area}/login")
    return response.status == 401


def _order(item: tuple[tuple[str, str], Rule]) -> tuple[bool, str]:
    (method, path), rule = item
    return (rule.signs_out, f"{path} {method}")  # signing out comes last


async def test_every_route_enforces_its_rule(world: World) -> None:
    failures: list[str] = []

    def check(ok: bool, who: str, method: str, path: str, response: ClientResponse,
              wanted: str) -> None:
        if not ok:
            failures.append(f"{method} {path} as {who}: {response.status} "
                            f"{response.headers.get('Location', '')} (wanted {wanted})")

    anonymous = world.identities[0]
    for (method, template), rule in sorted(RULES.items(), key=_order):
        path = concrete(template, world.samples)
        if rule.kind == "public":
            for who in world.identities:
                r = await _call(who, method, path)
                check(_through(r) and r.status < 400, who.name, method, path, r, "through")
            continue
        if rule.kind == "login":
            r = await _call(anonymous, method, path)
            check(r.status == 403, "nobody without CSRF", method, path, r, "403")
            continue
        if rule.kind == "api":
            r = await _call(anonymous, method, path)
            check(r.status == 401, "no token", method, path, r, "401")
            other = next(s for s in world.tokens if s != rule.scope)
            for scope, wanted in ((other, 403), (rule.scope, None)):
                r = await _call(anonymous, method, path,
                                headers={"Authorization": f"Bearer {world.tokens[scope]}"})
                ok = r.status == wanted if wanted else _through(r)
                check(ok, f"token {scope}", method, path, r, str(wanted or "through"))
            for who in world.identities[1:]:  # a desk or console session is not a token
                r = await _call(who, method, path)
                check(r.status == 401, who.name, method, path, r, "401")
            continue
        area = "desk" if rule.kind == "desk" else "console"
        r = await _call(anonymous, method, path)
        check(_signed_out(rule, method, area, r), "nobody", method, path, r,
              "the sign-in page" if rule.page and method == "GET" else "401")
        for who in world.identities[1:]:
            assert who.role is not None
            csrf = who.desk_csrf if area == "desk" else who.console_csrf
            if area == "console" and who.console_ended:
                r = await _call(who, method, path, csrf=csrf if method == "POST" else None)
                check(_signed_out(rule, method, area, r), f"{who.name} (demoted)", method,
                      path, r, "signed out")
                continue
            allowed = has_role(who.role, rule.role)
            if method == "POST":
                r = await _call(who, method, path)
                check(r.status == 403, f"{who.name} without CSRF", method, path, r, "403")
            r = await _call(who, method, path, csrf=csrf if method == "POST" else None)
            through = (r.status == 303 and r.headers["Location"] == f"/{area}/login"
                       if rule.signs_out else _through(r))
            if rule.department:
                code = (await r.json())["error"]["code"] if r.status == 403 and \
                    r.content_type == "application/json" else r.status
                check(code in ("department_account_required", 403), who.name, method, path, r,
                      "403 department_account_required")
                continue
            if rule.need_to_know and not has_role(who.role, "supervisor"):
                code = (await r.json())["error"]["code"] if r.status == 403 else None
                check(code == "need_to_know", who.name, method, path, r, "403 need_to_know")
                continue
            check(through if allowed else r.status == 403, who.name, method, path, r,
                  "through" if allowed else "403")
    assert not failures, "\n".join(failures)


# -- need to know: which cases each role may read and move on at the desk -----------------------
async def test_need_to_know_for_every_relation_and_role(world: World) -> None:
    """EXPECTED (written out by hand) against the running desk: every relation a case can have
    to an agent, read and stage change, as that agent, a supervisor and an admin."""
    situations = await build_situations(world.sessions, world.hub, login="agent9",
                                         extension="2009", other_extension="2001")
    failures: list[str] = []
    for relation, (may_read, may_move) in EXPECTED.items():
        number = situations.numbers[relation]
        for who in world.identities[1:]:
            wide = who.role in ("supervisor", "admin")
            read = await who.client.get(f"/desk/cases/{number}")
            body = await read.json()
            wanted = 200 if wide or may_read else 403
            if read.status != wanted or (wanted == 403
                                         and body["error"]["code"] != "need_to_know"):
                failures.append(f"read {relation} as {who.name}: {read.status} {body}")
            stage = (await cases.get_case(world.sessions, number)).stage
            target = cases.TRANSITIONS[stage][0]
            moved = await who.client.post(f"/desk/cases/{number}/stage",
                                          data={"csrf": who.desk_csrf, "stage": target})
            body = await moved.json()
            wanted = 200 if wide or may_move else 403
            if moved.status != wanted or (wanted == 200 and body["case"]["stage"] != target):
                failures.append(f"move {relation} as {who.name}: {moved.status} {body}")
    assert not failures, "\n".join(failures)
    # every refusal is in the audit log, under the agent, with what was wanted
    denied = [(e.object_id, e.detail["wanted"]) for e in await audit.entries(
        world.sessions, object_type="case", limit=500)
        if e.action == "case.access_denied" and e.actor == "agent:agent9"]
    expected = [(situations.numbers[r], act) for r, (may_read, may_move) in EXPECTED.items()
                for act, ok in (("read", may_read), ("change_stage", may_move)) if not ok]
    assert sorted(denied) == sorted(expected)


# -- scopes mean what they say ----------------------------------------------------------------
WRITE_BODIES = {
    ("POST", "/api/cases"): {"category": "repair", "description": "楼道灯不亮",
                             "contact_phone": "13800138000", "resident_phone": "13800138000",
                             "address": "幸福社区3号楼2单元"},
    ("PATCH", "/api/cases/{number}"): {"note": "已联系"},
}
RECEIPT = {"number", "stage", "updated_at"}


async def test_writes_return_only_what_the_token_may_read(world: World) -> None:
    """A token that may write cases but not read them gets a receipt from every write; with
    cases:read as well it gets the whole case, and that read is audited under its name."""
    from tests.api.test_dispatch_api import DISPATCH_PATHS  # acts with department tokens:
    # their receipts are checked there (test_a_write_only_department_token_gets_receipts)

    writes = {key for key, rule in RULES.items() if rule.kind == "api"
              and rule.scope == "cases:write" and key[1] not in DISPATCH_PATHS}
    assert writes == set(WRITE_BODIES), "give every cases:write route a body here"
    both = await api_tokens.create_token(world.sessions, "matrix-both",
                                         ["cases:write", "cases:read"])
    client = world.identities[0].client
    for (method, template), body in sorted(WRITE_BODIES.items()):
        path = concrete(template, world.samples)
        for name, token in (("matrix-cases-write", world.tokens["cases:write"]),
                            ("matrix-both", both)):
            r = await client.request(method, path, json=body,
                                     headers={"Authorization": f"Bearer {token}"})
            data = await r.json()
            assert r.status in (200, 201), (method, path, name, data)
            reads = [e for e in await audit.entries(world.sessions, object_type="case",
                                                    object_id=data["number"])
                     if e.action == "case.read" and e.actor == f"token:{name}"]
            if name == "matrix-both":
                assert {"resident", "contact_phone", "history"} <= set(data), (method, name)
                assert reads, (method, path, name)
            else:
                assert set(data) == RECEIPT, (method, path, name, data)
                assert not reads, (method, path, name)
