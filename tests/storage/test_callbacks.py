"""Callback requests on SQLite and PostgreSQL: one request in flight per number (merging,
also under concurrent creation), attempts and retries up to the maximum within calling
hours, outcomes, closing by the resident's own call, cancel and reassign (audited), and the
requests the missed-call watcher makes from call events."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crm.audit.log import entries
from crm.callbacks import service
from crm.callbacks.dialing import CallbackScheduler
from crm.callbacks.service import RetryRules
from crm.callbacks.watcher import MissedCallWatcher
from crm.consultations.recorder import ConsultationRecorder
from crm.demo_data import seed_demo
from crm.errors import CallbackClosed, InvalidCallbackOutcome, InvalidInput
from crm.settings import CallbackSettings
from crm.storage.models import CallbackRequest, Consultation, ConsultationStep
from crm.surveys.return_visits import CallingHours
from crm.telephony.callbacks import CallbackJob, CallbackResult
from crm.telephony.events import (
    AgentAnswered,
    AgentRingStopped,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallEventBus,
    CallStarted,
    CallStep,
)
from crm.telephony.steps import (
    CallbackClosedByCall,
    CallbackNotPossible,
    CallbackOffered,
    CallbackRequested,
    IvrAtCapacity,
    LanguageChosen,
)

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
RULES = RetryRules(max_attempts=2, retry_after=timedelta(minutes=30),
                   hours=CallingHours.parse("08:00-21:00", "Asia/Shanghai"))
NUMBER = "13800138000"


async def test_a_second_missed_call_merges_into_the_open_request(sessions) -> None:
    first = await service.request_callback(
        sessions, number=NUMBER, reason="abandoned", queued_at=NOW, waited_s=42.0,
        language="en", rules=RULES, now=NOW)
    later = NOW + timedelta(minutes=5)
    second = await service.request_callback(
        sessions, number=NUMBER, reason="no_answer", queued_at=later, rules=RULES,
        now=later)
    assert not first.merged and second.merged
    assert second.request.id == first.request.id
    request = second.request
    # The merged request keeps its first place, reason and wait.
    assert (request.reason, request.queued_at, request.waited_s, request.language) == (
        "abandoned", NOW, 42.0, "en")
    assert request.note == "1 more missed call merged"
    third = await service.request_callback(sessions, number=NUMBER, reason="abandoned",
                                           rules=RULES, now=later)
    assert third.request.note == "2 more missed calls merged"
    other = await service.request_callback(sessions, number="13900139000",
                                           reason="abandoned", rules=RULES, now=NOW)
    assert not other.merged and other.request.id != first.request.id
    async with sessions() as session:
        count = len((await session.scalars(select(CallbackRequest))).all())
    assert count == 2


async def test_concurrent_missed_calls_from_one_number_make_one_request(sessions) -> None:
    results = await asyncio.gather(*(service.request_callback(
        sessions, number=NUMBER, reason="abandoned", rules=RULES, now=NOW)
        for _ in range(6)))
    assert len({r.request.id for r in results}) == 1
    assert sum(not r.merged for r in results) == 1
    assert [r.id for r in await service.list_pending(sessions)] == [results[0].request.id]


async def test_withheld_and_malformed_numbers_get_no_request(sessions) -> None:
    for number, problem in [(None, "withheld"), ("anonymous", "withheld"), ("", "withheld"),
                            ("12ab", "malformed"), ("123", "malformed"),
                            ("1234567890123456", "malformed")]:
        assert service.number_problem(number) == problem
        with pytest.raises(InvalidInput):
            await service.request_callback(sessions, number=number or "", reason="abandoned")
    assert service.number_problem("+8613800138000") is None
    assert await service.list_pending(sessions) == []


async def test_a_request_made_at_night_is_first_due_at_the_opening_of_calling_hours(
        sessions) -> None:
    night = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    made = await service.request_callback(sessions, number=NUMBER, reason="closed",
                                          rules=RULES, now=night)
    assert made.request.next_attempt_at == datetime(2026, 12, 3, 0, 0, tzinfo=UTC)  # 08:00
    assert await service.due_callbacks(sessions, now=night) == []
    due = await service.due_callbacks(sessions, now=datetime(2026, 12, 3, 0, 0, tzinfo=UTC))
    assert [r.id for r in due] == [made.request.id]


async def test_unanswered_callbacks_are_retried_then_fail_at_the_maximum(sessions) -> None:
    made = (await service.request_callback(sessions, number=NUMBER, reason="abandoned",
                                           rules=RULES, now=NOW)).request
    assert await service.begin_attempt(sessions, made.id)
    assert not await service.begin_attempt(sessions, made.id)  # claimed once only
    first = await service.finish_attempt(sessions, made.id, "no_answer", rules=RULES, now=NOW)
    assert (first.status, first.attempts, first.outcome) == ("pending", 1, "no_answer")
    assert first.next_attempt_at == NOW + timedelta(minutes=30)
    assert await service.due_callbacks(sessions, now=NOW) == []
    # A callback that left the queue without an agent is no attempt: placed again soon.
    assert await service.begin_attempt(sessions, made.id)
    lost = await service.finish_attempt(sessions, made.id, None, rules=RULES, now=NOW)
    assert (lost.status, lost.attempts) == ("pending", 1)
    assert await service.begin_attempt(sessions, made.id)
    last = await service.finish_attempt(sessions, made.id, "busy", rules=RULES, now=NOW)
    assert (last.status, last.attempts, last.outcome, last.next_attempt_at) == (
        "failed", 2, "busy", None)
    assert last.completed_at == NOW
    # Failed, the number may have a new request.
    again = await service.request_callback(sessions, number=NUMBER, reason="abandoned",
                                           rules=RULES, now=NOW)
    assert not again.merged and again.request.id != made.id


@pytest.mark.parametrize(("outcome", "status"), [("reached", "completed"),
                                                  ("declined", "completed"),
                                                  ("wrong_number", "failed")])
async def test_the_agent_records_how_the_callback_went(sessions, outcome: str,
                                                       status: str) -> None:
    made = (await service.request_callback(sessions, number=NUMBER, reason="chosen",
                                           rules=RULES, now=NOW)).request
    assert await service.begin_attempt(sessions, made.id)
    recorded = await service.record_outcome(sessions, made.id, outcome, actor="agent:agent1",
                                            rules=RULES, now=NOW)
    assert (recorded.status, recorded.outcome) == (status, outcome)
    # The telephone side's report at hang-up counts the attempt, the agent's word stands.
    done = await service.finish_attempt(sessions, made.id, "reached", rules=RULES, now=NOW)
    assert (done.status, done.outcome, done.attempts) == (status, outcome, 1)
    with pytest.raises(InvalidCallbackOutcome):
        await service.record_outcome(sessions, made.id, "maybe", actor="agent:agent1",
                                     rules=RULES)
    [audited] = await entries(sessions, object_type="callback_request")
    assert (audited.actor, audited.action, audited.detail) == (
        "agent:agent1", "callback_outcome", {"outcome": outcome})


async def test_a_resident_who_calls_in_closes_their_request(sessions) -> None:
    made = (await service.request_callback(sessions, number=NUMBER, reason="abandoned",
                                           rules=RULES, now=NOW)).request
    closed = await service.close_by_call_in(sessions, NUMBER, now=NOW)
    assert [(c.id, c.status) for c in closed] == [(made.id, "closed_by_call_in")]
    assert await service.close_by_call_in(sessions, NUMBER) == []
    assert await service.list_pending(sessions) == []
    with pytest.raises(CallbackClosed):
        await service.cancel_callback(sessions, made.id, actor="supervisor1")


async def test_supervisors_cancel_and_reassign_audited(sessions, db_url) -> None:
    await seed_demo(db_url)
    made = (await service.request_callback(sessions, number=NUMBER, reason="abandoned",
                                           rules=RULES, now=NOW)).request
    moved = await service.reassign_callback(sessions, made.id, "agent2",
                                            actor="supervisor:supervisor1", source="127.0.0.1")
    assert moved.assigned_agent == "agent2" and moved.status == "pending"
    with pytest.raises(InvalidInput):
        await service.reassign_callback(sessions, made.id, "nobody", actor="supervisor:x")
    cancelled = await service.cancel_callback(sessions, made.id,
                                              actor="supervisor:supervisor1", note="dup")
    assert (cancelled.status, cancelled.cancelled_by, cancelled.note) == (
        "cancelled", "supervisor:supervisor1", "dup")
    with pytest.raises(CallbackClosed):
        await service.reassign_callback(sessions, made.id, None, actor="supervisor:x")
    audited = await entries(sessions, object_type="callback_request")
    assert sorted(e.action for e in audited) == ["callback_cancel", "callback_reassign"]
    assert {e.object_id for e in audited} == {str(made.id)}


async def test_pending_callbacks_are_listed_in_arrival_order(sessions) -> None:
    late = await service.request_callback(sessions, number="13900000002", reason="abandoned",
                                          queued_at=NOW + timedelta(seconds=30), now=NOW)
    early = await service.request_callback(sessions, number="13900000001",
                                           reason="abandoned", queued_at=NOW, now=NOW)
    assert [r.id for r in await service.list_pending(sessions)] == [
        early.request.id, late.request.id]
    assert [r.id for r in await service.due_callbacks(sessions, now=NOW)] == [
        early.request.id, late.request.id]


# -- the watcher: requests from call events ---------------------------------------------------
class Steps:
    def __init__(self) -> None:
        self.steps: list[CallStep] = []

    async def handle(self, event: object) -> None:
        if isinstance(event, CallStep):
            self.steps.append(event)


@pytest.fixture
async def watched(sessions):
    bus = CallEventBus()
    recorder = ConsultationRecorder(sessions)
    bus.subscribe(recorder.handle)
    recorder.start()
    watcher = MissedCallWatcher(sessions, bus, CallbackSettings(min_wait_s=10.0,
                                                                calling_hours="00:00-24:00"),
                                settle=recorder.drain)
    bus.subscribe(watcher.handle)
    seen = Steps()
    bus.subscribe(seen.handle)
    yield bus, watcher, seen
    await watcher.close()
    await recorder.close()


async def _abandon(bus: CallEventBus, number: str | None, *, held: int,
                   start: datetime, ended_first: bool = False) -> str:
    """A caller who hangs up in the queue. ``ended_first``: the dialplan's HotlineCallEnd
    arrives before app_queue's QueueCallerAbandon, as Asterisk 22 may report them."""
    call_id = str(uuid.uuid4())
    await bus.publish(CallStarted(call_id, number, None, at=start))
    await bus.publish(CallStep(call_id, LanguageChosen("ko", "key"), at=start))
    await bus.publish(CallerQueued(call_id, "hotline", 1, number, at=start))
    left = start + timedelta(seconds=held)
    ended = CallEnded(call_id, "agent", "16", at=left)
    if ended_first:
        await bus.publish(ended)
    await bus.publish(CallerAbandoned(call_id, "hotline", 1, 1, held, at=left))
    if not ended_first:
        await bus.publish(ended)
    return call_id


