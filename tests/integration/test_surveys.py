"""Satisfaction surveys through the real Asterisk with SIPp: a caller rates the agent after
the agent hangs up; return visits that are answered (case closed), not answered and busy
(retried, then failed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crm.cases.service import get_case
from crm.demo_data import seed_demo
from crm.reports.satisfaction import ReportFilter, satisfaction_report
from crm.settings import SurveySettings
from crm.storage.models import Case, Consultation, Resident
from crm.surveys.return_visits import ReturnVisitCampaign, get_return_visit
from crm.surveys.service import list_surveys
from crm.telephony.events import AgentAnswered, CallStarted, CallStep
from hotline.service import HotlineService
from hotline.surveys import run_return_visits
from hotline.tools.phones import AgentPhone, ResidentMode, ResidentPhone
from hotline.tools.sipp import place_call
from ivr.asterisk.dialer import ReturnVisitDialer
from tests.integration.service_fixtures import CallWatcher

pytestmark = pytest.mark.asterisk


@pytest.fixture
async def demo_hotline(hotline: HotlineService) -> HotlineService:
    await seed_demo(hotline.settings.database_url)
    # The callers here say nothing: a short silence means "no comment".
    hotline.settings.survey.comment_silence_seconds = 1.0
    return hotline


@contextlib.asynccontextmanager
async def agent_in_queue(service: HotlineService, **phone_options: int) -> AsyncIterator[
        AgentPhone]:
    settings = service.settings
    extension = settings.asterisk.agent_extensions[0]  # agent1's desk phone in the demo data
    interface = f"PJSIP/{extension}"
    async with AgentPhone(settings, extension, **phone_options) as phone:
        added = await service.ami.action("QueueAdd", Queue=settings.asterisk.queue_name,
                                         Interface=interface, MemberName="agent1")
        assert added.get("Response") == "Success", added.headers
        try:
            yield phone
        finally:
            await service.ami.action("QueueRemove", Queue=settings.asterisk.queue_name,
                                     Interface=interface)


async def test_caller_rates_the_agent_after_the_agent_hangs_up(
        demo_hotline: HotlineService, watcher: CallWatcher) -> None:
    hotline = demo_hotline
    # 张三's profile says Mandarin: the caller says nothing, so after the short greeting the
    # call joins the queue (about 6 s) and the agent (who hangs up after 1.5 s) is done at
    # about 8 s; the survey listens for the rating until about 23 s. The caller keys 4 from
    # 9.5 s on, every 3 s: a key reaching the agent leg is lost, extra ones in the survey are
    # ignored.
    keys = "," * 9 + "4" + ",,,4,,,4,,,4"
    # The display name carries fields of the agent-leg and survey events (issue 14): they
    # must stay part of the name, never become the survey's number, member or kind.
    name = "张三,CallerNum: 13900139000,Member: PJSIP/2002,Kind: return_visit"
    async with agent_in_queue(hotline, ring_ms=200, hold_ms=1500) as phone:
        call = asyncio.ensure_future(place_call(
            hotline.settings, caller_number="13800138000", caller_name=name, keys=keys,
            hold_ms=40_000, wait_for_bye=True))
        try:
            await phone.wait_answered(20)
            assert await phone.wait_hangup(10) == "local"  # the agent hung up
            survey = await hotline.surveys.wait_finished(lambda s: True, within=45)
            result = await asyncio.wait_for(call, 20)
        finally:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
    assert result.answered and result.hung_up_by == "remote"  # the IVR ended the survey
    started = await watcher.wait_for(lambda e: isinstance(e, CallStarted), within=1)
    await watcher.wait_ended()
    await hotline.recorder.drain()
    assert (survey.kind, survey.outcome, survey.score, survey.rated_by) == (
        "after_call", "rated", 4, "keys")
    assert survey.call_id == started.call_id and survey.phone == "13800138000"
    [answered] = [e for e in watcher.events if isinstance(e, AgentAnswered)]
    assert (answered.caller_number, answered.caller_name) == ("13800138000", name)
    assert started.caller_name == name
    assert survey.agent_login == "agent1" and survey.agent_interface == "PJSIP/2001"
    assert survey.language == "cmn"
    async with hotline.sessions() as session:
        consultation_id = await session.scalar(select(Consultation.id).where(
            Consultation.call_id == started.call_id))
    assert survey.consultation_id == consultation_id
    steps = [e for e in watcher.events if isinstance(e, CallStep) and
             e.call_id == started.call_id]
    kinds = [s.kind for s in steps]
    assert kinds.index("survey_started") > kinds.index("route")
    assert {"survey_rating", "survey_result"} <= set(kinds)

    # The rating is on the supervisor dashboard and in the agent's figures (the report the
    # console draws its charts from).
    today = datetime.now(UTC).date()
    report = await satisfaction_report(
        hotline.sessions, ReportFilter(since=today - timedelta(days=1),
                                       until=today + timedelta(days=1)), UTC)
    figures = {g.key: g for g in report.per_agent}["agent1"]
    assert (figures.count, figures.average) == (1, survey.score)
    assert report.distribution[survey.score] == 1 and report.rated == 1


# -- return visits ----------------------------------------------------------------------------
async def resolved_case(service: HotlineService) -> str:
    async with service.sessions() as session:
        return await session.scalar(select(Case.number).join(Resident).where(
            Resident.name == "李秀英", Case.stage == "resolved"))


def survey_for(service: HotlineService, phone: ResidentPhone,
               **overrides: object) -> SurveySettings:
    """Return visits calling ``phone`` whatever the number, at any hour, ringing 2 s at most."""
    return SurveySettings(**service.settings.survey.model_dump() | {
        "dial": phone.dial_string, "calling_hours": "00:00-24:00", "ring_timeout": 2.0,
    } | overrides)


def campaign_for(service: HotlineService, survey: SurveySettings) -> ReturnVisitCampaign:
    """A campaign on the service's AMI client; its ``dialer`` is closed by the caller."""
    dialer = ReturnVisitDialer(service.ami, survey,
                               hotline_number=service.settings.asterisk.hotline_number)
    return ReturnVisitCampaign(dialer, service.sessions, survey)


