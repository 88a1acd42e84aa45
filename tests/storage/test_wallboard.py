"""The live wallboard: queue state from bus events, today's counters, and the rebuild from
QueueStatus after an AMI reconnect (the queue tracker's QueueSnapshot), so nothing drifts."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

from crm.consultations.recorder import apply_event
from crm.live.wallboard import Wallboard
from crm.storage.db import SessionFactory
from crm.telephony.events import (
    AgentAnswered,
    AgentStatusChanged,
    BusEvent,
    CallerAbandoned,
    CallerQueued,
    CallEventBus,
    CallStarted,
    QueueSnapshot,
)
from ivr.ami.codec import AmiEvent
from ivr.asterisk.queue_tracker import QueueTracker

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class Socket:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def send_json(self, data: Any) -> None:
        self.messages.append(data)

    async def close(self) -> None:
        pass


def status(ext: str, state: str, name: str) -> AgentStatusChanged:
    return AgentStatusChanged(f"PJSIP/{ext}", ext, "hotline", state, state == "paused", name)


async def _board(sessions: SessionFactory, clock: Clock) -> Wallboard:
    board = Wallboard(sessions, queue="hotline", tz=TZ, clock=clock)
    await board.start()
    return board


async def test_waiting_callers_agents_and_todays_counters(sessions: SessionFactory) -> None:
    clock = Clock()
    board = await _board(sessions, clock)
    socket = Socket()
    board.attach(socket)
    try:
        for event in (status("2001", "available", "王芳"), status("2002", "on_call", "Kim"),
                      status("2003", "paused", "陈静"),
                      CallerQueued("a", "hotline", 1, channel="PJSIP/gw-a",
                                   at=NOW - timedelta(seconds=50)),
                      CallerQueued("b", "hotline", 2, channel="PJSIP/gw-b",
                                   at=NOW - timedelta(seconds=10)),
                      CallerQueued("other", "elsewhere", 1)):
            await board.handle(event)
        await board.drain()
        state = board.state()
        assert state["waiting"] == {"count": 2, "longest_wait_s": 50,
                                    "longest_since": (NOW - timedelta(seconds=50)).isoformat()}
        assert state["agents"] == {"available": 1, "ringing": 0, "on_call": 1, "paused": 1,
                                   "unavailable": 0, "unreachable": 0, "total": 3}
        assert [m["name"] for m in state["members"]] == ["Kim", "王芳", "陈静"]

        await board.handle(AgentAnswered("a", "hotline", "PJSIP/2001", "2001", hold_time_s=12))
        await board.handle(CallerAbandoned("b", "hotline", 1, 2, 30))
        await board.handle(AgentAnswered("c", "hotline", "PJSIP/2002", "2002", hold_time_s=45))
        await board.handle(status("2003", "logged_out", "陈静"))
        await board.drain()
        state = board.state()
        assert state["waiting"]["count"] == 0 and state["agents"]["total"] == 2
        assert state["today"] == {"date": "2026-11-22", "answered": 2, "answered_within": 1,
                                  "service_level_s": 20, "abandoned": 1}
        assert socket.messages[-1]["today"]["abandoned"] == 1
        assert socket.messages[-1]["type"] == "wallboard"
        assert len(socket.messages) < 10  # bursts go out once

        clock.now = NOW + timedelta(hours=12)  # past midnight in Shanghai: a new day
        assert board.state()["today"]["answered"] == 0
        assert board.state()["today"]["date"] == "2026-11-23"
    finally:
        await board.close()


async def test_a_snapshot_after_a_reconnect_replaces_what_was_missed(
        sessions: SessionFactory) -> None:
    clock = Clock()
    # What the consultation recorder wrote today, including an answer the wallboard missed
    # while the AMI was down, and one from yesterday that does not count.
    async with sessions() as session, session.begin():
        for call_id, at in (("seen", NOW), ("missed", NOW), ("yesterday", NOW - timedelta(1))):
            await apply_event(session, CallStarted(call_id, "13800138000", None, at=at))
            await apply_event(session, AgentAnswered(call_id, "hotline", "PJSIP/2001", "2001",
                                                     hold_time_s=5, at=at))
    board = await _board(sessions, clock)
    try:
        assert board.state()["today"]["answered"] == 2  # loaded at start
        for event in (status("2001", "available", "王芳"), status("2002", "available", "Kim"),
                      CallerQueued("gone", "hotline", 1, channel="PJSIP/gw-gone"),
                      CallerQueued("stays", "hotline", 2, channel="PJSIP/gw-stays",
                                   at=NOW - timedelta(seconds=40))):
            await board.handle(event)
        await board.drain()
        assert board.state()["waiting"]["count"] == 2

        # Meanwhile (events lost): "gone" abandoned, a new caller joined, 2002 left.
        clock.now = NOW + timedelta(seconds=30)
        await board.handle(await _resync_snapshot(clock.now))
        await board.drain()
        state = board.state()
        assert state["waiting"]["count"] == 2
        assert state["waiting"]["longest_wait_s"] == 70  # "stays" keeps when it joined
        assert [m["name"] for m in state["members"]] == ["王芳"]
        assert state["agents"]["on_call"] == 1 and state["resyncs"] == 1
        assert state["today"]["answered"] == 2  # recounted from the database

        await board.handle(AgentAnswered("stays", "hotline", "PJSIP/2001", "2001", 3))
        await board.drain()
        assert board.state()["waiting"]["count"] == 1  # the caller only QueueStatus knew of
    finally:
        await board.close()


class FakeAmi:
    """QueueStatus as Asterisk 22 answers it: params, members, entries (and no channels)."""

    def __init__(self) -> None:
        self.ready: list[Any] = []

    def subscribe(self, pattern: str, handler: Any) -> Any:
        return lambda: None

    def on_ready(self, handler: Any) -> Any:
        self.ready.append(handler)
        return lambda: None

    async def action_list(self, name: str, **fields: str) -> list[AmiEvent]:
        if name == "CoreShowChannels":  # which caller each member talks to: none here
            return []
        assert name == "QueueStatus"
        return [
            AmiEvent("QueueParams", {"Queue": "hotline", "Calls": "2"}),
            AmiEvent("QueueMember", {"Queue": "hotline", "Name": "王芳",
                                     "Location": "PJSIP/2001", "StateInterface": "PJSIP/2001",
                                     "Status": "2", "Paused": "0", "InCall": "1"}),
            AmiEvent("QueueEntry", {"Queue": "hotline", "Position": "1",
                                    "Channel": "PJSIP/gw-stays", "CallerIDNum": "13800138000",
                                    "Wait": "70"}),
            AmiEvent("QueueEntry", {"Queue": "hotline", "Position": "2",
                                    "Channel": "PJSIP/gw-new", "Wait": "5"}),
            AmiEvent("QueueParams", {"Queue": "other", "Calls": "0"}),
        ]


async def _resync_snapshot(now: datetime) -> QueueSnapshot:
    """Run the queue tracker's resync against the fake AMI; return its QueueSnapshot."""
    bus = CallEventBus()
    published: list[BusEvent] = []

    async def collect(event: BusEvent) -> None:
        published.append(event)

    bus.subscribe(collect)
    ami = FakeAmi()
    tracker = QueueTracker(ami, bus, queues=("hotline",))  # type: ignore[arg-type]
    tracker.members[("hotline", "PJSIP/2002")] = status("2002", "available", "Kim")
    await tracker.resync()
    kinds = [type(e).__name__ for e in published]
    assert kinds == ["AgentStatusChanged", "AgentStatusChanged", "QueueSnapshot"]
    assert [(e.extension, e.status) for e in published[:2]] == [("2001", "on_call"),
                                                                 ("2002", "logged_out")]
    snapshot = published[-1]
    assert isinstance(snapshot, QueueSnapshot)
    assert [(w.channel, w.wait_s) for w in snapshot.waiting] == [("PJSIP/gw-stays", 70),
                                                                 ("PJSIP/gw-new", 5)]
    return QueueSnapshot(snapshot.queue, snapshot.members, snapshot.waiting, at=now)


