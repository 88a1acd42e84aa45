"""Dispatch and supervision over the open API, on SQLite and PostgreSQL: every department act
and supervisor ruling, the department boundary (a department's token neither reads nor
changes another department's case), the lists and the reminder feed, each response checked
against the OpenAPI document."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from crm.agents import tokens as api_tokens
from crm.cases import dispatch
from crm.storage.models import ApiToken, AuditLog
from crm.web.api.openapi import openapi_document
from tests.api.test_api import NEW_CASE
from tests.api.test_openapi import _response_schema, check

DISPATCH_PATHS = {p for p in openapi_document()["paths"]
                  if p.startswith(("/api/dispatch/", "/api/supervision/", "/api/reminders"))
                  or p.endswith(("/accept", "/return", "/extension", "/reply"))}


class Caller:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.seen: set[tuple[str, str]] = set()

    async def __call__(self, method: str, url: str, path: str, who: dict[str, str],
                       json: Any = None, status: int = 200) -> Any:
        resp = await self.api.client.request(method, url, headers=who, json=json)
        assert resp.status == status, await resp.text()
        body = await resp.json()
        doc = openapi_document()
        check(body, _response_schema(doc, method, path, status), doc, f"{method} {url}")
        self.seen.add((method, path))
        return body


@pytest.fixture
async def depts(api):
    """Department tokens for housing and sanitation, and a case dispatched to housing."""
    tokens = {}
    for dept in ("housing", "sanitation"):
        tokens[dept] = await api_tokens.create_token(api.sessions, f"{dept}-system",
                                                     ["cases:read", "cases:write"])
        async with api.sessions() as session:
            token_id = await session.scalar(select(ApiToken.id)
                                            .where(ApiToken.name == f"{dept}-system"))
        await dispatch.bind_token(api.sessions, token_id, dept, actor="admin:test")
    api.tokens.update(tokens)
    resp = await api.client.post("/api/cases", json=NEW_CASE, headers=api.auth("writer"))
    number = (await resp.json())["number"]
    resp = await api.client.patch(f"/api/cases/{number}", json={"stage": "dispatched"},
                                  headers=api.auth("writer"))
    assert resp.status == 200
    return number


async def test_department_acts_and_supervisor_rulings(api, depts) -> None:
    number, call = depts, Caller(api)
    h, s, sup = api.auth("housing"), api.auth("sanitation"), api.auth("writer")
    case = f"/api/cases/{number}"
    await call("GET", case, "/api/cases/{number}", h)
    accepted = await call("POST", f"{case}/accept", "/api/cases/{number}/accept", h, {})
    assert accepted["stage"] == "in_progress"
    await call("POST", f"{case}/accept", "/api/cases/{number}/accept", h, {}, 409)

    deadline = datetime.fromisoformat(accepted["deadline"])
    until = (deadline + timedelta(days=3)).isoformat()
    asked = await call("POST", f"{case}/extension", "/api/cases/{number}/extension", h,
                       {"until": until, "reason": "等配件"}, 201)
    assert asked["status"] == "pending"
    listed = await call("GET", "/api/dispatch/requests", "/api/dispatch/requests", h)
    assert [r["id"] for r in listed["requests"]] == [asked["id"]]
    # a department cannot grant its own extension
    await call("POST", f"/api/dispatch/extensions/{asked['id']}/decision",
               "/api/dispatch/extensions/{id}/decision", h, {"grant": True}, 403)
    granted = await call("POST", f"/api/dispatch/extensions/{asked['id']}/decision",
                         "/api/dispatch/extensions/{id}/decision", sup, {"grant": True})
    assert granted["status"] == "granted"
    after = await call("GET", case, "/api/cases/{number}", h)
    assert datetime.fromisoformat(after["deadline"]) == deadline + timedelta(days=3)

    returned = await call("POST", f"{case}/return", "/api/cases/{number}/return", h,
                          {"reason": "属于环卫"}, 201)
    await call("POST", f"/api/dispatch/returns/{returned['id']}/ruling",
               "/api/dispatch/returns/{id}/ruling", h, {"ruling": "uphold"}, 403)
    ruled = await call("POST", f"/api/dispatch/returns/{returned['id']}/ruling",
                       "/api/dispatch/returns/{id}/ruling", sup,
                       {"ruling": "redispatch", "department": "sanitation"})
    assert ruled["status"] == "granted"
    await call("POST", f"/api/dispatch/returns/{returned['id']}/ruling",
               "/api/dispatch/returns/{id}/ruling", sup, {"ruling": "uphold"}, 409)
    # the case is sanitation's now: housing lost it, sanitation takes it up and replies
    await call("GET", case, "/api/cases/{number}", h, status=404)
    await call("POST", f"{case}/accept", "/api/cases/{number}/accept", s, {})
    replied = await call("POST", f"{case}/reply", "/api/cases/{number}/reply", s,
                         {"result": "已清运"})
    assert (replied["stage"], replied["latest_update"]) == ("resolved", "已清运")

    async with api.sessions() as session:
        acts = list(await session.scalars(select(AuditLog.actor + " " + AuditLog.action)
                                          .where(AuditLog.object_id == number)
                                          .order_by(AuditLog.id)))
    for act in ("token:housing-system case.dept_accept", "token:housing-system case.dept_extension",
                "token:writer case.extension_decision", "token:housing-system case.dept_return",
                "token:writer case.return_ruling", "token:sanitation-system case.dept_accept",
                "token:sanitation-system case.dept_reply"):
        assert act in acts


async def test_a_department_token_cannot_read_or_change_another_departments_case(
        api, depts) -> None:
    number, call = depts, Caller(api)
    s = api.auth("sanitation")  # the case is housing's
    case = f"/api/cases/{number}"
    for method, url, path, body in (
            ("GET", case, "/api/cases/{number}", None),
            ("PATCH", case, "/api/cases/{number}", {"note": "x"}),
            ("POST", f"{case}/accept", "/api/cases/{number}/accept", {}),
            ("POST", f"{case}/return", "/api/cases/{number}/return", {"reason": "x"}),
            ("POST", f"{case}/extension", "/api/cases/{number}/extension",
             {"until": "2099-01-01T00:00:00+00:00", "reason": "x"}),
            ("POST", f"{case}/reply", "/api/cases/{number}/reply", {"result": "x"})):
        refused = await call(method, url, path, s, body, 404)
        assert refused["error"]["code"] == "case_not_found"
        assert number not in refused["error"]["message"] or "department" in \
            refused["error"]["message"]
    view = await call("GET", case, "/api/cases/{number}", api.auth("writer"))
    assert view["stage"] == "dispatched" and len(view["history"]) == 2  # nothing changed
    # its own department may not move it elsewhere by PATCH, only return it
    moved = await call("PATCH", case, "/api/cases/{number}", api.auth("housing"),
                       {"department": "sanitation"}, 403)
    assert "return it" in moved["error"]["message"]
    # a hotline-wide token is no department: department acts need a department's token
    refused = await call("POST", f"{case}/accept", "/api/cases/{number}/accept",
                         api.auth("writer"), {}, 403)
    assert refused["error"]["code"] == "department_token_required"
    await call("POST", f"{case}/accept", "/api/cases/{number}/accept", api.auth("reader"),
               {}, 403)


async def test_lists_and_reminder_feed(api, depts) -> None:
    number, call = depts, Caller(api)
    other = (await (await api.client.post(
        "/api/cases", json=NEW_CASE | {"category": "garbage"},
        headers=api.auth("writer"))).json())["number"]
    await api.client.patch(f"/api/cases/{other}", json={"stage": "dispatched"},
                           headers=api.auth("writer"))
    far = datetime.now().astimezone() + timedelta(days=30)
    made = await dispatch.send_reminders(api.sessions, now=far)
    assert {number, other} <= {r.case_number for r in made}
    await dispatch.urge(api.sessions, other, channel="ivr_keys")

    for path in ("/api/supervision/overdue", "/api/supervision/due-soon"):
        await call("GET", path, path, api.auth("reader"))
    # overdue "now" is empty for fresh cases; ask the service with the fixed clock instead
    everyone = {c.number: c for c in await dispatch.overdue_cases(api.sessions, now=far)}
    assert everyone[other].urges == 1
    feed = await call("GET", "/api/reminders", "/api/reminders", api.auth("housing"))
    mine = {r["case_number"] for r in feed["reminders"]}
    assert number in mine and other not in mine  # other is sanitation's
    assert {r["department"] for r in feed["reminders"]} == {"housing"}
    last = feed["reminders"][-1]["id"]
    empty = await call("GET", f"/api/reminders?after={last}", "/api/reminders",
                       api.auth("housing"))
    assert empty["reminders"] == []
    whole = await call("GET", "/api/reminders", "/api/reminders", api.auth("reader"))
    assert {number, other} <= {r["case_number"] for r in whole["reminders"]}
    await call("GET", "/api/reminders?after=x", "/api/reminders", api.auth("reader"),
               status=400)
    await call("GET", "/api/dispatch/requests?status=odd", "/api/dispatch/requests",
               api.auth("reader"), status=400)
    await call("GET", "/api/supervision/overdue", "/api/supervision/overdue",
               api.auth("write_only"), status=403)



async def test_a_write_only_department_token_gets_receipts(api, depts) -> None:
    """Scopes mean what they say for department tokens too: cases:write alone gets the
    receipt (number, stage, updated_at) from its acts, and no case.read is audited."""
    token = await api_tokens.create_token(api.sessions, "housing-writer", ["cases:write"])
    async with api.sessions() as session:
        token_id = await session.scalar(select(ApiToken.id)
                                        .where(ApiToken.name == "housing-writer"))
    await dispatch.bind_token(api.sessions, token_id, "housing", actor="admin:test")
    who = {"Authorization": f"Bearer {token}"}
    call, case = Caller(api), f"/api/cases/{depts}"
    accepted = await call("POST", f"{case}/accept", "/api/cases/{number}/accept", who, {})
    assert set(accepted) == {"number", "stage", "updated_at"}
    replied = await call("POST", f"{case}/reply", "/api/cases/{number}/reply", who,
                         {"result": "好了"})
    assert (set(replied), replied["stage"]) == ({"number", "stage", "updated_at"}, "resolved")
    await call("GET", case, "/api/cases/{number}", who, status=403)
    async with api.sessions() as session:
        reads = list(await session.scalars(select(AuditLog.id).where(
            AuditLog.actor == "token:housing-writer", AuditLog.action == "case.read")))
    assert reads == []