async def test_an_abandon_reported_after_the_call_ended_still_makes_the_request(
        sessions, watched) -> None:
    bus, watcher, seen = watched
    call_id = await _abandon(bus, NUMBER, held=25, start=datetime.now(UTC), ended_first=True)
    await watcher.drain()
    [request] = await service.list_pending(sessions)
    assert (request.caller_number, request.reason, request.waited_s) == (
        NUMBER, "abandoned", 25.0)
    assert not [s for s in seen.steps
                if s.call_id == call_id and isinstance(s.step, CallbackNotPossible)]


async def test_the_watcher_makes_one_request_per_number_from_abandoned_calls(
        sessions, watched) -> None:
    bus, watcher, seen = watched
    start = datetime.now(UTC)
    first = await _abandon(bus, NUMBER, held=25, start=start)
    await watcher.drain()
    quick = await _abandon(bus, "13900139000", held=3, start=start)  # under the minimum
    second = await _abandon(bus, NUMBER, held=12, start=start + timedelta(seconds=40))
    await watcher.drain()
    [request] = await service.list_pending(sessions)
    assert (request.caller_number, request.reason, request.language) == (NUMBER, "abandoned",
                                                                          "ko")
    assert request.queued_at == start and request.waited_s == 25.0
    async with sessions() as session:
        linked = await session.scalar(select(Consultation.call_id).where(
            Consultation.id == request.consultation_id))
    assert linked == first
    made = {s.call_id: s.step for s in seen.steps if isinstance(s.step, CallbackRequested)}
    assert made[first] == CallbackRequested(request.id, "abandoned", False)
    assert made[second] == CallbackRequested(request.id, "abandoned", True)
    assert quick not in made


