"""Cases on SQLite and PostgreSQL: numbering (also under concurrency), the stage workflow,
history, and what consultations record about them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from crm.audit import log as audit
from crm.cases.lookup import find_case_status
from crm.cases.numbers import is_valid_case_number, make_case_number
from crm.cases.service import (
    TRANSITIONS,
    add_note,
    change_stage,
    check_transition,
    create_case,
    get_case,
    update_case,
)
from crm.consultations.recorder import apply_event
from crm.consultations.service import (
    find_consultations,
    get_consultation,
    link_case,
    update_consultation,
)
from crm.demo_data import seed_demo
from crm.errors import (
    AgentNotFound,
    CaseNotFound,
    InvalidCaseNumber,
    InvalidInput,
    InvalidTransition,
    UnknownCategory,
    UnknownDepartment,
    UnknownStage,
)
from crm.storage.models import Consultation, ResidentPhone
from crm.telephony.events import CallStarted, CallStep
from crm.telephony.steps import KeysEntered

# A day the demo data has no cases on: it puts cases 0-5 days before today.
DAY = (datetime.now(UTC) - timedelta(days=30)).replace(hour=9, minute=30, second=0,
                                                       microsecond=0)


@pytest.fixture
async def demo(sessions, db_url):
    await seed_demo(db_url)
    return sessions


async def _new(sessions, **kw):
    args = {"category": "repair", "description": "楼道灯不亮", "actor": "agent:agent1",
            "contact_phone": "13800138000", "now": DAY} | kw
    return await create_case(sessions, **args)


# -- pure workflow rules ----------------------------------------------------------------------
@pytest.mark.parametrize("src,dst", [(s, d) for s, ds in TRANSITIONS.items() for d in ds])
def test_allowed_transitions(src, dst) -> None:
    check_transition(src, dst)


@pytest.mark.parametrize("src,dst", [
    ("accepted", "closed"), ("accepted", "resolved"), ("accepted", "accepted"),
    ("dispatched", "resolved"), ("in_progress", "closed"), ("closed", "in_progress"),
    ("closed", "accepted"), ("resolved", "dispatched"), ("in_progress", "accepted")])
def test_other_transitions_are_refused(src, dst) -> None:
    with pytest.raises(InvalidTransition) as err:
        check_transition(src, dst)
    assert err.value.details["allowed"] == list(TRANSITIONS[src])


def test_unknown_stage() -> None:
    with pytest.raises(UnknownStage):
        check_transition("accepted", "done")


# -- creation and numbering -------------------------------------------------------------------
async def test_create_case_takes_department_and_deadline_from_its_category(demo) -> None:
    case = await _new(demo, resident_phone="13800138000", address="幸福社区3号楼")
    assert case.number == make_case_number(DAY.date(), 1)
    assert is_valid_case_number(case.number)
    assert (case.stage, case.category_code, case.department_code) == (
        "accepted", "repair", "housing")
    assert case.deadline == DAY + timedelta(days=7)
    assert case.resident_name == "张三" and case.resident_id_last4 == "2316"
    [created] = case.history
    assert (created.actor, created.from_stage, created.to_stage) == (
        "agent:agent1", None, "accepted")
    [entry] = await audit.entries(demo, object_type="case", object_id=case.number)
    assert (entry.actor, entry.action) == ("agent:agent1", "case.create")


async def test_unknown_resident_phone_leaves_the_case_without_resident(demo) -> None:
    case = await _new(demo, resident_phone="19912345678")
    assert case.resident_name is None


async def test_numbers_follow_the_day_and_skip_numbers_made_elsewhere(demo) -> None:
    first = await _new(demo)
    second = await _new(demo)
    assert [first.number[6:10], second.number[6:10]] == ["0001", "0002"]
    # The demo data put sequences 1..4 on recent days without the counter: never reused.
    today = datetime.now(UTC)
    fresh = await _new(demo, now=today)
    assert fresh.number[:6] == f"{today:%y%m%d}"
    assert int(fresh.number[6:10]) == 4  # demo sequence 3 is today's


async def test_number_date_is_the_day_in_the_hotlines_time_zone(demo) -> None:
    late_utc = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # already 2 Dec in Beijing
    case = await _new(demo, now=late_utc, numbering_tz=timezone(timedelta(hours=8)))
    assert case.number.startswith("261202")


async def test_twenty_concurrent_creates_get_twenty_distinct_numbers(demo) -> None:
    created = await asyncio.gather(*[_new(demo, description=f"case {i}") for i in range(20)])
    numbers = [c.number for c in created]
    assert len(set(numbers)) == 20
    assert all(is_valid_case_number(n) for n in numbers)
    assert sorted(int(n[6:10]) for n in numbers) == list(range(1, 21))


async def test_create_refuses_bad_input(demo) -> None:
    with pytest.raises(UnknownCategory) as err:
        await _new(demo, category="potholes")
    assert "repair" in err.value.message
    with pytest.raises(InvalidInput):
        await _new(demo, description="   ")
    with pytest.raises(InvalidInput):
        await _new(demo, contact_phone="call me")


# -- the workflow, with history ---------------------------------------------------------------
async def test_full_workflow_with_a_reopening_is_recorded(demo) -> None:
    number = (await _new(demo)).number
    for stage in ["dispatched", "in_progress", "resolved", "in_progress", "resolved",
                  "closed"]:
        case = await change_stage(demo, number, stage, actor="agent:agent2", note=stage)
    assert case.stage == "closed"
    moves = [(h.from_stage, h.to_stage, h.actor) for h in case.history[1:]]
    assert moves == [
        ("accepted", "dispatched", "agent:agent2"), ("dispatched", "in_progress", "agent:agent2"),
        ("in_progress", "resolved", "agent:agent2"), ("resolved", "in_progress", "agent:agent2"),
        ("in_progress", "resolved", "agent:agent2"), ("resolved", "closed", "agent:agent2")]
    assert all(h.at.tzinfo is not None for h in case.history)
    with pytest.raises(InvalidTransition):
        await change_stage(demo, number, "in_progress", actor="agent:agent2")


async def test_invalid_transition_changes_nothing(demo) -> None:
    number = (await _new(demo)).number
    with pytest.raises(InvalidTransition) as err:
        await change_stage(demo, number, "closed", actor="x")
    assert err.value.details == {"from": "accepted", "to": "closed", "allowed": ["dispatched"]}
    case = await get_case(demo, number)
    assert case.stage == "accepted" and len(case.history) == 1


async def test_notes_reassignment_and_progress_are_history(demo) -> None:
    number = (await _new(demo)).number
    await add_note(demo, number, "居民下午在家", actor="agent:agent1")
    await update_case(demo, number, actor="supervisor:s", department="sanitation",
                      note="不是住房问题")
    case = await update_case(demo, number, actor="token:dept", stage="dispatched",
                             latest_update="已派单至环境卫生所")
    assert case.department_code == "sanitation"
    assert case.latest_update == "已派单至环境卫生所"
    _, note, moved, dispatched = case.history
    assert (note.note, note.actor, note.to_stage) == ("居民下午在家", "agent:agent1", None)
    assert (moved.from_department, moved.to_department, moved.note) == (
        "housing", "sanitation", "不是住房问题")
    assert (dispatched.to_stage, dispatched.latest_update) == ("dispatched",
                                                               "已派单至环境卫生所")
    with pytest.raises(UnknownDepartment):
        await update_case(demo, number, actor="x", department="police")
    with pytest.raises(InvalidInput):
        await update_case(demo, number, actor="x")
    with pytest.raises(InvalidInput):
        await add_note(demo, number, "  ", actor="x")


async def test_the_ivr_sees_a_change_at_once(demo) -> None:
    number = (await _new(demo)).number
    await update_case(demo, number, actor="x", stage="dispatched", latest_update="已派单")
    status = await find_case_status(demo, number)
    assert (status.stage, status.latest_update) == ("dispatched", "已派单")


async def test_concurrent_conflicting_changes_one_wins(demo) -> None:
    number = (await _new(demo)).number
    for stage in ["dispatched", "in_progress", "resolved"]:
        await change_stage(demo, number, stage, actor="x")
    results = await asyncio.gather(change_stage(demo, number, "closed", actor="a"),
                                   change_stage(demo, number, "in_progress", actor="b"),
                                   return_exceptions=True)
    assert sum(isinstance(r, InvalidTransition) for r in results) == 1
    case = await get_case(demo, number)
    assert case.stage in {"closed", "in_progress"}
    assert len(case.history) == 5


async def test_unknown_and_malformed_numbers(demo) -> None:
    with pytest.raises(CaseNotFound):
        await get_case(demo, make_case_number(DAY.date(), 999))
    with pytest.raises(InvalidCaseNumber):
        await get_case(demo, "26120100012")  # wrong check digit
    with pytest.raises(CaseNotFound):
        await change_stage(demo, make_case_number(DAY.date(), 998), "dispatched", actor="x")


async def test_to_json_masks_by_role(demo) -> None:
    case = await _new(demo, resident_phone="13800138000")
    as_agent = case.to_json(viewer_role="agent")
    assert as_agent["contact_phone"] == "138********"
    assert as_agent["resident"] == {"name": "张三", "id_number": "****2316"}
    assert case.to_json(viewer_role="agent", reveal_phone=True)["contact_phone"] == "13800138000"
    assert case.to_json(viewer_role="supervisor")["contact_phone"] == "13800138000"
    assert as_agent["next_stages"] == ["dispatched"]
    assert not case.overdue(DAY + timedelta(days=7)) and case.overdue(DAY + timedelta(days=8))


# -- consultations at the desk ----------------------------------------------------------------
async def _call(sessions, call_id, phone, at):
    async with sessions() as s, s.begin():
        await apply_event(s, CallStarted(call_id, phone, "张三", at=at))
        await apply_event(s, CallStep(call_id, KeysEntered("1"), at=at))
    async with sessions() as s:
        return await s.scalar(select(Consultation.id).where(Consultation.call_id == call_id))


async def test_consultation_follow_up_links_and_search(demo) -> None:
    async with demo() as s:  # the demo's 张三
        resident_id = await s.scalar(select(ResidentPhone.resident_id)
                                     .where(ResidentPhone.phone == "13800138000"))
    first = await _call(demo, "c-1", "13800138000", DAY)
    second = await _call(demo, "c-2", "13900139000", DAY + timedelta(hours=1))
    number = (await _new(demo)).number
    await link_case(demo, first, number, actor="agent:agent1")
    await link_case(demo, first, number, actor="agent:agent1")  # idempotent
    detail = await update_consultation(demo, first, actor="agent:agent1", notes="报修楼道灯",
                                       disposition="case_created", agent_login="agent1",
                                       resident_id=resident_id)
    assert (detail.notes, detail.disposition, detail.agent_login) == (
        "报修楼道灯", "case_created", "agent1")
    assert detail.case_numbers == (number,) and detail.resident_name == "张三"
    assert (await get_case(demo, number)).consultation_ids == (first,)
    assert [c.id for c in await find_consultations(demo)] == [second, first]
    assert [c.id for c in await find_consultations(demo, phone="13900139000")] == [second]
    assert [c.id for c in await find_consultations(demo, case_number=number)] == [first]
    assert [c.id for c in await find_consultations(
        demo, since=DAY + timedelta(minutes=30))] == [second]
    shown = (await get_consultation(demo, first)).to_json(viewer_role="agent")
    assert shown["caller_number"] == "138********"
    assert shown["resident"]["id_number"] == "****2316"
    assert shown["steps"][0]["kind"] == "keys"
    with pytest.raises(InvalidInput):
        await update_consultation(demo, first, actor="x", disposition="lunch")
    with pytest.raises(AgentNotFound):
        await update_consultation(demo, first, actor="x", agent_login="ghost")
    with pytest.raises(CaseNotFound):
        await link_case(demo, first, make_case_number(DAY.date(), 999), actor="x")
