"""Repeat requests on both databases (crm/cases/repeats.py): the open cases of the same
caller, category and place are offered; another place, category, caller, a closed case or
one older than the window are not; the calls linked to a case are counted. And the desk's
create-case form answers 409 with them when it asks (crm/web/desk_calls.py)."""

from __future__ import annotations

from datetime import timedelta

from crm.cases import service as cases
from crm.cases.repeats import find_repeats
from crm.consultations.service import link_case
from crm.demo_data import seed_demo
from crm.storage.db import SessionFactory
from crm.storage.models import Consultation, utcnow
from crm.telephony.events import AgentAnswered
from tests.desk_bed import (  # noqa: F401 (the desk fixture)
    Desk,
    desk,
    message,
    post,
    ringing,
    sign_in,
    start_call,
)

PHONE = "13800138000"  # 张三 in the demo
LEAK = "010101"  # 城乡建设 › 房屋安全与维修 › 房屋漏水渗水


async def _case(sessions: SessionFactory, address: str, *, category: str = LEAK,
                phone: str = PHONE, days_ago: float = 1) -> str:
    view = await cases.create_case(sessions, category=category, description="楼上漏水",
                                   actor="agent:agent1", contact_phone=phone,
                                   resident_phone=phone, address=address,
                                   now=utcnow() - timedelta(days=days_ago))
    return view.number


async def test_open_cases_of_the_same_matter_are_offered_first(
        sessions: SessionFactory, db_url: str) -> None:
    await seed_demo(db_url)
    same = await _case(sessions, "幸福社区3号楼2单元301室")
    no_address = await _case(sessions, "")
    other_building = await _case(sessions, "幸福社区13号楼2单元301室")
    await _case(sessions, "幸福社区3号楼2单元301室", category="010102")
    await _case(sessions, "幸福社区3号楼2单元301室", phone="13100131000")
    await _case(sessions, "幸福社区3号楼2单元301室", days_ago=40)
    closed = await _case(sessions, "幸福社区3号楼2单元301室", days_ago=2)
    for stage in ("dispatched", "in_progress", "resolved"):
        await cases.change_stage(sessions, closed, stage, actor="test")
    async with sessions() as session:
        calls = [Consultation(call_id=f"c{i}", caller_number=PHONE) for i in range(2)]
        session.add_all(calls)
        await session.commit()
        ids = [c.id for c in calls]
    for consultation_id in ids:
        await link_case(sessions, consultation_id, same, actor="test")

    found = await find_repeats(sessions, category=LEAK, phones=[PHONE],
                               address="南京市幸福社区三号楼二单元301", window_days=30)
    assert [c.number for c in found] == [same, no_address]
    assert (found[0].calls, found[0].address_similarity) == (2, 1.0)
    assert found[1].address_similarity is None
    assert other_building not in [c.number for c in found]
    # the resident found by another of their phones; nothing for a stranger or no phone
    by_resident = await find_repeats(sessions, category=LEAK, phones=["02512345678"],
                                     address=None)
    assert by_resident == []  # 02512345678 is 李秀英's, not 张三's
    assert await find_repeats(sessions, category=LEAK, phones=[], address="x") == []


async def test_the_desk_offers_the_repeats_before_creating(desk: Desk) -> None:  # noqa: F811
    """The desk's form asks (check_repeats=1): 409 with the open case; linking the call to it
    counts one more call; creating anyway makes a new case with the leaf's department."""
    existing = await _case(desk.sessions, "幸福社区3号楼2单元301室")
    one, csrf = await sign_in(desk, "agent1")
    ws = await one.ws_connect("/desk/ws", headers={"Origin": desk.origin})
    await start_call(desk.sessions, "call-r")
    await desk.hub.handle(ringing("call-r", "2001"))
    await desk.hub.handle(AgentAnswered("call-r", "hotline", "PJSIP/2001", "2001", "王芳",
                                        PHONE, "张三", "PJSIP/gw-00000001"))
    await message(ws, "pop", "connected")
    form = {"category": LEAK, "description": "又漏水了", "address": "幸福社区三号楼二单元301"}
    status, answer = await post(one, csrf, "/desk/calls/call-r/cases", check_repeats="1",
                                **form)
    assert status == 409, answer
    assert answer["error"]["code"] == "possible_repeat"
    assert [(r["number"], r["calls"]) for r in answer["repeats"]] == [(existing, 0)]
    status, _ = await post(one, csrf, "/desk/calls/call-r/links", case=existing)
    assert status == 200
    found = await find_repeats(desk.sessions, category=LEAK, phones=[PHONE],
                               address=form["address"])
    assert [(c.number, c.calls) for c in found] == [(existing, 1)]
    status, made = await post(one, csrf, "/desk/calls/call-r/cases", **form)
    assert status == 201, made
    assert made["case"]["department"]["code"] == "housing"
    assert made["case"]["category"]["name"] == "房屋漏水渗水"
