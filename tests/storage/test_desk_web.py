"""The agent desk's web side over a real database (SQLite and PostgreSQL) with a fake AMI:
sign-in joins the queue, CSRF and sessions, pops on the websocket, forms, transfer, expiry."""

from __future__ import annotations

import pytest
from aiohttp import WSMsgType
from sqlalchemy import select

from crm.agents import accounts as agents
from crm.agents.auth import mask_phone
from crm.audit import log as audit
from crm.consultations.service import get_consultation
from crm.storage.models import Case, Consultation, Resident
from crm.telephony.events import AgentAnswered, AgentCallEnded, AgentStatusChanged
from crm.web.desk import expire_idle_desks
from tests import desk_bed
from tests.desk_bed import (
    PASSWORD,
    PHONE,
    Desk,
    csrf_of,
    message,
    post,
    ringing,
    sign_in,
    start_call,
)

desk = desk_bed.desk  # the fixture: the desk's app on each database


async def test_sign_in_is_protected_and_joins_the_queue(desk: Desk) -> None:
    client = await desk.client()
    html = await (await client.get("/desk/login")).text()
    no_csrf = await client.post("/desk/login", data={"login": "agent1", "password": PASSWORD})
    assert no_csrf.status == 403
    wrong = await client.post("/desk/login", data={"csrf": csrf_of(html), "login": "agent1",
                                                   "password": "not-the-password"})
    assert wrong.status == 401 and "账号或密码错误" in await wrong.text()
    assert desk.ami.actions == []
    page = await client.get("/desk/", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"] == "/desk/login"
    assert (await client.get("/desk/current-call")).status == 401

    client, csrf = await sign_in(desk)
    # The main queue, and the assigned-callbacks queue with the agent's id as penalty.
    agent_id = (await agents.get_agent(desk.sessions, "agent1")).id
    assert desk.ami.named("QueueAdd") == [
        {"Queue": "hotline", "Interface": "PJSIP/2001", "MemberName": "王芳", "Penalty": "0",
         "Paused": "false"},
        {"Queue": "hotline-assigned", "Interface": "PJSIP/2001", "MemberName": "王芳",
         "Penalty": str(agent_id), "Paused": "false"}]
    cookie = next(c for c in client.session.cookie_jar if c.key == "hotline_desk")
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/desk"
    page = await client.get("/desk/")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert '<span id="agent-languages"' in await page.text()
    assert (await post(client, csrf, "/desk/pause", paused="1"))[0] == 200
    assert [(f["Queue"], f["Paused"]) for f in desk.ami.named("QueuePause")[-2:]] == [
        ("hotline", "true"), ("hotline-assigned", "true")]
    forged = await client.post("/desk/pause", data={"csrf": "forged", "paused": "0"})
    assert forged.status == 403
    other_site = await client.post("/desk/pause", data={"csrf": csrf, "paused": "0"},
                                   headers={"Origin": "http://evil.example"})
    assert other_site.status == 403

    response = await client.post("/desk/logout", data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 303
    assert desk.ami.named("QueueRemove") == [
        {"Queue": "hotline", "Interface": "PJSIP/2001"},
        {"Queue": "hotline-assigned", "Interface": "PJSIP/2001"}]
    assert (await client.get("/desk/current-call")).status == 401
    actions = [e.action for e in await audit.entries(desk.sessions, object_type="agent")]
    assert {"desk.login", "desk.login_failed", "desk.pause", "desk.logout"} <= set(actions)


async def test_ring_all_pops_then_the_answer_keeps_it(desk: Desk) -> None:
    one, csrf1 = await sign_in(desk, "agent1")
    two, csrf2 = await sign_in(desk, "agent2")
    ws1 = await one.ws_connect("/desk/ws", headers={"Origin": desk.origin})
    ws2 = await two.ws_connect("/desk/ws", headers={"Origin": desk.origin})
    await start_call(desk.sessions, "call-1")

    await desk.hub.handle(AgentStatusChanged("PJSIP/2001", "2001", "hotline", "ringing"))
    assert (await message(ws1, "status"))["agent"]["status"] == "ringing"
    await desk.hub.handle(ringing("call-1", "2001"))
    await desk.hub.handle(ringing("call-1", "2002"))
    pop1, pop2 = await message(ws1, "pop"), await message(ws2, "pop")
    for pop in (pop1, pop2):
        assert pop["call"]["phase"] == "ringing"
        assert pop["call"]["pop"]["caller"] == {"number": mask_phone(PHONE, "agent"),
                                                "name": "张三", "known": True}
        assert pop["call"]["pop"]["caller"]["number"] != PHONE

    await desk.hub.handle(AgentAnswered("call-1", "hotline", "PJSIP/2001", "2001", "王芳", PHONE,
                                        "张三", "PJSIP/gw-00000001"))
    mine = await message(ws1, "pop")
    assert mine["call"]["phase"] == "connected" and mine["call"]["can_transfer"]
    assert mine["call"]["pop"]["caller"]["number"] == PHONE
    closed = await message(ws2, "pop_closed")
    assert (closed["call_id"], closed["reason"]) == ("call-1", "answered_elsewhere")
    assert (await (await two.get("/desk/current-call")).json())["call"] is None
    current = await (await one.get("/desk/current-call")).json()
    assert current["call"]["call_id"] == "call-1" and current["seq"] >= mine["seq"]

    # The other agent cannot work on this call; the answering one can.
    status, error = await post(two, csrf2, "/desk/calls/call-1/notes", note="x")
    assert status == 404, error
    status, created = await post(one, csrf1, "/desk/calls/call-1/cases", category="repair",
                                 description="楼下路灯坏了 <b>", address="幸福社区")
    assert status == 201, created
    number = created["case"]["number"]
    assert created["case"]["contact_phone"] == PHONE and created["case"]["stage"] == "accepted"
    refreshed = await message(ws1, "pop")
    assert number in [c["number"] for c in refreshed["call"]["pop"]["resident_cases"]]
    # The caller asked about no case in the IVR: the case card shows the one just created,
    # so the agent can dispatch it on this call.
    assert refreshed["call"]["pop"]["case"]["number"] == number

    status, noted = await post(one, csrf1, "/desk/calls/call-1/notes", note="来电反映路灯")
    assert status == 200 and set(noted) == {"note"} and noted["note"].endswith("来电反映路灯")
    assert (await post(one, csrf1, "/desk/calls/call-1/notes", note="已派单",
                       case=number))[0] == 200
    assert (await message(ws1, "pop"))["call"]["pop"]["case"]["number"] == number
    async with desk.sessions() as s:
        existing = await s.scalar(select(Case.number).join(Resident)
                                  .where(Resident.name == "李秀英"))
    assert (await post(one, csrf1, "/desk/calls/call-1/links", case=existing))[0] == 200
    # The case linked last is the card's, and stays it when the pop is rebuilt (a stage change).
    assert (await message(ws1, "pop"))["call"]["pop"]["case"]["number"] == existing
    status, staged = await post(one, csrf1, f"/desk/cases/{number}/stage", stage="dispatched",
                                note="派往住房保障科")
    assert status == 200 and staged["case"]["stage"] == "dispatched"
    assert (await message(ws1, "pop"))["call"]["pop"]["case"]["number"] == existing
    status, bad = await post(one, csrf1, f"/desk/cases/{number}/stage", stage="closed")
    assert status == 409 and bad["error"]["code"] == "invalid_transition"
    assert (await post(one, csrf1, "/desk/calls/call-1/disposition",
                       disposition="case_created"))[0] == 200
    status, moved = await post(one, csrf1, "/desk/calls/call-1/transfer", department="housing")
    assert status == 200 and moved["transferred_to"] == "8001"
    assert desk.ami.named("Redirect") == [{"Channel": "PJSIP/gw-00000001",
                                           "Context": "hotline-transfer", "Exten": "8001",
                                           "Priority": "1"}]
    case_view = await (await one.get(f"/desk/cases/{number}")).json()
    assert case_view["case"]["contact_phone"] == PHONE  # the caller connected to this agent

    async with desk.sessions() as s:
        consultation_id = await s.scalar(select(Consultation.id)
                                         .where(Consultation.call_id == "call-1"))
    record = await get_consultation(desk.sessions, consultation_id)
    assert sorted(record.case_numbers) == sorted([number, existing])
    assert record.disposition == "transferred" and record.agent_login == "agent1"
    assert record.notes is not None and "来电反映路灯" in record.notes

    await desk.hub.handle(AgentCallEnded("call-1", "hotline", "PJSIP/2001", "2001", 30,
                                         "transfer"))
    await message(ws1, "pop", phase="ended")
    assert (await post(one, csrf1, "/desk/calls/call-1/close"))[0] == 200
    assert (await message(ws1, "pop_closed"))["reason"] == "dismissed"

    await desk.hub.drain()  # pop views are audited behind the pushes
    views = [e for e in await audit.entries(desk.sessions, object_type="consultation")
             if e.action == "pop.view"]
    assert {e.actor for e in views} == {"agent:agent1", "agent:agent2"}
    assert any(e.detail["phone_revealed"] for e in views if e.actor == "agent:agent1")
    reads = await audit.entries(desk.sessions, object_type="case", object_id=number)
    # every answer that showed the case is a read: created, moved on, opened
    assert {e.detail["via"] for e in reads if e.action == "case.read"} == {
        "desk.create", "desk.stage", "desk"}
    assert all(e.actor == "agent:agent1" for e in reads if e.action == "case.read")
    # the pops pushed again after the case was created and linked were audited as views too
    assert "refresh" in {e.detail["via"] for e in views if e.actor == "agent:agent1"}
    # the pop a desk fetched itself carries the request's address and desk session
    fetched = [e for e in views if e.detail["via"] == "current-call"]
    assert fetched and all(e.source == "127.0.0.1" and e.web_session for e in fetched)
    await ws1.close()
    await ws2.close()


async def test_websocket_needs_a_session_and_this_origin(desk: Desk) -> None:
    anonymous = await desk.client()
    response = await anonymous.get("/desk/ws", headers={"Origin": desk.origin})
    assert response.status == 401
    client, _ = await sign_in(desk)
    response = await client.get("/desk/ws", headers={"Origin": "http://evil.example",
                                                     "Upgrade": "websocket",
                                                     "Connection": "Upgrade"})
    assert response.status == 403


async def test_idle_desks_expire_and_leave_the_queue(desk: Desk,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = await sign_in(desk)
    ws = await client.ws_connect("/desk/ws", headers={"Origin": desk.origin})
    import crm.web.desk_auth as desk_module

    later = desk_module.time.time() + desk.deps.idle_timeout + 1
    monkeypatch.setattr(desk_module.time, "time", lambda: later)
    assert (await client.get("/desk/current-call")).status == 401
    assert await expire_idle_desks(desk.deps, now=later) == ["agent1"]
    assert desk.ami.named("QueueRemove") == [
        {"Queue": "hotline", "Interface": "PJSIP/2001"},
        {"Queue": "hotline-assigned", "Interface": "PJSIP/2001"}]
    msg = await ws.receive(timeout=5)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert desk.hub.desk("agent1") is None