async def test_overload_and_unanswered_agents_make_requests_whatever_the_wait(
        sessions, watched) -> None:
    bus, watcher, _ = watched
    start = datetime.now(UTC)
    call_id = str(uuid.uuid4())
    await bus.publish(CallStarted(call_id, "13900000001", None, at=start))
    await bus.publish(CallStep(call_id, IvrAtCapacity("IVR at capacity", 40)))
    await bus.publish(CallerQueued(call_id, "hotline", 1, at=start))
    await bus.publish(CallerAbandoned(call_id, "hotline", 1, 1, 2))
    rang = str(uuid.uuid4())
    await bus.publish(CallStarted(rang, "13900000002", None, at=start))
    await bus.publish(CallerQueued(rang, "hotline", 1, at=start))
    await bus.publish(AgentRingStopped(rang, "hotline", "PJSIP/2001", "2001", 15))
    await bus.publish(CallerAbandoned(rang, "hotline", 1, 1, 4))
    await watcher.drain()
    reasons = {r.caller_number: r.reason for r in await service.list_pending(sessions)}
    assert reasons == {"13900000001": "overload", "13900000002": "no_answer"}


async def test_a_withheld_caller_gets_no_request_and_the_consultation_says_why(
        sessions, watched) -> None:
    bus, watcher, seen = watched
    call_id = await _abandon(bus, "anonymous", held=30, start=datetime.now(UTC))
    await watcher.drain()
    assert await service.list_pending(sessions) == []
    assert [s.step for s in seen.steps if s.call_id == call_id
            and isinstance(s.step, CallbackNotPossible)] == [CallbackNotPossible("withheld")]


