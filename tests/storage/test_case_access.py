"""Need to know across two agents at the real desk (aiohttp app, SQLite and PostgreSQL, a fake
AMI): an agent reads the cases of the caller on their line, the cases linked to calls they
answered lately and the cases they created, and moves on only the cases they handle; the other
agent is refused (403 need_to_know, audited) until the case is linked to their own call;
supervisors see everything. The rule itself is crm.cases.access."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from crm.agents import accounts as agents
from crm.audit import log as audit
from crm.cases import service as cases
from crm.cases.numbers import make_case_number
from crm.consultations.recorder import apply_event
from crm.storage.models import Case, Consultation, Resident, utcnow
from crm.telephony.events import AgentAnswered, AgentCallEnded, AgentRinging, CallStarted
from tests import desk_bed
from tests.desk_bed import PASSWORD, PHONE, Desk, post, sign_in

desk = desk_bed.desk  # the desk fixture (a real app over each database)

EXTENSIONS = {"agent1": "2001", "agent2": "2002", "supervisor1": "2003"}
LI_PHONE = "13900139000"  # 李秀英
SMITH_PHONE = "13700137000"  # John Smith


async def _case_of(desk: Desk, resident: str) -> str:
    async with desk.sessions() as s:
        number = await s.scalar(select(Case.number).join(Resident)
                                .where(Resident.name == resident).order_by(Case.id).limit(1))
    assert number is not None
    return number


async def _record(desk: Desk, *events: Any) -> None:
    async with desk.sessions() as s, s.begin():
        for event in events:
            await apply_event(s, event)


async def _phase(desk: Desk, login: str, call_id: str, phase: str | None) -> None:
    def reached() -> bool:
        found = desk.hub.desk(login)
        call = found.call if found else None
        if phase is None:
            return call is None or call.call_id != call_id
        return call is not None and call.call_id == call_id and call.phase == phase

    await desk.hub.wait_for(reached, 5)


async def ring(desk: Desk, login: str, call_id: str, phone: str) -> None:
    ext = EXTENSIONS[login]
    await _record(desk, CallStarted(call_id, phone, "来电人", "PJSIP/gw-1"))
    await desk.hub.handle(AgentRinging(call_id, "hotline", f"PJSIP/{ext}", ext, None, phone,
                                       "来电人", "PJSIP/gw-1"))
    await _phase(desk, login, call_id, "ringing")


async def answer(desk: Desk, login: str, call_id: str, phone: str, *,
                 rung: bool = False) -> None:
    """The call reaches ``login``'s phone and they answer (recorded as the queue tracker
    would: the consultation names the agent)."""
    ext = EXTENSIONS[login]
    if not rung:
        await _record(desk, CallStarted(call_id, phone, "来电人", "PJSIP/gw-1"))
    answered = AgentAnswered(call_id, "hotline", f"PJSIP/{ext}", ext, login, phone, "来电人",
                             "PJSIP/gw-1")
    await _record(desk, answered)
    await desk.hub.handle(answered)
    await _phase(desk, login, call_id, "connected")


async def hang_up_and_close(desk: Desk, client: TestClient, csrf: str, login: str,
                            call_id: str) -> None:
    ext = EXTENSIONS[login]
    await desk.hub.handle(AgentCallEnded(call_id, "hotline", f"PJSIP/{ext}", ext, 30, "caller"))
    await _phase(desk, login, call_id, "ended")
    status, body = await post(client, csrf, f"/desk/calls/{call_id}/close")
    assert status == 200, body
    await _phase(desk, login, call_id, None)


async def read(client: TestClient, number: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(f"/desk/cases/{number}")
    return response.status, await response.json()


async def move(client: TestClient, csrf: str, number: str, stage: str) -> tuple[int, Any]:
    return await post(client, csrf, f"/desk/cases/{number}/stage", stage=stage)


def refused(status: int, body: dict[str, Any]) -> bool:
    return status == 403 and body["error"]["code"] == "need_to_know"


async def denials(desk: Desk, actor: str) -> list[tuple[str | None, str]]:
    return [(e.object_id, e.detail["wanted"])
            for e in await audit.entries(desk.sessions, object_type="case", limit=500)
            if e.action == "case.access_denied" and e.actor == actor]


# -- two agents, two callers ---------------------------------------------------------------------
async def test_an_agent_reads_only_cases_they_need_until_linked(desk: Desk) -> None:
    one, csrf1 = await sign_in(desk, "agent1")
    two, csrf2 = await sign_in(desk, "agent2")
    zhang = await _case_of(desk, "张三")  # in_progress, contact phone PHONE
    smith = await _case_of(desk, "John Smith")
    await answer(desk, "agent1", "call-a", PHONE)

    # agent1 has 张三 on the line: their case is readable, in full (the connected caller)
    status, body = await read(one, zhang)
    assert status == 200 and body["case"]["contact_phone"] == PHONE
    # agent2 has nobody on the line: not theirs, whatever they try
    status, body = await read(two, zhang)
    assert refused(status, body), body
    assert "这不是您的工单" in body["error"]["message"]  # not one of yours (the desk's language)
    assert refused(*await move(two, csrf2, zhang, "resolved"))
    # reading is not handling: agent1 may not move the case on until it is on their call
    status, body = await move(one, csrf1, zhang, "resolved")
    assert refused(status, body) and "请先把它关联到" in body["error"]["message"]  # Link it
    assert (await cases.get_case(desk.sessions, zhang)).stage == "in_progress"
    status, _ = await post(one, csrf1, "/desk/calls/call-a/links", case=zhang)
    assert status == 200
    status, body = await move(one, csrf1, zhang, "resolved")
    assert status == 200 and body["case"]["stage"] == "resolved"
    # a case unrelated to agent1 stays closed to them
    assert refused(*await read(one, smith))

    # agent2 takes 李秀英, who asks about 张三's case: agent2 cannot use agent1's call ...
    await answer(desk, "agent2", "call-b", LI_PHONE)
    status, _ = await post(two, csrf2, "/desk/calls/call-a/links", case=zhang)
    assert status == 404
    assert refused(*await read(two, zhang))
    # ... but once linked to their own call the case is theirs to read and handle
    status, _ = await post(two, csrf2, "/desk/calls/call-b/links", case=zhang)
    assert status == 200
    status, body = await read(two, zhang)
    assert status == 200 and body["case"]["contact_phone"] != PHONE  # not their caller's phone
    status, body = await move(two, csrf2, zhang, "in_progress")
    assert status == 200 and body["case"]["stage"] == "in_progress"

    # a supervisor, with no call at all, reads and moves on any case
    await agents.set_password(desk.sessions, "supervisor1", PASSWORD)
    boss, boss_csrf = await sign_in(desk, "supervisor1")
    assert (await read(boss, smith))[0] == 200
    status, body = await move(boss, boss_csrf, smith, "dispatched")
    assert status == 200 and body["case"]["stage"] == "dispatched"

    # every refusal is audited with who, what and which case
    assert sorted(await denials(desk, "agent:agent2")) == sorted([
        (zhang, "read"), (zhang, "change_stage"), (zhang, "read")])
    assert sorted(await denials(desk, "agent:agent1")) == sorted([
        (zhang, "change_stage"), (smith, "read")])
    assert await denials(desk, "agent:supervisor1") == []
    # each with where it came from: the address and the desk session
    rows = [e for e in await audit.entries(desk.sessions, object_type="case", limit=500)
            if e.action in ("case.access_denied", "case.read")]
    assert rows and all(e.source == "127.0.0.1" and e.web_session for e in rows)
    assert len({e.web_session for e in rows if e.actor == "agent:agent1"}) == 1
    assert {e.web_session for e in rows if e.actor == "agent:agent1"} != {
        e.web_session for e in rows if e.actor == "agent:agent2"}


async def test_a_ringing_call_is_not_yet_the_agents(desk: Desk) -> None:
    two, csrf2 = await sign_in(desk, "agent2")
    smith = await _case_of(desk, "John Smith")
    await ring(desk, "agent2", "call-c", SMITH_PHONE)
    assert refused(*await read(two, smith))
    status, body = await post(two, csrf2, "/desk/calls/call-c/links", case=smith)
    assert refused(status, body) and "请先接听电话" in body["error"]["message"]
    denied = [e for e in await audit.entries(desk.sessions, object_type="consultation")
              if e.action == "case.link_denied"]
    assert [(e.actor, e.object_id) for e in denied] == [("agent:agent2", "call-c")]
    await answer(desk, "agent2", "call-c", SMITH_PHONE, rung=True)
    assert (await read(two, smith))[0] == 200


async def test_the_line_ends_the_window_closes_what_they_made_stays(desk: Desk) -> None:
    one, csrf1 = await sign_in(desk, "agent1")
    zhang = await _case_of(desk, "张三")
    other = await cases.create_case(desk.sessions, category="garbage", description="另一件事",
                                    actor="token:setup", contact_phone=PHONE,
                                    resident_phone=PHONE)
    await answer(desk, "agent1", "call-d", PHONE)
    assert (await post(one, csrf1, "/desk/calls/call-d/links", case=zhang))[0] == 200
    status, made = await post(one, csrf1, "/desk/calls/call-d/cases", category="repair",
                              description="楼下路灯坏了")
    assert status == 201, made
    mine = made["case"]["number"]
    for number in (zhang, other.number, mine):
        assert (await read(one, number))[0] == 200

    # wrap-up still counts as the caller on the line; once closed only ties to data remain
    await hang_up_and_close(desk, one, csrf1, "agent1", "call-d")
    assert (await read(one, zhang))[0] == 200  # linked to a call they answered lately
    assert refused(*await read(one, other.number))  # the caller is no longer on the line
    assert refused(*await move(one, csrf1, zhang, "resolved"))  # not handling it any more
    assert (await move(one, csrf1, mine, "dispatched"))[0] == 200  # they created it

    # a week later the call is history: its cases are closed to the agent, theirs are not
    async with desk.sessions() as s, s.begin():
        week_ago = utcnow() - timedelta(days=8)
        await s.execute(update(Consultation).where(Consultation.call_id == "call-d")
                        .values(started_at=week_ago, ended_at=week_ago))
    assert refused(*await read(one, zhang))
    status, body = await post(one, csrf1, "/desk/calls/call-d/links", case=zhang)
    assert refused(status, body) and "最近 7 天内" in body["error"]["message"]
    assert (await read(one, mine))[0] == 200


async def test_agents_cannot_probe_for_case_numbers(desk: Desk) -> None:
    """An unknown number is refused like a case that is not theirs (no 404 oracle); a
    supervisor gets the 404."""
    one, _ = await sign_in(desk, "agent1")
    zhang = await _case_of(desk, "张三")
    unknown = make_case_number(utcnow().date() - timedelta(days=400), 9999)
    assert refused(*await read(one, unknown))
    assert refused(*await read(one, zhang))
    await agents.set_password(desk.sessions, "supervisor1", PASSWORD)
    boss, _ = await sign_in(desk, "supervisor1")
    status, body = await read(boss, unknown)
    assert (status, body["error"]["code"]) == (404, "case_not_found")
