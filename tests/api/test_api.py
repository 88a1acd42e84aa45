"""The open API over HTTP, on SQLite and PostgreSQL: every endpoint, authorisation, and the
errors clients get for bad requests (never a 500)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crm.audit import log as audit
from crm.cases.lookup import find_case_status
from crm.cases.numbers import make_case_number
from crm.consultations.recorder import apply_event
from crm.consultations.service import link_case
from crm.storage.models import Consultation
from crm.telephony.events import CallStarted, CallStep
from crm.telephony.steps import KeysEntered

NEW_CASE = {"category": "repair", "description": "楼道灯不亮", "contact_phone": "13800138000",
            "resident_phone": "13800138000", "address": "幸福社区3号楼2单元"}


async def _create(api, **overrides):
    resp = await api.client.post("/api/cases", json=NEW_CASE | overrides,
                                 headers=api.auth("writer"))
    assert resp.status == 201, await resp.text()
    return await resp.json()


def _error(body):
    assert set(body) == {"error"}
    return body["error"]["code"]


# -- cases ------------------------------------------------------------------------------------
async def test_create_case(api) -> None:
    resp = await api.client.post("/api/cases", json=NEW_CASE, headers=api.auth("writer"))
    assert resp.status == 201
    case = await resp.json()
    assert resp.headers["Location"] == f"/api/cases/{case['number']}"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert case["stage"] == "accepted" and case["next_stages"] == ["dispatched"]
    assert case["department"] == {"code": "housing", "name": "住房保障科"}
    assert case["category"]["code"] == "repair"
    assert case["resident"] == {"name": "张三", "id_number": "****2316"}
    assert case["contact_phone"] == "13800138000"
    deadline = datetime.fromisoformat(case["deadline"])
    created = datetime.fromisoformat(case["created_at"])
    assert deadline - created == timedelta(days=7)
    assert [(h["actor"], h["to_stage"]) for h in case["history"]] == [
        ("token:writer", "accepted")]


async def test_get_case_is_audited(api) -> None:
    number = (await _create(api))["number"]
    resp = await api.client.get(f"/api/cases/{number}", headers=api.auth("reader"))
    assert resp.status == 200
    case = await resp.json()
    assert case["number"] == number and case["stage"] == "accepted"
    reads = [e for e in await audit.entries(api.sessions, object_type="case", object_id=number)
             if e.action == "case.read"]
    # newest first: the reader's GET, then the writer's (it holds cases:read) creation answer
    assert [(e.actor, e.detail["via"]) for e in reads] == [("token:reader", "api.get"),
                                                           ("token:writer", "api.create")]


# -- scopes mean what they say ------------------------------------------------------------------
RECEIPT = {"number", "stage", "updated_at"}
PERSONAL = ("13800138000", "张三", "幸福社区", "2316", "楼道灯不亮")


async def test_a_write_only_token_gets_a_receipt_not_the_case(api) -> None:
    resp = await api.client.post("/api/cases", json=NEW_CASE, headers=api.auth("write_only"))
    assert resp.status == 201, await resp.text()
    text = await resp.text()
    receipt = json.loads(text)
    assert set(receipt) == RECEIPT and receipt["stage"] == "accepted"
    assert resp.headers["Location"] == f"/api/cases/{receipt['number']}"
    assert not [p for p in PERSONAL if p in text], text
    number = receipt["number"]
    resp = await api.client.patch(f"/api/cases/{number}", headers=api.auth("write_only"),
                                  json={"stage": "dispatched", "note": "派给维修班"})
    text = await resp.text()
    assert resp.status == 200 and set(json.loads(text)) == RECEIPT, text
    assert json.loads(text)["stage"] == "dispatched"
    assert not [p for p in PERSONAL if p in text], text
    resp = await api.client.get(f"/api/cases/{number}", headers=api.auth("write_only"))
    assert (resp.status, _error(await resp.json())) == (403, "insufficient_scope")
    # the writes happened and are in the history under the token's name ...
    case = await (await api.client.get(f"/api/cases/{number}", headers=api.auth("reader"))).json()
    assert [(h["actor"], h["to_stage"]) for h in case["history"]] == [
        ("token:write_only", "accepted"), ("token:write_only", "dispatched")]
    # ... and nothing was read by it
    entries = await audit.entries(api.sessions, object_type="case", object_id=number)
    assert [e.action for e in entries if e.actor == "token:write_only"] == [
        "case.update", "case.create"]


async def test_a_token_that_may_read_gets_the_case_back_and_the_read_is_audited(api) -> None:
    case = await _create(api)
    assert case["resident"] == {"name": "张三", "id_number": "****2316"}
    number = case["number"]
    resp = await api.client.patch(f"/api/cases/{number}", headers=api.auth("writer"),
                                  json={"latest_update": "已派维修人员"})
    body = await resp.json()
    assert resp.status == 200 and body["contact_phone"] == "13800138000"
    reads = [e for e in await audit.entries(api.sessions, object_type="case", object_id=number)
             if e.action == "case.read"]
    assert [(e.actor, e.detail["via"]) for e in reads] == [("token:writer", "api.update"),
                                                           ("token:writer", "api.create")]
    # where each read came from; a token has no web session
    assert {(e.source, e.web_session) for e in reads} == {("127.0.0.1", None)}


async def test_patch_case_moves_it_on_and_the_ivr_sees_it(api) -> None:
    number = (await _create(api))["number"]
    resp = await api.client.patch(f"/api/cases/{number}", headers=api.auth("writer"), json={
        "stage": "dispatched", "note": "派给维修班", "latest_update": "已派维修人员"})
    assert resp.status == 200
    case = await resp.json()
    assert case["stage"] == "dispatched" and case["latest_update"] == "已派维修人员"
    last = case["history"][-1]
    assert (last["from_stage"], last["to_stage"], last["note"], last["actor"]) == (
        "accepted", "dispatched", "派给维修班", "token:writer")
    status = await find_case_status(api.sessions, number)
    assert (status.stage, status.latest_update) == ("dispatched", "已派维修人员")
    resp = await api.client.patch(f"/api/cases/{number}", headers=api.auth("writer"),
                                  json={"department": "sanitation"})
    assert (await resp.json())["department"]["code"] == "sanitation"


async def test_invalid_transition_is_409(api) -> None:
    number = (await _create(api))["number"]
    resp = await api.client.patch(f"/api/cases/{number}", headers=api.auth("writer"),
                                  json={"stage": "closed"})
    assert resp.status == 409
    body = await resp.json()
    assert body["error"]["code"] == "invalid_transition"
    assert body["error"]["details"]["allowed"] == ["dispatched"]
    assert "accepted" in body["error"]["message"]


async def test_unknown_and_malformed_case_numbers(api) -> None:
    unknown = make_case_number(datetime(2026, 12, 31, tzinfo=UTC).date(), 9999)
    resp = await api.client.get(f"/api/cases/{unknown}", headers=api.auth("reader"))
    assert (resp.status, _error(await resp.json())) == (404, "case_not_found")
    resp = await api.client.patch(f"/api/cases/{unknown}", headers=api.auth("writer"),
                                  json={"note": "x"})
    assert (resp.status, _error(await resp.json())) == (404, "case_not_found")
    resp = await api.client.get("/api/cases/26113100012", headers=api.auth("reader"))
    assert (resp.status, _error(await resp.json())) == (400, "invalid_case_number")


@pytest.mark.parametrize("body,code", [
    ({**NEW_CASE, "priority": "high"}, "invalid_input"),       # unknown field
    ({**NEW_CASE, "description": 5}, "invalid_input"),         # wrong type
    ({**NEW_CASE, "description": ""}, "invalid_input"),
    ({k: v for k, v in NEW_CASE.items() if k != "category"}, "invalid_input"),
    ({**NEW_CASE, "contact_phone": "call me maybe 138"}, "invalid_input"),
    ({**NEW_CASE, "category": "potholes"}, "unknown_category"),
    ({**NEW_CASE, "category": "re\u0000pair"}, "unknown_category"),
    ({**NEW_CASE, "description": "灯\u0000不亮"}, "invalid_input"),
    ({**NEW_CASE, "address": "\u0000"}, "invalid_input"),
    ([NEW_CASE], "invalid_input"),                            # not an object
])
async def test_bad_case_bodies_are_400(api, body, code) -> None:
    resp = await api.client.post("/api/cases", json=body, headers=api.auth("writer"))
    assert resp.status == 400
    assert _error(await resp.json()) == code


async def test_validation_errors_name_the_field(api) -> None:
    resp = await api.client.post("/api/cases", json={**NEW_CASE, "priority": "high"},
                                 headers=api.auth("writer"))
    error = (await resp.json())["error"]
    assert error["details"]["fields"][0]["field"] == "priority"


@pytest.mark.parametrize("body,code", [
    ({}, "invalid_input"),
    ({"stage": "done"}, "invalid_input"),
    ({"stage": None}, "invalid_input"),
    ({"note": ["a"]}, "invalid_input"),
    ({"department": "police"}, "unknown_department"),
    ({"department": "hous\u0000ing"}, "unknown_department"),
    ({"note": "\u0000"}, "invalid_input"),
    ({"note": "x" * 1001}, "invalid_input"),
])
async def test_bad_patches_are_400(api, body, code) -> None:
    number = (await _create(api))["number"]
    resp = await api.client.patch(f"/api/cases/{number}", json=body, headers=api.auth("writer"))
    assert resp.status == 400
    assert _error(await resp.json()) == code


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b"[1,", b"nan", b"[" * 50_000])
async def test_malformed_json_is_400(api, raw) -> None:
    resp = await api.client.post("/api/cases", data=raw, headers={
        **api.auth("writer"), "Content-Type": "application/json"})
    assert resp.status == 400
    assert _error(await resp.json()) in {"malformed_json", "invalid_input"}


async def test_lone_surrogates_are_malformed_not_a_crash(api) -> None:
    raw = json.dumps(NEW_CASE).replace('"description": "', '"description": "\\ud800')
    resp = await api.client.post("/api/cases", data=raw.encode(), headers={
        **api.auth("writer"), "Content-Type": "application/json"})
    assert (resp.status, _error(await resp.json())) == (400, "malformed_json")


async def test_wrong_content_type_and_huge_bodies(api) -> None:
    resp = await api.client.post("/api/cases", data=json.dumps(NEW_CASE),
                                 headers={**api.auth("writer"), "Content-Type": "text/plain"})
    assert (resp.status, _error(await resp.json())) == (415, "unsupported_media_type")
    huge = {**NEW_CASE, "description": "x" * 100_000}
    resp = await api.client.post("/api/cases", json=huge, headers=api.auth("writer"))
    assert (resp.status, _error(await resp.json())) == (413, "body_too_large")

    async def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(100):
            yield b" " * 1024

    resp = await api.client.post("/api/cases", data=chunks(), headers={
        **api.auth("writer"), "Content-Type": "application/json"})
    assert (resp.status, _error(await resp.json())) == (413, "body_too_large")


async def test_a_body_that_arrives_in_pieces_is_read_whole(api) -> None:
    padded = json.dumps(NEW_CASE, ensure_ascii=False).encode() + b" " * 60_000

    async def pieces():
        for i in range(0, len(padded), 1000):
            yield padded[i:i + 1000]

    resp = await api.client.post("/api/cases", data=pieces(), headers={
        **api.auth("writer"), "Content-Type": "application/json"})
    assert resp.status == 201, await resp.text()


# -- authorisation ----------------------------------------------------------------------------
@pytest.mark.parametrize("headers,code", [
    ({}, "unauthenticated"),
    ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "unauthenticated"),
    ({"Authorization": "Bearer"}, "unauthenticated"),
    ({"Authorization": "Bearer hlt_not-a-token"}, "invalid_token"),
    ({"Authorization": "Bearer " + "x" * 5000}, "invalid_token"),
])
async def test_missing_or_bad_tokens_are_401(api, headers, code) -> None:
    number = (await _create(api))["number"]
    for method, path in [("GET", f"/api/cases/{number}"), ("POST", "/api/cases"),
                         ("PATCH", f"/api/cases/{number}"), ("GET", "/api/consultations"),
                         ("GET", "/api/consultations/1")]:
        resp = await api.client.request(method, path, headers=headers, json={})
        assert resp.status == 401, (method, path)
        assert _error(await resp.json()) == code
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_revoked_token_is_401(api) -> None:
    resp = await api.client.get("/api/consultations", headers=api.auth("revoked"))
    assert (resp.status, _error(await resp.json())) == (401, "invalid_token")


@pytest.mark.parametrize("who,method,path", [
    ("reader", "POST", "/api/cases"),
    ("calls", "GET", "/api/cases/{number}"),
    ("reader", "PATCH", "/api/cases/{number}"),
    ("writer", "GET", "/api/consultations"),
    ("reader", "GET", "/api/consultations/1"),
])
async def test_wrong_scope_is_403(api, who, method, path) -> None:
    number = (await _create(api))["number"]
    resp = await api.client.request(method, path.format(number=number), json={"note": "x"},
                                    headers=api.auth(who))
    assert resp.status == 403
    assert _error(await resp.json()) == "insufficient_scope"
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]


# -- consultations ----------------------------------------------------------------------------
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


async def _calls(api, number):
    async with api.sessions() as s, s.begin():
        for i, phone in enumerate(["13800138000", "13900139000", "13800138000"]):
            await apply_event(s, CallStarted(f"c-{i}", phone, "张三",
                                             at=T0 + timedelta(hours=i)))
            await apply_event(s, CallStep(f"c-{i}", KeysEntered("1"),
                                          at=T0 + timedelta(hours=i)))
    async with api.sessions() as s:
        ids = (await s.scalars(select(Consultation.id).order_by(Consultation.id))).all()
    await link_case(api.sessions, ids[0], number, actor="agent:agent1")
    return ids


async def test_list_consultations_with_filters(api) -> None:
    number = (await _create(api))["number"]
    ids = await _calls(api, number)

    async def listed(query=""):
        resp = await api.client.get(f"/api/consultations{query}", headers=api.auth("calls"))
        assert resp.status == 200, await resp.text()
        return [c["id"] for c in (await resp.json())["consultations"]]

    assert await listed() == ids[::-1]
    assert await listed("?phone=13800138000") == [ids[2], ids[0]]
    assert await listed(f"?case={number}") == [ids[0]]
    assert await listed("?since=2026-11-22T09:30:00%2B00:00") == [ids[2], ids[1]]
    assert await listed("?since=2026-11-22T10:30:00") == [ids[2]]  # no offset: UTC
    assert await listed("?since=2026-11-22") == ids[::-1]
    assert await listed("?limit=1") == [ids[2]]
    resp = await api.client.get("/api/consultations", headers=api.auth("calls"))
    first = (await resp.json())["consultations"][-1]
    assert first["cases"] == [number] and "steps" not in first
    assert first["caller_number"] == "13800138000"
    [search] = [e for e in await audit.entries(api.sessions, object_type="consultation")
                if e.action == "consultation.search"][:1]
    assert search.actor == "token:calls"


@pytest.mark.parametrize("query,code", [
    ("?since=yesterday", "invalid_input"),
    ("?since=2026-13-01", "invalid_input"),
    ("?since=0001-01-01T00:00:00%2B01:00", "invalid_input"),  # before year 1 in UTC
    ("?since=9999-12-31T23:00:00-05:00", "invalid_input"),
    ("?phone=abc", "invalid_input"),
    ("?case=123", "invalid_case_number"),
    ("?limit=0", "invalid_input"),
    ("?limit=1e3", "invalid_input"),
    ("?color=red", "invalid_input"),
    ("?phone=1380&phone=1390", "invalid_input"),
])
async def test_bad_consultation_queries_are_400(api, query, code) -> None:
    resp = await api.client.get(f"/api/consultations{query}", headers=api.auth("calls"))
    assert resp.status == 400
    assert _error(await resp.json()) == code


async def test_get_consultation(api) -> None:
    number = (await _create(api))["number"]
    ids = await _calls(api, number)
    resp = await api.client.get(f"/api/consultations/{ids[0]}", headers=api.auth("calls"))
    assert resp.status == 200
    body = await resp.json()
    assert (body["id"], body["call_id"], body["cases"]) == (ids[0], "c-0", [number])
    assert body["steps"][0]["detail"] == {"keys": "1"}
    reads = await audit.entries(api.sessions, object_type="consultation", object_id=ids[0])
    assert "consultation.read" in [e.action for e in reads]
    for missing in ["999999", "99999999999999999999"]:
        resp = await api.client.get(f"/api/consultations/{missing}", headers=api.auth("calls"))
        assert (resp.status, _error(await resp.json())) == (404, "consultation_not_found")


# -- routing errors are JSON too --------------------------------------------------------------
async def test_unknown_paths_and_methods(api) -> None:
    resp = await api.client.get("/api/nothing-here", headers=api.auth("everything"))
    assert (resp.status, _error(await resp.json())) == (404, "not_found")
    resp = await api.client.get("/api/consultations/abc", headers=api.auth("everything"))
    assert (resp.status, _error(await resp.json())) == (404, "not_found")
    resp = await api.client.delete("/api/cases", headers=api.auth("everything"))
    assert (resp.status, _error(await resp.json())) == (405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]


async def test_pages_outside_the_api_still_work(api) -> None:
    resp = await api.client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["ok"] is True
