"""Dispatch and supervision on SQLite and PostgreSQL: a department's acts on its own cases
only, a supervisor's rulings, overdue and due-soon lists, reminders and residents' urges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crm.cases import dispatch
from crm.cases.service import change_stage, create_case, get_case
from crm.demo_data import seed_demo
from crm.errors import InvalidInput
from crm.storage.models import AuditLog

DAY = (datetime.now(UTC) - timedelta(days=40)).replace(hour=9, minute=0, second=0,
                                                       microsecond=0)
HOUSING = "agent:housing-clerk"


@pytest.fixture
async def demo(sessions, db_url):
    await seed_demo(db_url)
    return sessions


async def _dispatched(sessions, category="repair", now=DAY):
    case = await create_case(sessions, category=category, description="楼道灯不亮",
                             actor="agent:agent1", contact_phone="13800138000", now=now)
    await change_stage(sessions, case.number, "dispatched", actor="agent:agent1")
    return case.number


async def _actions(sessions, number):
    async with sessions() as session:
        return list(await session.scalars(select(AuditLog.action)
                                          .where(AuditLog.object_id == number)
                                          .order_by(AuditLog.id)))


async def test_department_accepts_and_replies_its_case(demo):
    number = await _dispatched(demo)
    await dispatch.accept(demo, number, department="housing", actor=HOUSING)
    assert (await get_case(demo, number)).stage == "in_progress"
    await dispatch.reply(demo, number, "灯已修好", department="housing", actor=HOUSING)
    view = await get_case(demo, number)
    assert (view.stage, view.latest_update) == ("resolved", "灯已修好")
    assert [h.to_stage for h in view.history] == ["accepted", "dispatched", "in_progress",
                                                  "resolved"]
    assert await _actions(demo, number) == ["case.create", "case.update", "case.dept_accept",
                                            "case.dept_reply"]


async def test_a_department_cannot_see_or_change_another_departments_case(demo):
    number = await _dispatched(demo)  # housing's
    for act in (dispatch.accept(demo, number, department="sanitation", actor="x"),
                dispatch.reply(demo, number, "done", department="sanitation", actor="x"),
                dispatch.request_return(demo, number, "not ours", department="sanitation",
                                        actor="x"),
                dispatch.check_departments_case(demo, number, "sanitation")):
        with pytest.raises(dispatch.NotDepartmentsCase):
            await act
    assert (await get_case(demo, number)).stage == "dispatched"
    # a missing case answers the same as another department's
    with pytest.raises(dispatch.NotDepartmentsCase) as missing:
        await dispatch.check_departments_case(demo, "26010100019", "sanitation")
    assert missing.value.code == "case_not_found"


async def test_acts_out_of_order_are_refused(demo):
    number = await _dispatched(demo)
    with pytest.raises(dispatch.WrongStageForAct, match="needs it in handling"):
        await dispatch.reply(demo, number, "done", department="housing", actor=HOUSING)
    await dispatch.accept(demo, number, department="housing", actor=HOUSING)
    with pytest.raises(dispatch.WrongStageForAct):
        await dispatch.accept(demo, number, department="housing", actor=HOUSING)
    with pytest.raises(InvalidInput, match="result must not be empty"):
        await dispatch.reply(demo, number, "  ", department="housing", actor=HOUSING)


async def test_return_redispatched_by_a_supervisor(demo):
    number = await _dispatched(demo)
    request = await dispatch.request_return(demo, number, "这是环卫的事", department="housing",
                                            actor=HOUSING)
    assert request.status == "pending"
    with pytest.raises(dispatch.RequestDecided, match="already has a return request"):
        await dispatch.request_return(demo, number, "again", department="housing",
                                      actor=HOUSING)
    assert [r.id for r in await dispatch.list_requests(demo)] == [request.id]
    ruled = await dispatch.rule_on_return(demo, request.id, "redispatch",
                                          department="sanitation", actor="agent:supervisor1")
    assert (ruled.status, ruled.decided_by) == ("granted", "agent:supervisor1")
    view = await get_case(demo, number)
    assert (view.department_code, view.stage) == ("sanitation", "dispatched")
    assert view.history[-1].from_department == "housing"
    with pytest.raises(dispatch.RequestDecided):
        await dispatch.rule_on_return(demo, request.id, "uphold", actor="agent:supervisor1")
    # now it is sanitation's, no longer housing's
    with pytest.raises(dispatch.NotDepartmentsCase):
        await dispatch.accept(demo, number, department="housing", actor=HOUSING)
    await dispatch.accept(demo, number, department="sanitation", actor="agent:san")
    assert "case.return_ruling" in await _actions(demo, number)


async def test_return_upheld_keeps_the_dispatch(demo):
    number = await _dispatched(demo)
    await dispatch.accept(demo, number, department="housing", actor=HOUSING)
    request = await dispatch.request_return(demo, number, "不归我们", department="housing",
                                            actor=HOUSING)
    with pytest.raises(InvalidInput, match="needs the department"):
        await dispatch.rule_on_return(demo, request.id, "redispatch", actor="agent:supervisor1")
    ruled = await dispatch.rule_on_return(demo, request.id, "uphold", actor="agent:supervisor1",
                                          note="属于房屋维修")
    assert ruled.status == "refused"
    view = await get_case(demo, number)
    assert (view.department_code, view.stage) == ("housing", "in_progress")
    assert view.history[-1].note == "属于房屋维修"


async def test_extension_granted_moves_the_deadline_refused_does_not(demo):
    number = await _dispatched(demo)
    before = (await get_case(demo, number)).deadline
    with pytest.raises(InvalidInput, match="later than the deadline"):
        await dispatch.request_extension(demo, number, before - timedelta(days=1), "慢",
                                         department="housing", actor=HOUSING)
    asked = await dispatch.request_extension(demo, number, before + timedelta(days=5),
                                             "等材料", department="housing", actor=HOUSING)
    await dispatch.decide_extension(demo, asked.id, True, actor="agent:supervisor1")
    assert (await get_case(demo, number)).deadline == before + timedelta(days=5)
    again = await dispatch.request_extension(demo, number, before + timedelta(days=9),
                                             "还要等", department="housing", actor=HOUSING)
    refused = await dispatch.decide_extension(demo, again.id, False, actor="agent:supervisor1")
    assert refused.status == "refused"
    assert (await get_case(demo, number)).deadline == before + timedelta(days=5)
    with pytest.raises(dispatch.RequestNotFound):
        await dispatch.rule_on_return(demo, again.id, "uphold", actor="agent:supervisor1")


async def test_overdue_due_soon_reminders_and_urges(demo):
    now = DAY + timedelta(days=10)
    late = await _dispatched(demo, "garbage", now=DAY)  # 3 days: overdue by 7 days
    soon = await _dispatched(demo, "repair", now=now - timedelta(days=7) + timedelta(hours=3))
    far = await _dispatched(demo, "subsidy", now=now)  # 15 days
    overdue = await dispatch.overdue_cases(demo, now=now)
    assert late in [c.number for c in overdue]
    assert {soon, far}.isdisjoint(c.number for c in overdue)
    due = [c.number for c in await dispatch.due_soon_cases(demo, now=now)]
    assert soon in due and late not in due and far not in due
    assert [c.number for c in await dispatch.overdue_cases(demo, now=now,
                                                           department="housing")
            if c.number == late] == []

    made = await dispatch.send_reminders(demo, now=now)
    mine = {(r.case_number, r.kind, r.department) for r in made}
    assert {(late, "overdue", "sanitation"), (soon, "due_soon", "housing")} <= mine
    assert far not in {r.case_number for r in made}
    again = await dispatch.send_reminders(demo, now=now + timedelta(minutes=5))
    assert {late, soon}.isdisjoint(r.case_number for r in again)  # once per deadline
    feed = await dispatch.reminders(demo, department="sanitation")
    assert late in [r.case_number for r in feed]
    assert soon not in [r.case_number for r in feed]
    assert await dispatch.reminders(demo, department="sanitation",
                                    after_id=feed[-1].id) == []

    assert await dispatch.urge(demo, late, channel="ivr_keys", now=now) == 1
    assert await dispatch.urge(demo, late, channel="ivr_speech", now=now) == 2
    assert await dispatch.urge_count(demo, late) == 2
    listed = {c.number: c for c in await dispatch.overdue_cases(demo, now=now)}
    assert listed[late].urges == 2
    assert (await get_case(demo, late)).history[-1].actor == "resident:ivr_speech"
    with pytest.raises(InvalidInput, match="channel"):
        await dispatch.urge(demo, late, channel="fax")


async def test_closed_cases_cannot_be_urged(demo):
    number = await _dispatched(demo)
    await dispatch.accept(demo, number, department="housing", actor=HOUSING)
    await dispatch.reply(demo, number, "好了", department="housing", actor=HOUSING)
    with pytest.raises(dispatch.WrongStageForAct, match="only an open case"):
        await dispatch.urge(demo, number, channel="ivr_keys")
    assert await dispatch.urge_count(demo, number) == 0