async def test_the_callback_offer_answer_decides(sessions, watched) -> None:
    bus, watcher, _ = watched
    answers = {"13900000001": ("closed", "yes"), "13900000002": ("closed", "no"),
               "13900000003": ("max_wait", "none"), "13900000004": ("chosen", "unheard"),
               "13900000005": ("closed", "none"), "13900000006": ("chosen", "withheld")}
    for number, (reason, answer) in answers.items():
        call_id = str(uuid.uuid4())
        await bus.publish(CallStarted(call_id, number, None))
        await bus.publish(CallStep(call_id, CallbackOffered(reason, answer)))
    await watcher.drain()
    made = {r.caller_number: r.reason for r in await service.list_pending(sessions)}
    assert made == {"13900000001": "closed", "13900000003": "abandoned",
                    "13900000004": "chosen"}


async def test_an_answered_or_self_served_call_in_closes_the_request(sessions,
                                                                     watched) -> None:
    bus, watcher, seen = watched
    start = datetime.now(UTC)
    await _abandon(bus, NUMBER, held=30, start=start)
    await _abandon(bus, "13900139000", held=30, start=start)
    await watcher.drain()
    answered = str(uuid.uuid4())
    await bus.publish(CallStarted(answered, NUMBER, None))
    await bus.publish(CallerQueued(answered, "hotline", 1, NUMBER))
    await bus.publish(AgentAnswered(answered, "hotline", "PJSIP/2001", "2001"))
    self_served = str(uuid.uuid4())
    await bus.publish(CallStarted(self_served, "13900139000", None))
    await bus.publish(CallEnded(self_served, "end", "16"))
    await watcher.drain()
    assert await service.list_pending(sessions) == []
    closed = [s for s in seen.steps if isinstance(s.step, CallbackClosedByCall)]
    assert {s.call_id for s in closed} == {answered, self_served}
    async with sessions() as session:
        rows = (await session.scalars(select(CallbackRequest))).all()
    assert {r.status for r in rows} == {"closed_by_call_in"}


