"""The reminder timer inside the service (crm/cases/reminder_timer.py) on SQLite and
PostgreSQL, on a fixed clock: a case due soon gets exactly one reminder, on the API's feed
and marked in the console; when the clock passes its deadline, exactly one overdue reminder;
a pass that fails on a database error is logged on one line and the next pass works; a
database that is unreachable never stops the timer; the shell's wiring reports each pass
to the service's metrics and health report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from crm.agents import tokens as api_tokens
from crm.cases import dispatch
from crm.cases.reminder_timer import ReminderRun, ReminderTimer, reminder_timer
from crm.cases.service import change_stage, create_case, get_case
from crm.demo_data import seed_demo
from crm.settings import DispatchSettings
from crm.storage.db import make_engine, make_session_factory
from crm.storage.dispatch_models import CaseReminder
from crm.storage.models import ApiToken, Case, utcnow
from hotline.metrics import ServiceMetrics
from hotline.settings import Settings
from hotline.tools.bed import free_tcp_port
from tests.storage.test_console_web import Console, console  # noqa: F401  (the fixture)

TICK = 0.05
"""The timer's interval in these tests (seconds)."""
WITHIN = 20.0
"""How long a test waits for the passes it needs (bounds every wait)."""
TIMER_LOG = "crm.cases.reminder_timer"