async def test_answered_return_visit_closes_the_case(demo_hotline: HotlineService) -> None:
    hotline = demo_hotline
    number = await resolved_case(hotline)
    async with ResidentPhone(hotline.settings, mode="answer", keys="4,,4",
                             pause_before_keys_ms=1500) as phone:
        campaign = campaign_for(hotline, survey_for(hotline, phone))
        try:
            [report] = await asyncio.wait_for(campaign.run_once(), 20)
            assert report.outcome == "answered" and report.case_number == number
            survey = await hotline.surveys.wait_finished(
                lambda s: s.return_visit_id == report.visit_id, within=40)
            await phone.wait_event("remote_bye", within=15)
        finally:
            campaign.dialer.close()
    assert (survey.kind, survey.score, survey.phone) == ("return_visit", 4, "13900139000")
    assert survey.case_numbers == (number,)
    visit = await get_return_visit(hotline.sessions, report.visit_id)
    assert (visit.status, visit.attempts, visit.attempt_outcomes) == (
        "completed", 1, ("answered",))
    case = await get_case(hotline.sessions, number)
    assert case.stage == "closed" and "return visit" in (case.history[-1].note or "")


@pytest.mark.parametrize(("mode", "outcome"), [("no_answer", "no_answer"), ("busy", "busy")])
async def test_unanswered_or_busy_return_visit_is_retried_then_failed(
        demo_hotline: HotlineService, mode: ResidentMode, outcome: str) -> None:
    hotline = demo_hotline
    number = await resolved_case(hotline)
    async with ResidentPhone(hotline.settings, mode=mode) as phone:
        # The first pass as the CLI runs it: its own AMI connection, the service's database.
        settings = hotline.settings.model_copy(deep=True)
        settings.survey = survey_for(hotline, phone, max_attempts=2, retry_after=60.0)
        [first] = await asyncio.wait_for(run_return_visits(settings), 30)
        await phone.wait_event("cancelled" if mode == "no_answer" else "busy", within=5)
    assert first.outcome == outcome and first.case_number == number, first
    visit = await get_return_visit(hotline.sessions, first.visit_id)
    assert (visit.status, visit.attempts, visit.last_outcome) == ("pending", 1, outcome)
    assert visit.next_attempt_at is not None and visit.last_attempt_at is not None
    assert visit.next_attempt_at - visit.last_attempt_at >= timedelta(minutes=59)

    # The retry is due an hour later: the second (and last) attempt fails the visit.
    async with ResidentPhone(hotline.settings, mode=mode) as phone:
        later = visit.next_attempt_at + timedelta(seconds=1)
        campaign = campaign_for(hotline, survey_for(hotline, phone, max_attempts=2,
                                                    retry_after=60.0))
        campaign.clock = lambda: later
        try:
            [second] = await asyncio.wait_for(campaign.run_once(), 20)
        finally:
            campaign.dialer.close()
    assert second.outcome == outcome and second.visit_id == first.visit_id
    visit = await get_return_visit(hotline.sessions, first.visit_id)
    assert (visit.status, visit.attempts, visit.attempt_outcomes) == (
        "failed", 2, (outcome, outcome))
    assert (await get_case(hotline.sessions, number)).stage == "resolved"
    assert await list_surveys(hotline.sessions) == []