# -- the scheduler: calling hours, arrival order, at most max_concurrent, withdrawal ----------
class RecordingDialer:
    """A dialer that records the jobs it is given and ends each when told (the narrow seam
    between the scheduler and Asterisk; the real one is tested in tests/integration)."""

    def __init__(self) -> None:
        self.jobs: list[CallbackJob] = []
        self.results: dict[int, asyncio.Future[CallbackResult]] = {}
        self.cancelled: list[int] = []
        self.placed = asyncio.Event()
        self.live: set[int] = set()
        self.withdrawn: list[int] = []
        self.on_report = None

    async def live_callbacks(self, arrivals: dict) -> set[int]:
        return self.live & set(arrivals)

    async def withdraw(self, request_id: int) -> None:
        self.withdrawn.append(request_id)
        if request_id in self.results and not self.results[request_id].done():
            self.results[request_id].set_result(CallbackResult(None, "withdrawn"))

    async def call_back(self, job: CallbackJob, placed) -> CallbackResult:
        self.jobs.append(job)
        await placed(len(self.jobs))
        self.placed.set()
        future = self.results[job.request_id] = asyncio.get_running_loop().create_future()
        try:
            return await future
        except asyncio.CancelledError:
            self.cancelled.append(job.request_id)
            raise


async def test_the_scheduler_dials_in_arrival_order_within_calling_hours(sessions) -> None:
    settings = CallbackSettings(calling_hours="08:00-21:00", timezone="Asia/Shanghai",
                                max_concurrent=1, max_attempts=2, retry_after=30)
    night = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    clock = [night]
    dialer = RecordingDialer()
    bus = CallEventBus()
    seen = Steps()
    bus.subscribe(seen.handle)
    scheduler = CallbackScheduler(dialer, sessions, bus, settings, queue="hotline",
                                  clock=lambda: clock[0])
    later = await service.request_callback(sessions, number="13900000002", reason="closed",
                                           queued_at=night + timedelta(seconds=9), now=night)
    earlier = await service.request_callback(sessions, number="13900000001", reason="closed",
                                             queued_at=night, now=night)
    assert await scheduler.run_once() == []  # outside the calling hours: nobody is called
    clock[0] = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)  # 08:00
    assert await scheduler.run_once() == [earlier.request.id]  # first come, one at a time
    assert await scheduler.run_once() == []
    await asyncio.wait_for(dialer.placed.wait(), 5)
    [job] = dialer.jobs
    assert (job.number, job.queue, job.arrival, job.attempt) == (
        "13900000001", "hotline", night, 1)
    dialer.results[earlier.request.id].set_result(CallbackResult("reached", "ANSWER"))
    done = await scheduler.wait_finished(lambda v: v.id == earlier.request.id, 5)
    assert (done.status, done.outcome, done.attempts) == ("completed", "reached", 1)
    assert [type(s.step).__name__ for s in seen.steps if s.call_id == job.call_id] == [
        "CallbackDialling", "CallbackOutcome"]

    # Cancelled while waiting in the queue: the dialer withdraws the call; the request
    # stays cancelled (the withdrawal is no attempt).
    dialer.placed.clear()
    assert await scheduler.run_once() == [later.request.id]
    await asyncio.wait_for(dialer.placed.wait(), 5)
    await scheduler.cancel(later.request.id, actor="supervisor:supervisor1")
    await scheduler.wait_finished(lambda v: v.id == later.request.id, 5)
    assert dialer.withdrawn == [later.request.id] and dialer.cancelled == []
    view = await service.get_callback(sessions, later.request.id)
    assert (view.status, view.attempts) == ("cancelled", 0)
    await scheduler.close()


