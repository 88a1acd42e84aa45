"""Screen pops from the call's events the desk hub holds, on SQLite and PostgreSQL: a pop is
shown with the whole IVR transcript while the consultation writer is stalled on a locked
database, and a call whose start the hub did not see (a restart) still pops with every step,
written or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text

from crm.agents.accounts import get_agent
from crm.cases.lookup import LookupGuard
from crm.consultations.recorder import ConsultationRecorder
from crm.demo_data import seed_demo
from crm.i18n.catalogs import translator
from crm.live.desk_hub import DeskHub
from crm.live.screen_pop import build_screen_pop, summarise_steps
from crm.storage.db import SessionFactory, make_engine
from crm.storage.models import Case, Resident, utcnow
from crm.telephony.events import AgentRinging, CallEventBus, CallStarted, CallStep
from crm.telephony.steps import (
    CaseLookedUp,
    KeysEntered,
    LanguageChosen,
    RecordingStarted,
    RouteChosen,
    StatusTold,
    VerificationResult,
)
from tests.scripted_ivr import keys, run_scripted_call

PHONE = "13800138000"
ZH = translator("zh_CN")
"""The desk's language when the agent chose none (the hotline's default)."""
"""张三 in the demo data: Mandarin on file, the contact phone of their case."""


class DeskSocket:
    """An agent's open desk (the websocket side of it): keeps what the hub sends."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def send_json(self, data: Any) -> None:
        self.messages.append(data)

    async def close(self) -> None:
        return None

    def pops(self) -> list[dict[str, Any]]:
        return [m["call"] for m in self.messages if m["type"] == "pop"]


@asynccontextmanager
async def writes_stalled(db_url: str) -> AsyncIterator[None]:
    """Another connection holds the consultations' write lock until the block ends: writers
    wait for it, readers do not (PostgreSQL EXCLUSIVE table lock; SQLite's write lock, WAL)."""
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(text("LOCK TABLE consultations IN EXCLUSIVE MODE"))
            else:
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                await conn.rollback()
    finally:
        await engine.dispose()


async def _case_of_zhang_san(sessions: SessionFactory, db_url: str) -> str:
    await seed_demo(db_url)
    async with sessions() as s:
        return await s.scalar(select(Case.number).join(Resident).where(Resident.name == "张三"))


@asynccontextmanager
async def hotline(sessions: SessionFactory) -> AsyncIterator[
        tuple[CallEventBus, ConsultationRecorder, DeskHub, DeskSocket]]:
    """The bus with the consultation recorder and the desk hub on it, as the service wires
    them, and agent1 signed in at a desk."""
    bus = CallEventBus()
    recorder = ConsultationRecorder(sessions, retry_delay=0.05)
    bus.subscribe(recorder.handle)
    recorder.start()
    hub = DeskHub(sessions)
    bus.subscribe(hub.handle)
    hub.start()
    socket = DeskSocket()
    try:
        hub.sign_in(await get_agent(sessions, "agent1"))
        hub.attach("agent1", socket)
        yield bus, recorder, hub, socket
    finally:
        await hub.close()
        await recorder.close()


def _ringing(call_id: str) -> AgentRinging:
    return AgentRinging(call_id, "hotline", "PJSIP/2001", "2001", "王芳", PHONE, "张三",
                        "PJSIP/gw-00000001")


async def test_a_pop_is_shown_with_the_whole_ivr_transcript_while_the_writer_is_stalled(
        sessions: SessionFactory, db_url: str) -> None:
    number = await _case_of_zhang_san(sessions, db_url)
    async with hotline(sessions) as (bus, recorder, hub, socket), writes_stalled(db_url):
        call = await run_scripted_call(sessions, LookupGuard(sessions), PHONE, {
            "greeting": keys("1"), "ask_case_number": keys(number + "#"),
            "confirm_case_number": keys("1"), "after_status_menu": keys("2")},
            bus=bus, ended=False)
        await bus.publish(_ringing(call.call_id))
        await hub.wait_for(lambda: bool(socket.pops()), within=10)
        # Nothing of the call is in the database yet: the writer still waits for the lock.
        assert recorder.written == 0 and recorder.pending == len(call.steps) + 2
        [shown] = socket.pops()
    pop = shown["pop"]
    assert (shown["call_id"], shown["phase"]) == (call.call_id, "ringing")
    expected = summarise_steps((e.at.isoformat(), e.step) for e in call.steps)
    # The desk's language (the default: Chinese) for the agent; English for the API.
    assert [line["text"] for line in pop["ivr"]["transcript"]] == [
        line.text_in(ZH) for line in expected.transcript]
    texts = [line["text"] for line in pop["ivr"]["transcript"]]
    assert texts[:2] == ["语言：普通话（来自居民档案）", "按键：1"]
    assert f"已确认工单号：{number}" in texts
    assert "来电人已通过来电号码验证" in texts
    assert f"已告知工单 {number} 状态为办理中（完整进度）" in texts
    assert texts[-2:] == ["按键：2", "转至人工坐席（告知进度后）"]
    english = [line.text for line in expected.transcript]
    assert english[:2] == ["Language Mandarin (by the resident's profile)", "Keyed: 1"]
    assert english[-1] == "Routed to an agent (after the status)"
    assert pop["ivr"]["path"][:2] == ["greeting", "ask_case_number"]
    assert (pop["ivr"]["verified"], pop["ivr"]["asked_case"]) == (True, number)
    # The history came from the database meanwhile: the resident and the case asked about.
    assert pop["resident"]["name"] == "张三" and pop["case"]["number"] == number
    assert pop["caller"]["name"] == "来电" and pop["consultation_id"] is None

    # Once written, the database tells the same story.
    await recorder.drain()
    stored = await build_screen_pop(sessions, call.call_id)
    assert stored.consultation_id is not None
    assert [line.to_json(ZH) for line in stored.ivr.transcript] == pop["ivr"]["transcript"]


