"""Surveys and return visits on SQLite and PostgreSQL: fatigue, what a result links to,
follow-up items, and return-visit scheduling, retries and their effect on the case."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crm.cases.service import create_case, get_case, update_case
from crm.consultations.recorder import apply_event
from crm.consultations.service import link_case
from crm.demo_data import seed_demo
from crm.errors import InvalidInput, NotFound
from crm.storage.models import Case, Consultation, Resident
from crm.storage.survey_models import ReturnVisit
from crm.surveys.return_visits import (
    CallingHours,
    RetryPolicy,
    begin_attempt,
    due_return_visits,
    expire_stale_attempts,
    get_return_visit,
    record_attempt,
    schedule_return_visits,
)
from crm.surveys.service import (
    FollowUpClosed,
    assign_follow_up,
    call_language,
    close_follow_up,
    finish_survey,
    get_follow_up,
    list_follow_ups,
    list_surveys,
    record_comment,
    record_rating,
    record_transcript,
    start_survey,
    surveyed_recently,
)
from crm.telephony.events import CallStarted, CallStep
from crm.telephony.steps import PromptPlayed

NOW = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0) + timedelta(days=1)
"""11:00 in Shanghai tomorrow: after everything the demo data dates from today's clock (a
case resolved "five days ago" at this hour; a fixed date fell before it one day at 11:00)."""
POLICY = RetryPolicy(max_attempts=3, retry_after=timedelta(minutes=120),
                     hours=CallingHours.parse("09:00-20:00", "Asia/Shanghai"),
                     stale_after=timedelta(minutes=30))


@pytest.fixture
async def demo(sessions, db_url):
    await seed_demo(db_url)
    return sessions


def sid() -> str:
    return str(uuid.uuid4())


async def resolved_case_of(sessions, name: str) -> str:
    async with sessions() as s:
        return await s.scalar(select(Case.number).join(Resident).where(
            Resident.name == name, Case.stage == "resolved").order_by(Case.id))


async def call(sessions, call_id: str, phone: str = "13800138000",
               language: str | None = "cmn") -> int:
    async with sessions() as session, session.begin():
        await apply_event(session, CallStarted(call_id, phone, "张三", "PJSIP/x-1", at=NOW))
        if language:
            await apply_event(session, CallStep(call_id, PromptPlayed("greeting", language)))
    async with sessions() as session:
        return await session.scalar(select(Consultation.id).where(
            Consultation.call_id == call_id))


# -- fatigue ----------------------------------------------------------------------------------
async def test_a_number_is_not_surveyed_again_within_the_fatigue_days(demo) -> None:
    assert not await surveyed_recently(demo, "13800138000", days=30, now=NOW)
    await start_survey(demo, kind="after_call", survey_call_id=sid(), call_id="c1",
                       phone="13800138000", now=NOW - timedelta(days=10))
    assert await surveyed_recently(demo, "13800138000", days=30, now=NOW)
    assert not await surveyed_recently(demo, "13800138000", days=7, now=NOW)
    assert not await surveyed_recently(demo, "13900139000", days=30, now=NOW)
    assert not await surveyed_recently(demo, "13800138000", days=0, now=NOW)
    assert not await surveyed_recently(demo, None, days=30, now=NOW)


# -- what a result links to ---------------------------------------------------------------------
async def test_result_links_consultation_agent_cases_and_department(demo) -> None:
    consultation_id = await call(demo, "call-a", language="en")
    case = await create_case(demo, category="repair", description="lift broken",
                             actor="agent:agent1", contact_phone="13800138000", now=NOW)
    await link_case(demo, consultation_id, case.number, actor="agent:agent1")
    assert await call_language(demo, "call-a") == "en"
    assert await call_language(demo, "no-such-call") is None

    started = await start_survey(demo, kind="after_call", survey_call_id=sid(),
                                 call_id="call-a", phone="13800138000", language="en",
                                 agent_interface="PJSIP/2001", now=NOW)
    assert started.outcome == "in_progress" and started.score is None
    assert started.consultation_id == consultation_id
    assert started.agent_login == "agent1"  # by the member interface's desk phone
    assert started.case_numbers == (case.number,)
    assert started.department_code == "housing"

    rated = await record_rating(demo, started.id, 5, by="keys", now=NOW)
    await record_comment(demo, started.id, path="/var/x.wav", seconds=4.256)
    await record_transcript(demo, started.id, "very helpful")
    done = await finish_survey(demo, started.id, now=NOW)
    assert (rated.outcome, rated.score, rated.rated_by) == ("rated", 5, "keys")
    assert rated.follow_up_id is None
    assert (done.comment_path, done.comment_seconds, done.comment_text) == (
        "/var/x.wav", 4.26, "very helpful")
    assert done.finished_at is not None and done.outcome == "rated"
    [listed] = await list_surveys(demo, call_id="call-a")
    assert listed.to_json()["case_numbers"] == [case.number]


async def test_the_consultations_agent_wins_and_late_case_links_count(demo) -> None:
    consultation_id = await call(demo, "call-b")
    async with demo() as session, session.begin():
        c = await session.get(Consultation, consultation_id)
        from crm.storage.models import Agent
        c.agent_id = await session.scalar(select(Agent.id).where(Agent.login == "agent2"))
    started = await start_survey(demo, kind="after_call", survey_call_id=sid(),
                                 call_id="call-b", agent_interface="PJSIP/2001", now=NOW)
    assert started.agent_login == "agent2" and started.case_numbers == ()
    case = await create_case(demo, category="garbage", description="bins", now=NOW,
                             actor="agent:agent2")
    await link_case(demo, consultation_id, case.number, actor="agent:agent2")
    rated = await record_rating(demo, started.id, 3, by="speech", now=NOW)
    assert rated.case_numbers == (case.number,) and rated.department_code == "sanitation"


async def test_hanging_up_before_rating_is_no_answer(demo) -> None:
    started = await start_survey(demo, kind="after_call", survey_call_id=sid(),
                                 call_id="call-c", phone="13800138000", now=NOW)
    done = await finish_survey(demo, started.id, now=NOW)
    assert (done.outcome, done.score) == ("no_answer", None)
    with pytest.raises(InvalidInput):
        await record_rating(demo, started.id, 6, by="keys")
    with pytest.raises(InvalidInput):
        await start_survey(demo, kind="poll", survey_call_id=sid())


# -- follow-up items ----------------------------------------------------------------------------
async def test_low_scores_open_follow_ups_that_are_assigned_and_closed(demo) -> None:
    low = await start_survey(demo, kind="after_call", survey_call_id=sid(), call_id="c-low",
                             phone="13800138000", agent_interface="PJSIP/2002", now=NOW)
    ok = await start_survey(demo, kind="after_call", survey_call_id=sid(), call_id="c-ok",
                            phone="13900139000", now=NOW)
    rated = await record_rating(demo, low.id, 2, by="keys", now=NOW)
    await record_rating(demo, ok.id, 3, by="keys", now=NOW)
    assert rated.follow_up_status == "open"

    [item] = await list_follow_ups(demo)
    assert (item.survey_id, item.score, item.agent_login, item.status) == (
        low.id, 2, "agent2", "open")
    assigned = await assign_follow_up(demo, item.id, agent_login="supervisor1",
                                      actor="agent:supervisor1", now=NOW)
    assert assigned.assignee_login == "supervisor1" and assigned.assigned_by == "agent:supervisor1"
    assert [f.id for f in await list_follow_ups(demo, assignee_login="supervisor1")] == [item.id]
    with pytest.raises(InvalidInput):
        await close_follow_up(demo, item.id, note="  ", actor="agent:supervisor1")
    with pytest.raises(NotFound):
        await assign_follow_up(demo, item.id, agent_login="nobody", actor="agent:x")
    closed = await close_follow_up(demo, item.id, note="called back, apologised",
                                   actor="agent:supervisor1", now=NOW)
    assert (closed.status, closed.note, closed.closed_by) == (
        "closed", "called back, apologised", "agent:supervisor1")
    assert await list_follow_ups(demo) == []
    assert [f.id for f in await list_follow_ups(demo, status=None)] == [item.id]
    with pytest.raises(FollowUpClosed):
        await close_follow_up(demo, item.id, note="again", actor="agent:supervisor1")
    with pytest.raises(FollowUpClosed):
        await assign_follow_up(demo, item.id, agent_login="agent1", actor="agent:x")
    with pytest.raises(NotFound):
        await get_follow_up(demo, 9999)
    # Rating twice (a retried write) opens no second item.
    await record_rating(demo, low.id, 1, by="keys", now=NOW)
    assert len(await list_follow_ups(demo, status=None)) == 1


# -- return visits --------------------------------------------------------------------------------
async def test_resolved_cases_get_one_return_visit(demo) -> None:
    number = await resolved_case_of(demo, "李秀英")
    [visit] = await schedule_return_visits(demo, now=NOW, hours=POLICY.hours)
    assert (visit.case_number, visit.phone, visit.language, visit.status, visit.attempts) == (
        number, "13900139000", "cmn", "pending", 0)
    assert visit.next_attempt_at == NOW  # 11:00 local: inside the calling hours
    assert await schedule_return_visits(demo, now=NOW) == []
    assert [v.id for v in await due_return_visits(demo, now=NOW)] == [visit.id]


async def test_visits_scheduled_at_night_wait_for_the_calling_hours(demo) -> None:
    night = NOW.replace(hour=14)  # 22:00 in Shanghai
    [visit] = await schedule_return_visits(demo, now=night, hours=POLICY.hours)
    assert visit.next_attempt_at == NOW.replace(hour=1) + timedelta(days=1)  # 09:00 next day
    assert await due_return_visits(demo, now=night) == []


async def test_unanswered_and_busy_are_retried_then_failed(demo) -> None:
    [visit] = await schedule_return_visits(demo, now=NOW)
    outcomes = ["no_answer", "busy", "no_answer"]
    at = NOW
    for attempt, outcome in enumerate(outcomes, start=1):
        call_id = sid()
        assert await begin_attempt(demo, visit.id, call_id, now=at)
        assert not await begin_attempt(demo, visit.id, sid(), now=at)  # claimed already
        after = await record_attempt(demo, visit.id, outcome, policy=POLICY,
                                     survey_call_id=call_id, now=at)
        assert after is not None and after.attempts == attempt
        if attempt < 3:
            assert after.status == "pending" and after.next_attempt_at == at + timedelta(hours=2)
            assert await due_return_visits(demo, now=at) == []
            at = after.next_attempt_at
        else:
            assert after.status == "failed" and after.next_attempt_at is None
    final = await get_return_visit(demo, visit.id)
    assert final.attempt_outcomes == tuple(outcomes) and final.last_outcome == "no_answer"
    assert (await get_case(demo, visit.case_number)).stage == "resolved"
    assert await schedule_return_visits(demo, now=at) == []  # failed is final


async def test_answered_visit_with_a_good_score_closes_the_case(demo) -> None:
    [visit] = await schedule_return_visits(demo, now=NOW)
    call_id = sid()
    await begin_attempt(demo, visit.id, call_id, now=NOW)
    answered = await record_attempt(demo, visit.id, "answered", policy=POLICY,
                                    survey_call_id=call_id, now=NOW)
    assert answered.status == "answered"
    survey = await start_survey(demo, kind="return_visit", survey_call_id=call_id,
                                return_visit_id=visit.id, now=NOW)
    assert survey.phone == "13900139000" and survey.case_numbers == (visit.case_number,)
    assert survey.department_code == "sanitation" and survey.language == "cmn"
    assert await surveyed_recently(demo, "13900139000", days=30, now=NOW)
    await record_rating(demo, survey.id, 4, by="keys", now=NOW)
    await finish_survey(demo, survey.id, policy=POLICY, now=NOW)
    case = await get_case(demo, visit.case_number)
    assert case.stage == "closed"
    assert case.history[-1].actor == "survey:return-visit"
    assert "return visit" in case.history[-1].note
    done = await get_return_visit(demo, visit.id)
    assert (done.status, done.last_outcome) == ("completed", "rated")
    assert await list_follow_ups(demo) == []


async def test_answered_visit_with_a_low_score_reopens_the_case(demo) -> None:
    [visit] = await schedule_return_visits(demo, now=NOW)
    call_id = sid()
    await begin_attempt(demo, visit.id, call_id, now=NOW)
    survey = await start_survey(demo, kind="return_visit", survey_call_id=call_id,
                                return_visit_id=visit.id, now=NOW)
    rated = await record_rating(demo, survey.id, 2, by="speech", now=NOW)
    case = await get_case(demo, visit.case_number)
    assert case.stage == "in_progress"
    assert case.history[-1].note.startswith("follow-up after return visit")
    assert rated.follow_up_status == "open"
    # Resolved again later: a new return visit is due.
    later = NOW + timedelta(days=2)
    await update_case(demo, visit.case_number, stage="resolved", actor="agent:agent1",
                      now=later)
    [again] = await schedule_return_visits(demo, now=later)
    assert again.id != visit.id and again.case_number == visit.case_number


async def test_answered_without_a_rating_is_retried(demo) -> None:
    [visit] = await schedule_return_visits(demo, now=NOW)
    call_id = sid()
    await begin_attempt(demo, visit.id, call_id, now=NOW)
    await record_attempt(demo, visit.id, "answered", policy=POLICY, survey_call_id=call_id,
                         now=NOW)
    survey = await start_survey(demo, kind="return_visit", survey_call_id=call_id,
                                return_visit_id=visit.id, now=NOW)
    done = await finish_survey(demo, survey.id, policy=POLICY, now=NOW)
    assert done.outcome == "no_answer"
    after = await get_return_visit(demo, visit.id)
    assert after.status == "pending" and after.attempt_outcomes == ("answered", "no_rating")
    assert (await get_case(demo, visit.case_number)).stage == "resolved"


async def test_calls_that_never_report_are_expired_as_lost(demo) -> None:
    [visit] = await schedule_return_visits(demo, now=NOW)
    await begin_attempt(demo, visit.id, sid(), now=NOW)
    assert await expire_stale_attempts(demo, policy=POLICY, now=NOW + timedelta(minutes=5)) == 0
    assert await expire_stale_attempts(demo, policy=POLICY, now=NOW + timedelta(hours=1)) == 1
    after = await get_return_visit(demo, visit.id)
    assert (after.status, after.last_outcome) == ("pending", "lost")
    async with demo() as session:
        pending = (await session.scalars(select(ReturnVisit.id)
                                         .where(ReturnVisit.status == "pending"))).all()
    assert pending == [visit.id]


async def test_a_late_outcome_of_an_old_attempt_is_ignored(demo) -> None:
    [visit] = await schedule_return_visits(demo, now=NOW)
    first = sid()
    await begin_attempt(demo, visit.id, first, now=NOW)
    survey = await start_survey(demo, kind="return_visit", survey_call_id=first,
                                return_visit_id=visit.id, now=NOW)
    await record_rating(demo, survey.id, 5, by="keys", now=NOW)
    late = await record_attempt(demo, visit.id, "no_answer", policy=POLICY,
                                survey_call_id=first, now=NOW)
    assert late.status == "completed" and late.last_outcome == "rated"