async def test_after_a_restart_callbacks_still_up_keep_their_call_the_others_go_again(
        sessions) -> None:
    up = (await service.request_callback(sessions, number="13900000001",
                                         reason="abandoned")).request
    gone = (await service.request_callback(sessions, number="13900000002",
                                           reason="abandoned")).request
    for request in (up, gone):
        assert await service.begin_attempt(sessions, request.id)
    dialer = RecordingDialer()
    dialer.live = {up.id}
    bus = CallEventBus()
    scheduler = CallbackScheduler(dialer, sessions, bus, CallbackSettings(
        calling_hours="00:00-24:00"), queue="hotline")
    await scheduler.recover()
    assert (await service.get_callback(sessions, up.id)).status == "dialling"
    again = await service.get_callback(sessions, gone.id)
    assert (again.status, again.attempts) == ("pending", 0)
    # The call left up reports when it ends; a cancel reaches its placeholder.
    assert dialer.on_report is not None
    await dialer.on_report(up.id, "old-call", CallbackResult("busy", "DIALSTATUS BUSY"))
    view = await service.get_callback(sessions, up.id)
    assert (view.status, view.attempts, view.outcome) == ("pending", 1, "busy")
    assert await service.begin_attempt(sessions, up.id)
    await service.cancel_callback(sessions, up.id, actor="supervisor:x")
    scheduler.withdraw([up.id])
    await scheduler.close()
    assert dialer.withdrawn == [up.id]


async def test_a_callback_call_found_after_a_restart_closes_nothing(sessions, watched) -> None:
    bus, watcher, _ = watched
    made = (await service.request_callback(sessions, number=NUMBER, reason="abandoned")).request
    assert await service.begin_attempt(sessions, made.id)
    # The new service hears of the callback call with no callback_dialling step: its
    # channel says what it is.
    call_id = str(uuid.uuid4())
    await bus.publish(CallStarted(call_id, NUMBER, "callback",
                                  f"Local/{made.id}@hotline-callback-slot-0000002a;1"))
    await bus.publish(AgentAnswered(call_id, "hotline", "PJSIP/2001", "2001"))
    await bus.publish(CallEnded(call_id, "callback", "16"))
    await watcher.drain()
    assert (await service.get_callback(sessions, made.id)).status == "dialling"