async def test_a_call_whose_start_the_hub_missed_pops_with_written_and_unwritten_steps(
        sessions: SessionFactory, db_url: str) -> None:
    """The service restarted mid-call: the steps from before are in the database, those
    since are only in the hub's memory while the writer is stalled. The pop has them all."""
    number = await _case_of_zhang_san(sessions, db_url)
    call_id, start = "restarted", utcnow() - timedelta(seconds=30)
    before = [CallStarted(call_id, PHONE, "张三", "PJSIP/gw-1", at=start),
              CallStep(call_id, LanguageChosen("cmn", "profile"),
                       at=start + timedelta(seconds=1)),
              CallStep(call_id, CaseLookedUp(number, True), at=start + timedelta(seconds=2))]
    earlier = ConsultationRecorder(sessions)
    earlier.start()
    for event in before:
        await earlier.handle(event)
    await earlier.drain()
    await earlier.close()

    since = [CallStep(call_id, VerificationResult(by="calling_number"),
                      at=start + timedelta(seconds=3)),
             CallStep(call_id, StatusTold(number, "in_progress", True),
                      at=start + timedelta(seconds=4)),
             CallStep(call_id, KeysEntered("2"), at=start + timedelta(seconds=5)),
             CallStep(call_id, RouteChosen("agent", "after status"),
                      at=start + timedelta(seconds=6))]
    async with hotline(sessions) as (bus, recorder, hub, socket), writes_stalled(db_url):
        for event in since:
            await bus.publish(event)
        await bus.publish(_ringing(call_id))
        await hub.wait_for(lambda: bool(socket.pops()), within=10)
        assert recorder.written == 0
        [shown] = socket.pops()
    texts = [line["text"] for line in shown["pop"]["ivr"]["transcript"]]
    assert texts == ["语言：普通话（来自居民档案）", f"查询工单 {number}：已找到",
                     "来电人已通过来电号码验证",
                     f"已告知工单 {number} 状态为办理中（完整进度）", "按键：2",
                     "转至人工坐席（告知进度后）"]
    assert shown["pop"]["consultation_id"] is not None  # read with the written steps
    assert shown["pop"]["caller"]["name"] == "张三"


async def test_the_pop_is_built_when_the_ivr_hands_the_caller_over_not_at_the_ring(
        sessions: SessionFactory, db_url: str) -> None:
    """A ring-all queue rings its agents milliseconds after the caller joins it: the pop's
    database reads happen when the IVR routes the caller to an agent, so the ring only
    pushes what is ready."""
    number = await _case_of_zhang_san(sessions, db_url)
    built: list[tuple[str, bool]] = []
    rung = False

    async def counting_builder(sessions: SessionFactory, call_id: str, **kwargs: Any) -> Any:
        built.append((call_id, rung))
        return await build_screen_pop(sessions, call_id, **kwargs)

    async with hotline(sessions) as (bus, _recorder, hub, socket):
        hub.pop_builder = counting_builder
        call = await run_scripted_call(sessions, LookupGuard(sessions), PHONE, {
            "greeting": keys("1"), "ask_case_number": keys(number + "#"),
            "confirm_case_number": keys("1"), "after_status_menu": keys("2")},
            bus=bus, ended=False)
        await hub.drain()  # the route step is handled: its pop is being built
        # After the hand-over, before the ring: the queue call starts recording.
        await bus.publish(CallStep(call.call_id, RecordingStarted("/rec/x.wav", "hotline")))
        rung = True
        await bus.publish(_ringing(call.call_id))
        await hub.wait_for(lambda: bool(socket.pops()), within=10)
        [shown] = socket.pops()
    assert built == [(call.call_id, False)]  # once, before the ring
    assert shown["pop"]["case"]["number"] == number
    assert shown["pop"]["ivr"]["recording"] is True  # the later step is in the pop
