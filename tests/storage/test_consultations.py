"""Consultation records on SQLite and PostgreSQL, written from call events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import event

from crm.consultations.recorder import ConsultationRecorder, list_consultations
from crm.telephony.events import CallEnded, CallerQueued, CallEventBus, CallStarted, CallStep
from crm.telephony.steps import KeysEntered, QueueJoined, step_from_row

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


async def test_call_events_make_one_complete_consultation(sessions) -> None:
    bus = CallEventBus()
    recorder = ConsultationRecorder(sessions)
    bus.subscribe(recorder.handle)
    recorder.start()
    try:
        # A key press may reach us before the AMI start event: it must not be lost.
        await bus.publish(CallStep("c-1", KeysEntered("5"), at=T0 + timedelta(seconds=1)))
        await bus.publish(CallStarted("c-1", "13800138000", "张三", "PJSIP/gw-1", at=T0))
        await bus.publish(CallEnded("c-1", "agent", "16", at=T0 + timedelta(seconds=42.5)))
        await recorder.drain()
    finally:
        await recorder.close()

    [view] = await list_consultations(sessions)
    assert (view.call_id, view.caller_number, view.caller_name) == ("c-1", "13800138000", "张三")
    assert view.started_at == T0
    assert view.duration_s == 42.5
    assert view.outcome == "to_agent"
    assert [s["detail"] for s in view.steps] == [{"keys": "5"}]


async def test_a_step_on_a_media_node_is_stored_naming_it(sessions) -> None:
    """In a cluster a step names the media node it happened on: its row's detail keeps it
    (no column, no migration), and the step reads back as itself (the pop, the reports)."""
    recorder = ConsultationRecorder(sessions)
    recorder.start()
    try:
        await recorder.handle(CallStarted("c-2", "13800138000", None, at=T0, node="media-2"))
        await recorder.handle(CallStep("c-2", KeysEntered("5"), at=T0 + timedelta(seconds=1),
                                       node="media-2"))
        await recorder.handle(CallStep("c-2", KeysEntered("6"), at=T0 + timedelta(seconds=2)))
        await recorder.handle(CallerQueued("c-2", "hotline", 1, at=T0 + timedelta(seconds=3),
                                           node="media-2"))
        await recorder.handle(CallEnded("c-2", "agent", "16", at=T0 + timedelta(seconds=9),
                                        node="media-2"))
        await recorder.drain()
    finally:
        await recorder.close()

    [view] = await list_consultations(sessions)
    assert [s["detail"] for s in view.steps] == [
        {"keys": "5", "node": "media-2"}, {"keys": "6"},
        {"queue": "hotline", "position": 1, "node": "media-2"}]
    assert [step_from_row(s["kind"], s["detail"]) for s in view.steps] == [
        KeysEntered("5"), KeysEntered("6"), QueueJoined("hotline", 1)]


async def test_list_is_newest_first_and_filters_by_phone(sessions) -> None:
    recorder = ConsultationRecorder(sessions)
    recorder.start()
    try:
        for i, phone in enumerate(["111", "222", "111"]):
            await recorder.handle(CallStarted(f"c-{i}", phone, None, at=T0 + timedelta(minutes=i)))
            ended = T0 + timedelta(minutes=i, seconds=5)
            await recorder.handle(CallEnded(f"c-{i}", "", "16", at=ended))
        await recorder.drain()
    finally:
        await recorder.close()

    assert [v.call_id for v in await list_consultations(sessions)] == ["c-2", "c-1", "c-0"]
    assert [v.call_id for v in await list_consultations(sessions, phone="111")] == ["c-2", "c-0"]
    assert all(v.outcome == "caller_hung_up" for v in await list_consultations(sessions))


async def test_failed_subscriber_does_not_stop_others() -> None:
    bus = CallEventBus()
    seen: list[str] = []

    async def broken(event) -> None:
        raise RuntimeError("boom")

    async def good(event) -> None:
        seen.append(event.call_id)

    bus.subscribe(broken)
    bus.subscribe(good)
    await bus.publish(CallStarted("c-9", None, None))
    assert seen == ["c-9"]


async def test_a_consultation_created_with_its_start_is_not_updated_for_it(sessions) -> None:
    """The batch that creates a consultation and holds its start inserts the start's fields:
    no UPDATE of the row just inserted (bench.cluster counted 2 updates per call, 1 of them
    this one); the end, later, is the one update."""
    engine = sessions.kw["bind"].sync_engine
    updates: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE CONSULTATIONS"):
            updates.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    recorder = ConsultationRecorder(sessions)
    # Handed over before the writer starts: its first batch holds both (one transaction).
    await recorder.handle(CallStarted("c-9", "13800138000", "张三", "PJSIP/gw-1", at=T0))
    await recorder.handle(CallStep("c-9", KeysEntered("1"), at=T0 + timedelta(seconds=2)))
    recorder.start()
    try:
        await recorder.drain()
        assert updates == []
        await recorder.handle(CallEnded("c-9", "end", "16", at=T0 + timedelta(seconds=9)))
        await recorder.drain()
    finally:
        await recorder.close()
        event.remove(engine, "before_cursor_execute", seen)

    assert len(updates) == 1
    [view] = await list_consultations(sessions)
    assert (view.caller_number, view.caller_name, view.started_at) == ("13800138000", "张三", T0)
    assert view.duration_s == 9 and [s["detail"] for s in view.steps] == [{"keys": "1"}]