async def test_the_language_desks_count_as_the_hotline(sessions: SessionFactory) -> None:
    """Callers in the language queues (hotline-en, ...) are waiting callers of the hotline;
    one queue's snapshot leaves the callers of the others; answers from every hotline queue
    are counted today, other queues' are not."""
    clock = Clock()
    async with sessions() as session, session.begin():
        for call_id, queue in (("cmn", "hotline"), ("en", "hotline-en"), ("x", "elsewhere")):
            await apply_event(session, CallStarted(call_id, "13800138000", None, at=NOW))
            await apply_event(session, AgentAnswered(call_id, queue, "PJSIP/2001", "2001",
                                                     hold_time_s=5, at=NOW))
    board = Wallboard(sessions, queue="hotline", queues=("hotline", "hotline-en", "hotline-ko"),
                      tz=TZ, clock=clock)
    await board.start()
    try:
        assert board.state()["today"]["answered"] == 2
        for event in (CallerQueued("a", "hotline", 1, channel="PJSIP/gw-a"),
                      CallerQueued("b", "hotline-en", 1, channel="PJSIP/gw-b"),
                      CallerQueued("c", "hotline-ko", 1, channel="PJSIP/gw-c"),
                      CallerQueued("d", "elsewhere", 1, channel="PJSIP/gw-d"),
                      status("2001", "available", "王芳")):
            await board.handle(event)
        await board.drain()
        assert board.state()["waiting"]["count"] == 3
        # The Korean desk's snapshot: c has left it; the others' callers stay.
        await board.handle(QueueSnapshot("hotline-ko", (status("2001", "available", "王芳"),), ()))
        await board.drain()
        assert board.state()["waiting"]["count"] == 2
        await board.handle(QueueSnapshot("hotline", (status("2001", "available", "王芳"),), (),))
        await board.drain()
        state = board.state()
        assert state["waiting"]["count"] == 1 and state["agents"]["total"] == 1
    finally:
        await board.close()


async def test_stopping_while_a_resync_settles_does_not_hang(sessions: SessionFactory) -> None:
    """CI hung once in teardown: the wallboard's writer was told to stop in the very loop
    step in which the recorder's drain it waited on (after a QueueSnapshot) completed, and
    Python 3.11's ``asyncio.wait_for`` then swallows the cancellation: the writer went on
    waiting for the next event and ``close()`` waited for it for ever."""
    import asyncio

    entered = asyncio.Event()
    released: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def settle() -> None:
        entered.set()
        await released

    board = Wallboard(sessions, queue="hotline", tz=TZ, clock=Clock(), settle=settle)
    await board.start()
    await board.handle(QueueSnapshot("hotline"))
    await asyncio.wait_for(entered.wait(), 5)
    released.set_result(None)  # the drain completes in the same step as the stop below
    await asyncio.wait_for(board.close(), 5)