async def test_an_assigned_callback_waits_for_its_agent_moves_when_reassigned_and_lapses(
        sessions, db_url) -> None:
    await seed_demo(db_url)
    settings = CallbackSettings(calling_hours="00:00-24:00", assigned_wait=120)
    clock = [NOW]
    dialer = RecordingDialer()
    scheduler = CallbackScheduler(dialer, sessions, CallEventBus(), settings, queue="hotline",
                                  clock=lambda: clock[0])
    made = (await service.request_callback(sessions, number=NUMBER, reason="abandoned",
                                           queued_at=NOW, now=NOW)).request
    assigned = await service.reassign_callback(sessions, made.id, "agent2",
                                               actor="supervisor:supervisor1")

    async def placed() -> CallbackJob:
        dialer.placed.clear()
        assert await scheduler.run_once() == [made.id]
        await asyncio.wait_for(dialer.placed.wait(), 5)
        return dialer.jobs[-1]

    # For agent2 alone: the assigned queue, their id as penalty, at most assigned_wait.
    job = await placed()
    assert (job.queue, job.penalty, job.wait_s, job.arrival, job.attempt) == (
        "hotline-assigned", assigned.assigned_agent_id, 120, NOW, 1)
    # Unassigned while it waits: withdrawn, placed again at once in the general queue,
    # no attempt counted.
    await scheduler.reassign(made.id, None, actor="supervisor:supervisor1")
    await scheduler.wait_finished(lambda v: v.id == made.id, 5)
    assert dialer.withdrawn == [made.id]
    job = await placed()
    assert (job.queue, job.penalty, job.wait_s, job.attempt) == ("hotline", None, None, 1)
    # Given to agent2 again, who does not take it within assigned_wait: the assignment
    # lapses (audited as the system) and it is due in the general queue at once.
    scheduler.finished.clear()
    await scheduler.reassign(made.id, "agent2", actor="supervisor:supervisor1")
    await scheduler.wait_finished(lambda v: v.id == made.id, 5)
    assert dialer.withdrawn == [made.id, made.id]
    job = await placed()
    assert (job.queue, job.penalty) == ("hotline-assigned", assigned.assigned_agent_id)
    scheduler.finished.clear()
    dialer.results[made.id].set_result(CallbackResult(None, "TIMEOUT", timed_out=True))
    view = await scheduler.wait_finished(lambda v: v.id == made.id, 5)
    assert (view.status, view.attempts, view.assigned_agent) == ("pending", 0, None)
    assert view.next_attempt_at == NOW and view.note == (
        "agent2 did not take it in 120 s: general queue")
    job = await placed()
    assert (job.queue, job.penalty) == ("hotline", None)
    # Withdrawn without a reassignment (e.g. Asterisk hung it up): placed again later.
    dialer.results[made.id].set_result(CallbackResult(None, "gone"))
    view = await scheduler.wait_finished(lambda v: v.id == made.id and v.next_attempt_at
                                         != NOW, 5)
    assert view.next_attempt_at == NOW + service.NOT_DIALLED_DELAY
    trail = await entries(sessions, object_type="callback_request", object_id=made.id)
    assert [(e.action, e.actor) for e in reversed(trail)] == [
        ("callback_reassign", "supervisor:supervisor1"),
        ("callback_reassign", "supervisor:supervisor1"),
        ("callback_reassign", "supervisor:supervisor1"),
        ("callback_assignment_lapsed", "system")]
    # A lapse reported after a supervisor reassigned it changes nothing.
    await service.reassign_callback(sessions, made.id, "agent1", actor="supervisor:x")
    assert not await service.lapse_assignment(sessions, made.id,
                                              assigned.assigned_agent_id or 0, waited_s=1)
    assert (await service.get_callback(sessions, made.id)).assigned_agent == "agent1"
    await scheduler.close()


async def test_a_withheld_callers_abandon_handed_over_again_says_why_once(
        sessions, watched) -> None:
    """A new control's watcher handles again an abandon the old one had handled but not
    acknowledged (hotline/roles/callback_watcher_member.py): the consultation already says
    the number cannot be called back, so no second step."""
    bus, watcher, seen = watched
    start = datetime.now(UTC)
    call_id = await _abandon(bus, "anonymous", held=30, start=start)
    await watcher.drain()
    taking_over = MissedCallWatcher(sessions, bus, CallbackSettings(
        min_wait_s=10.0, calling_hours="00:00-24:00"), settle=watcher._settle)  # the recorder
    try:
        for event in (CallStarted(call_id, "anonymous", None, at=start),
                      CallerQueued(call_id, "hotline", 1, "anonymous", at=start)):
            await taking_over.learn(event)
        await taking_over.handle_through(CallerAbandoned(
            call_id, "hotline", 1, 1, 30, at=start + timedelta(seconds=30)))
    finally:
        await taking_over.close()
    async with sessions() as session:
        kinds = (await session.scalars(select(ConsultationStep.kind).join(Consultation).where(
            Consultation.call_id == call_id,
            ConsultationStep.kind == "callback_not_possible"))).all()
    assert kinds == ["callback_not_possible"]
    assert [s.step for s in seen.steps if s.call_id == call_id
            and isinstance(s.step, CallbackNotPossible)] == [CallbackNotPossible("withheld")]


def any_hour_scheduler(sessions, dialer: RecordingDialer) -> CallbackScheduler:
    """A scheduler for the main queue that may call back at any hour."""
    return CallbackScheduler(dialer, sessions, CallEventBus(), CallbackSettings(
        calling_hours="00:00-24:00"), queue="hotline")


