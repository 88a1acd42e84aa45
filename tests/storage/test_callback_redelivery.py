"""A call event handed to the missed-call watcher a second time (a new control after a
takeover re-reads what the old one handled and never acknowledged, hotline/roles/
callback_watcher_member.py) makes no second request and counts no second merge; a new
watcher learns the calls under way from the events already handled, deciding nothing. On
SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from crm.callbacks import service
from crm.callbacks.models import CallbackDecision
from crm.callbacks.watcher import MissedCallWatcher
from crm.consultations.recorder import ConsultationRecorder
from crm.settings import CallbackSettings
from crm.storage.models import CallbackRequest
from crm.telephony.events import (
    BusEvent,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallEventBus,
    CallStarted,
    CallStep,
)
from crm.telephony.steps import CallbackRequested, LanguageChosen

NUMBER = "13800138011"
SETTINGS = CallbackSettings(min_wait_s=10.0, calling_hours="00:00-24:00")


async def test_the_same_call_s_decision_twice_makes_one_request(sessions) -> None:
    now = datetime.now(UTC)
    call = str(uuid.uuid4())
    first = await service.request_callback(sessions, number=NUMBER, reason="abandoned",
                                           queued_at=now, waited_s=30, call_id=call)
    again = await service.request_callback(sessions, number=NUMBER, reason="abandoned",
                                           queued_at=now, waited_s=30, call_id=call)
    assert not first.repeated and again.repeated
    assert again.request.id == first.request.id and again.request.note is None
    other = str(uuid.uuid4())  # another missed call of the number merges, once
    merged = await service.request_callback(sessions, number=NUMBER, reason="abandoned",
                                            call_id=other)
    merged_again = await service.request_callback(sessions, number=NUMBER,
                                                  reason="abandoned", call_id=other)
    assert merged.merged and not merged.repeated and merged_again.repeated
    [request] = await service.list_pending(sessions)
    assert request.note == "1 more missed call merged"
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CallbackDecision)) == 2


class Steps:
    def __init__(self) -> None:
        self.requested: list[CallStep] = []

    async def handle(self, event: object) -> None:
        if isinstance(event, CallStep) and isinstance(event.step, CallbackRequested):
            self.requested.append(event)


def missed_call(call_id: str, start: datetime) -> list[BusEvent]:
    left = start + timedelta(seconds=25)
    return [CallStarted(call_id, NUMBER, None, at=start),
            CallStep(call_id, LanguageChosen("ko", "key"), at=start),
            CallerQueued(call_id, "hotline", 1, NUMBER, at=start),
            CallerAbandoned(call_id, "hotline", 1, 1, 25, at=left),
            CallEnded(call_id, "agent", "16", at=left)]


async def test_a_taken_over_watcher_learns_the_call_and_a_redelivery_changes_nothing(
        sessions) -> None:
    bus = CallEventBus()
    recorder = ConsultationRecorder(sessions)
    bus.subscribe(recorder.handle)
    recorder.start()
    steps = Steps()
    bus.subscribe(steps.handle)
    call_id = str(uuid.uuid4())
    events = missed_call(call_id, datetime.now(UTC))
    try:
        for event in events:
            await recorder.handle(event)
        await recorder.drain()
        old = MissedCallWatcher(sessions, bus, SETTINGS, settle=recorder.drain)
        for event in events[:3]:  # handled and acknowledged
            await old.handle_through(event)
        await old.handle_through(events[3])  # handled, its acknowledgement lost (killed)
        await old.close()
        [request] = await service.list_pending(sessions)
        assert (request.reason, request.language, request.waited_s) == ("abandoned", "ko",
                                                                          25.0)
        assert request.consultation_id is not None

        new = MissedCallWatcher(sessions, bus, SETTINGS, settle=recorder.drain)
        for event in events[:3]:
            await new.learn(event)  # nothing decided from what was acknowledged
        assert new.first_queued(call_id) is not None and new.language_of(call_id) == "ko"
        for event in events[3:]:  # the unacknowledged ones again, then the rest
            await new.handle_through(event)
        await new.close()
        [again] = await service.list_pending(sessions)
        assert (again.id, again.note, again.waited_s) == (request.id, None, 25.0)
        async with sessions() as session:
            assert await session.scalar(
                select(func.count()).select_from(CallbackRequest)) == 1
        assert len(steps.requested) == 1, steps.requested
    finally:
        await recorder.close()


async def test_learning_decides_nothing(sessions) -> None:
    bus = CallEventBus()
    watcher = MissedCallWatcher(sessions, bus, SETTINGS)
    for event in missed_call(str(uuid.uuid4()), datetime.now(UTC)):
        await watcher.learn(event)
    await watcher.drain()
    assert await service.list_pending(sessions) == []
    await watcher.close()


class FailingFirst:
    """The sessions of the database, the first ``n`` opened failing (the database away)."""

    def __init__(self, sessions, n: int) -> None:
        self._sessions = sessions
        self.left = n

    def __call__(self):
        if self.left > 0:
            self.left -= 1
            raise ConnectionRefusedError("the database does not answer")
        return self._sessions()


async def test_a_decision_that_could_not_be_written_raises_and_is_taken_when_handed_again(
        sessions) -> None:
    """The group leaves such an event pending: handed over again, with the call's state as
    it was before (the abandon of a call already ended takes the call off the ended ones),
    it makes the request."""
    bus = CallEventBus()
    flaky = FailingFirst(sessions, 1)
    watcher = MissedCallWatcher(flaky, bus, SETTINGS)  # type: ignore[arg-type]
    call_id = str(uuid.uuid4())
    *started, abandon, ended = missed_call(call_id, datetime.now(UTC))
    for event in [*started, ended]:  # Asterisk may report the hang-up before the abandon
        await watcher.handle_through(event)
    try:
        await watcher.handle_through(abandon)
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("a request that could not be written did not raise")
    assert await service.list_pending(sessions) == []
    await watcher.handle_through(abandon)
    [request] = await service.list_pending(sessions)
    assert (request.caller_number, request.reason, request.waited_s) == (NUMBER, "abandoned",
                                                                          25.0)
    await watcher.close()