class FixedClock:
    """The timer's clock: it stands still until the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def until(timer: ReminderTimer, done: Callable[[], bool],
                within: float = WITHIN) -> None:
    """Wait, pass by pass, until ``done()`` holds (bounded by ``within``)."""
    async with asyncio.timeout(within):
        while not done():
            await timer.wait_runs(timer.runs + 1, within)


async def _dispatched(sessions, category: str, age: timedelta) -> str:
    case = await create_case(sessions, category=category, description="路灯坏了",
                             actor="agent:agent1", contact_phone="13800138000",
                             now=utcnow() - age)
    await change_stage(sessions, case.number, "dispatched", actor="agent:agent1")
    return case.number


async def _department_token(sessions, department: str) -> str:
    secret = await api_tokens.create_token(sessions, f"{department}-system", ["cases:read"])
    async with sessions() as session:
        token_id = await session.scalar(select(ApiToken.id)
                                        .where(ApiToken.name == f"{department}-system"))
    await dispatch.bind_token(sessions, token_id, department, actor="admin:test")
    return secret


async def _of_case(sessions, number: str) -> list[tuple[str, datetime]]:
    return [(r.kind, r.deadline) for r in await dispatch.reminders(sessions, department=None)
            if r.case_number == number]


async def test_a_due_soon_case_is_reminded_once_then_once_more_when_it_turns_overdue(
        console: Console) -> None:  # noqa: F811
    s = console.sessions
    number = await _dispatched(s, "garbage", timedelta(days=2, hours=12))  # 3 days: 12 h left
    deadline = (await get_case(s, number)).deadline
    token = await _department_token(s, "sanitation")
    clock = FixedClock(utcnow())
    runs: list[ReminderRun] = []
    timer = ReminderTimer(s, TICK, clock=clock, on_run=runs.append)
    timer.start()
    try:
        await until(timer, lambda: bool(runs) and runs[0].sent > 0 and len(runs) >= 3)
        assert await _of_case(s, number) == [("due_soon", deadline)]
        # every later pass on the same clock finds nothing new
        assert all(r.error is None for r in runs) and [r.sent for r in runs[1:]] == [0] * (
            len(runs) - 1)
        assert runs[0].at == clock.now  # the pass used the timer's clock

        # the department's feed on the open API, and the supervisor's mark in the console
        client = await console.client()
        answer = await client.get("/api/reminders",
                                  headers={"Authorization": f"Bearer {token}"})
        assert answer.status == 200, await answer.text()
        feed = (await answer.json())["reminders"]
        assert [(r["kind"], r["department"]) for r in feed if r["case_number"] == number] == [
            ("due_soon", "sanitation")]
        assert {r["department"] for r in feed} == {"sanitation"}
        cursor = feed[-1]["id"]
        supervisor, _ = await console.sign_in()
        page = await (await supervisor.get("/console/supervision")).text()
        due = page[page.index('id="due-soon"'):page.index('id="requests"')]
        assert re.search(rf'id="case-{number}" data-urges="0" data-reminded="due_soon"', due)

        # the fixed clock passes the deadline: one overdue reminder, then nothing more
        assert number not in {c.number for c in await dispatch.overdue_cases(s, now=clock.now)}
        late = deadline + timedelta(minutes=1)
        clock.now = late
        on_late = lambda: [r for r in runs if r.at == late]  # noqa: E731  (passes read late)
        await until(timer, lambda: len(on_late()) >= 3)
        assert await _of_case(s, number) == [("due_soon", deadline), ("overdue", deadline)]
        first, *others = on_late()
        assert first.sent > 0 and [r.sent for r in others] == [0] * len(others)
        assert number in {c.number for c in await dispatch.overdue_cases(s, now=clock.now)}
        answer = await client.get(f"/api/reminders?after={cursor}",
                                  headers={"Authorization": f"Bearer {token}"})
        later = (await answer.json())["reminders"]
        assert [r["kind"] for r in later if r["case_number"] == number] == ["overdue"]
    finally:
        await timer.close()
    assert timer.failures == 0 and timer.sent == sum(r.sent for r in runs)


async def test_a_pass_that_fails_on_a_database_error_does_not_stop_the_next(
        sessions, db_url, caplog: pytest.LogCaptureFixture) -> None:
    await seed_demo(db_url)
    number = await _dispatched(sessions, "repair", timedelta(0))
    deadline = (await get_case(sessions, number)).deadline
    async with sessions() as session, session.begin():  # a real error from the database
        await session.execute(text("ALTER TABLE case_reminders RENAME TO case_reminders_away"))
    caplog.set_level(logging.INFO, logger=TIMER_LOG)
    timer = ReminderTimer(sessions, TICK, clock=FixedClock(deadline - timedelta(hours=1)))
    timer.start()
    try:
        await until(timer, lambda: timer.failures >= 2)
        assert timer.last is not None and timer.last.sent == 0
        assert timer.last.error is not None and timer.last.error.startswith(
            "database unavailable: ") and "case_reminders" in timer.last.error
        async with sessions() as session, session.begin():
            await session.execute(text(
                "ALTER TABLE case_reminders_away RENAME TO case_reminders"))
        await until(timer, lambda: timer.sent > 0)
        assert timer.last.error is None
    finally:
        await timer.close()
    assert await _of_case(sessions, number) == [("due_soon", deadline)]
    failed = [r for r in caplog.records if r.name == TIMER_LOG and r.levelno == logging.WARNING]
    assert len(failed) == timer.failures  # one line a failed pass, no traceback
    assert all(r.exc_info is None and "\n" not in r.getMessage()
               and "next try in 0.05 s" in r.getMessage() for r in failed)


async def test_an_unreachable_database_never_stops_the_timer(
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_tcp_port()  # nothing listens there
    engine = make_engine(f"postgresql+asyncpg://hotline:none@127.0.0.1:{port}/hotline")
    caplog.set_level(logging.INFO, logger=TIMER_LOG)
    try:
        async with reminder_timer(make_session_factory(engine),
                                  DispatchSettings(remind_every_s=TICK)) as timer:
            assert timer is not None
            await until(timer, lambda: timer.failures >= 3)
            assert timer.runs == timer.failures and timer.sent == 0
            assert "database unavailable" in (timer.last.error or "")
            task = timer._task
            assert task is not None and not task.done()
        assert task.cancelled()  # stopped by the service's exit, not by the failures
    finally:
        await engine.dispose()
    failed = [r for r in caplog.records if r.name == TIMER_LOG and r.levelno == logging.WARNING]
    assert len(failed) >= 3 and all(r.exc_info is None for r in failed)
    assert all(str(port) in r.getMessage() or "refused" in r.getMessage().lower()
               for r in failed), [r.getMessage() for r in failed]


async def test_the_setting_and_zero_for_no_timer(tmp_path) -> None:
    sessions = make_session_factory(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    assert Settings().dispatch.remind_every_s == 300
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        DispatchSettings(remind_every_s=-1)
    async with reminder_timer(sessions, DispatchSettings(remind_every_s=0)) as timer:
        assert timer is None
    with pytest.raises(ValueError, match="positive"):
        ReminderTimer(sessions, 0)


async def test_the_control_part_runs_the_timer_and_reports_each_pass(
        sessions, db_url, tmp_path) -> None:
    """hotline/roles/control.py's start_schedules (``serve`` as all, core or control) starts
    the timer; its passes reach the service's metrics and its health report."""
    from hotline.roles.control import start_schedules
    from ivr.ami.client import AmiClient

    await seed_demo(db_url)
    number = await _dispatched(sessions, "garbage", timedelta(days=2, hours=12))
    settings = Settings(state_dir=tmp_path, database={"url": db_url})
    settings.dispatch.remind_every_s = TICK
    settings.survey.return_visit_interval = 0  # no AMI needed: nothing here dials
    settings.retention.purge_interval_hours = 0
    metrics = ServiceMetrics()
    passes = asyncio.Event()
    seen: list[ReminderRun] = []

    def observe(run: ReminderRun) -> None:
        metrics.reminders.observe(run)
        seen.append(run)
        if len(seen) >= 2:
            passes.set()

    async with contextlib.AsyncExitStack() as stack:
        await start_schedules(stack, settings, sessions, AmiClient(settings.ami),
                              on_reminders=observe)
        await asyncio.wait_for(passes.wait(), WITHIN)
    assert ("due_soon", (await get_case(sessions, number)).deadline) in await _of_case(
        sessions, number)
    sent = sum(r.sent for r in seen)
    assert sent >= 1 and seen[1].sent == 0
    exposition = metrics.exposition().decode()
    assert f"hotline_dispatch_reminders_total {float(sent)}" in exposition
    assert "hotline_dispatch_reminder_passes_failed_total 0.0" in exposition
    assert "hotline_dispatch_reminders_last_pass_timestamp_seconds" in exposition
    last = metrics.reminders.health()["last"]
    assert last == seen[-1].to_json() and last["error"] is None


async def test_two_senders_at_once_remind_a_case_once(console: Console) -> None:  # noqa: F811
    """The timer, the console's button and the CLI may run the same pass at the same moment:
    the database keeps one reminder per case, kind and deadline (uq_case_reminders_once), and
    the pass that lost the race finds nothing left to send."""
    sessions = console.sessions
    number = await _dispatched(sessions, "garbage", timedelta(days=2, hours=12))
    at = utcnow()
    first, second = await asyncio.gather(dispatch.send_reminders(sessions, now=at),
                                         dispatch.send_reminders(sessions, now=at))
    sent = [r.case_number for r in first + second if r.case_number == number]
    assert sent == [number]
    async with sessions() as session:
        rows = (await session.scalars(select(CaseReminder).join(
            Case, Case.id == CaseReminder.case_id).where(Case.number == number))).all()
    assert len(rows) == 1