async def test_a_callback_moved_before_its_job_reached_the_dialer_is_not_placed(
        sessions) -> None:
    """A reassignment (or a cancel) lands between the scheduler starting a request's job and
    the job handing it to the dialer: the dialer's withdrawal has nothing to find yet, so
    the job itself must not place it (it was placed for the old agent and waited there
    until its wait ran out: seen in tests/integration/test_callbacks.py under load)."""
    request = (await service.request_callback(sessions, number="13900000003",
                                              reason="abandoned")).request
    dialer = RecordingDialer()
    scheduler = any_hour_scheduler(sessions, dialer)
    try:
        assert await scheduler.run_once() == [request.id]
        scheduler.move(request.id)  # the job's task has not run yet
        done = await scheduler.wait_finished(lambda v: v.id == request.id, 5)
        assert dialer.jobs == []
        assert done.status == "pending", done
        assert await scheduler.run_once() == [request.id]  # placed again, at once
        await asyncio.wait_for(dialer.placed.wait(), 5)
        assert [j.request_id for j in dialer.jobs] == [request.id]
    finally:
        await scheduler.close()


async def test_a_callback_given_back_while_found_due_is_placed_for_the_general_queue(
        sessions, db_url, monkeypatch) -> None:
    """The scheduler read the request due (still assigned to an agent who is away), then a
    supervisor gave it back to the general queue before the scheduler claimed it: nothing was
    in flight to move, so the call must be placed from the request as it is now, not for the
    agent (it waited for them, out of every queue, until their wait ran out: seen as
    tests/integration/test_callbacks.py's unassigned callback never coming back)."""
    await seed_demo(db_url)
    made = (await service.request_callback(sessions, number=NUMBER, reason="abandoned",
                                           queued_at=NOW, now=NOW)).request
    await service.reassign_callback(sessions, made.id, "agent2", actor="supervisor:s1")
    read_due = service.due_callbacks

    async def due_then_given_back(*args, **kwargs):
        due = await read_due(*args, **kwargs)
        if any(r.assigned_agent == "agent2" for r in due):
            await service.reassign_callback(sessions, made.id, None, actor="supervisor:s1")
        return due

    monkeypatch.setattr(service, "due_callbacks", due_then_given_back)
    dialer = RecordingDialer()
    scheduler = any_hour_scheduler(sessions, dialer)
    try:
        assert await scheduler.run_once() == [made.id]
        await asyncio.wait_for(dialer.placed.wait(), 5)
        assert [(j.request_id, j.penalty, j.queue) for j in dialer.jobs] == [
            (made.id, None, "hotline")]
    finally:
        await scheduler.close()


async def test_a_finished_attempts_task_does_not_forget_the_next_one(sessions) -> None:
    """An attempt makes room for the next as soon as its outcome is recorded, before its
    task has ended: the task's end must not then forget the request's next attempt (a
    withdrawal would no longer reach it, and a second attempt could start beside it)."""
    request = (await service.request_callback(sessions, number="13900000004",
                                              reason="abandoned")).request
    dialer = RecordingDialer()
    scheduler = any_hour_scheduler(sessions, dialer)
    try:
        assert await scheduler.run_once() == [request.id]
        first = scheduler._in_flight[request.id]
        await asyncio.wait_for(dialer.placed.wait(), 5)
        dialer.placed.clear()
        # A watcher holding the scheduler's condition keeps the first attempt's task from
        # ending right after it made room (the window seen under load).
        async with scheduler._changed:
            scheduler.move(request.id)
            async with asyncio.timeout(5):
                while not await scheduler.run_once():  # room made: placed again at once
                    await scheduler._wake.wait()
                    scheduler._wake.clear()
            second = scheduler._in_flight[request.id]
        await first  # its done-callback has run, with the second attempt in flight
        assert scheduler._in_flight.get(request.id) is second
        await asyncio.wait_for(dialer.placed.wait(), 5)
    finally:
        await scheduler.close()
