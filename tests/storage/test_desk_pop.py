"""Screen pops from the database and queue events in consultations, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from crm.agents.accounts import get_agent
from crm.audit import log as audit
from crm.cases.lookup import LookupGuard
from crm.consultations.recorder import ConsultationRecorder
from crm.consultations.service import get_consultation
from crm.demo_data import seed_demo
from crm.live.desk_hub import DeskHub
from crm.live.screen_pop import build_screen_pop
from crm.storage.db import SessionFactory
from crm.storage.journal import json_journal
from crm.storage.models import Agent, Case, Consultation, Resident, utcnow
from crm.storage.write_behind import Backoff
from crm.telephony.events import (
    AgentAnswered,
    AgentCallEnded,
    AgentRinging,
    AgentStatusChanged,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallStarted,
    CallStep,
)
from crm.telephony.steps import (
    CaseLookedUp,
    LanguageChosen,
    RecordingStarted,
    RouteChosen,
    StatusTold,
    VerificationResult,
)
from crm.web.api.routes import API_VIEWER_ROLE
from tests.scripted_ivr import keys, run_scripted_call, said

PHONE = "13800138000"


async def _seed(sessions: SessionFactory, db_url: str) -> str:
    await seed_demo(db_url)
    async with sessions() as s:
        return await s.scalar(select(Case.number).join(Resident).where(Resident.name == "张三"))


async def _record(sessions: SessionFactory, *events: object) -> ConsultationRecorder:
    recorder = ConsultationRecorder(sessions)
    recorder.start()
    for event in events:
        await recorder.handle(event)  # type: ignore[arg-type]
    await recorder.drain()
    await recorder.close()
    return recorder


async def test_pop_shows_resident_case_ivr_and_last_five_calls(sessions: SessionFactory,
                                                               db_url: str) -> None:
    number = await _seed(sessions, db_url)
    start = utcnow() - timedelta(days=10)
    old = []
    for i in range(6):
        at = start + timedelta(days=i)
        old += [CallStarted(f"old-{i}", PHONE, "张三", at=at), CallEnded(f"old-{i}", "end", "16",
                                                                        at=at)]
    await _record(sessions, *old,
                  CallStarted("now", PHONE, "张三", "PJSIP/gw-1"),
                  CallStep("now", LanguageChosen("cmn", "profile")),
                  CallStep("now", CaseLookedUp(number, True)),
                  CallStep("now", VerificationResult(by="calling_number")),
                  CallStep("now", StatusTold(number, "in_progress", verified=True)),
                  CallStep("now", RouteChosen("agent", "after status")))
    pop = await build_screen_pop(sessions, "now")
    assert pop.consultation_id is not None
    assert pop.resident is not None and pop.resident.name == "张三"
    assert pop.ivr.verified is True and pop.ivr.asked_case == number
    assert pop.case is not None and pop.case.stage == "in_progress"
    assert [h.to_stage for h in pop.case.history] == ["accepted", "in_progress"]
    assert [c.call_id for c in pop.recent] == ["old-5", "old-4", "old-3", "old-2", "old-1"]
    assert [c.number for c in pop.resident_cases] == [number]
    shown = pop.to_json(viewer_role="agent")
    assert shown["caller"]["number"] == "138********"
    assert shown["new_case"]["category"] == "repair"
    assert shown["new_case"]["address"] == pop.case.address


async def test_pop_for_an_unknown_caller_before_anything_is_written(
        sessions: SessionFactory, db_url: str) -> None:
    await _seed(sessions, db_url)
    pop = await build_screen_pop(sessions, "no-such-call", caller_number="13311112222",
                                 caller_name="王五")
    assert (pop.consultation_id, pop.resident, pop.case, pop.recent) == (None, None, None, ())
    assert pop.to_json(viewer_role="agent")["caller"] == {
        "number": "133********", "name": "王五", "known": False}


async def test_queue_events_become_steps_agent_resident_and_outcome(
        sessions: SessionFactory, db_url: str) -> None:
    await _seed(sessions, db_url)
    call = "answered"
    await _record(
        sessions,
        CallStarted(call, PHONE, "张三", "PJSIP/gw-1"),
        CallerQueued(call, "hotline", 1, PHONE, "张三", "PJSIP/gw-1"),
        AgentRinging(call, "hotline", "PJSIP/2001", "2001", "王芳", PHONE, "张三", "PJSIP/gw-1"),
        AgentAnswered(call, "hotline", "PJSIP/2001", "2001", "王芳", PHONE, "张三", "PJSIP/gw-1",
                      hold_time_s=3, ring_time_s=1),
        CallStep(call, RecordingStarted("/var/spool/asterisk/monitor/answered.wav")),
        AgentCallEnded(call, "hotline", "PJSIP/2001", "2001", 40, "caller"),
        AgentStatusChanged("PJSIP/2001", "2001", "hotline", "available"),  # not recorded
        CallEnded(call, "agent", "16"))
    async with sessions() as s:
        consultation = await s.scalar(select(Consultation).where(Consultation.call_id == call))
        agent_login = await s.scalar(select(Agent.login).where(
            Agent.id == consultation.agent_id))
        count = len((await s.scalars(select(Consultation))).all())
    assert count == 1
    detail = await get_consultation(sessions, consultation.id)
    assert agent_login == "agent1" and detail.resident_name == "张三"
    assert detail.outcome == "to_agent"
    kinds = [s["kind"] for s in detail.steps]
    assert kinds == ["queued", "agent_ringing", "agent_answered", "recording", "agent_completed"]
    assert detail.steps[3]["detail"]["file"].endswith("answered.wav")

    await _record(sessions, CallStarted("gave-up", PHONE, "张三"),
                  CallerQueued("gave-up", "hotline", 1),
                  CallerAbandoned("gave-up", "hotline", 1, 1, 20),
                  CallEnded("gave-up", "agent", "16"))
    async with sessions() as s:
        abandoned = await s.scalar(select(Consultation).where(Consultation.call_id == "gave-up"))
    assert abandoned.outcome == "abandoned" and abandoned.agent_id is None


async def test_an_answer_re_announced_after_an_ami_login_is_not_a_second_step(
        sessions: SessionFactory, db_url: str) -> None:
    await _seed(sessions, db_url)
    answered = AgentAnswered("seen", "hotline", "PJSIP/2001", "2001", "王芳", PHONE, "张三",
                             hold_time_s=3)
    again = AgentAnswered("seen", "hotline", "PJSIP/2001", "2001", "王芳", PHONE, "张三",
                          resynchronised=True)
    missed = AgentAnswered("missed", "hotline", "PJSIP/2001", "2001", "王芳", PHONE, "张三",
                           resynchronised=True)
    await _record(sessions, CallStarted("seen", PHONE, "张三"), answered, again,
                  CallStarted("missed", PHONE, "张三"), missed)
    async with sessions() as s:
        by_call = {c.call_id: c for c in (await s.scalars(select(Consultation))).all()}
    seen = await get_consultation(sessions, by_call["seen"].id)
    assert [s["kind"] for s in seen.steps] == ["agent_answered"]
    assert "resynchronised" not in seen.steps[0]["detail"]
    # An answer that happened while AMI was down is only known from the resynchronisation.
    found = await get_consultation(sessions, by_call["missed"].id)
    assert [(s["kind"], s["detail"].get("resynchronised")) for s in found.steps] == [
        ("agent_answered", True)]
    assert by_call["missed"].agent_id == by_call["seen"].agent_id is not None


async def test_an_agent_who_signs_in_mid_call_gets_the_pop_of_that_call(
        sessions: SessionFactory, db_url: str) -> None:
    """After a restart the queue tracker re-announces live connections before anyone has
    signed in again; the desk shows the call once its agent is back."""
    await _seed(sessions, db_url)
    await _record(sessions, CallStarted("live", PHONE, "张三"))
    hub = DeskHub(sessions)
    hub.start()
    try:
        await hub.handle(AgentAnswered("live", "hotline", "PJSIP/2001", "2001", "王芳", PHONE,
                                       "张三", "PJSIP/gw-1", resynchronised=True))
        await hub.drain()
        desk = hub.sign_in(await get_agent(sessions, "agent1"))
        assert desk.call is None
        snapshot = await hub.current("agent1")
        assert snapshot is not None and snapshot["call"]["phase"] == "connected"
        assert snapshot["call"]["call_id"] == "live"
        assert snapshot["call"]["pop"]["caller"]["name"] == "张三"

        await hub.handle(CallEnded("live", "agent", "16"))
        await hub.drain()
        assert desk.call is not None and desk.call.phase == "ended"
        other = hub.sign_in(await get_agent(sessions, "agent2"))
        assert other.call is None and (await hub.current("agent2") or {})["call"] is None
    finally:
        await hub.close()


async def test_pop_views_are_audited_behind_the_push_and_survive_a_failed_write(
        sessions: SessionFactory, db_url: str) -> None:
    await _seed(sessions, db_url)
    await _record(sessions, CallStarted("audited", PHONE, "张三"))
    failures = {"left": 1}

    def flaky_sessions():  # the audit writer's first transaction fails
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("database is down")
        return sessions()

    hub = DeskHub(sessions, audit_backoff=Backoff(first=0.01))
    hub.start()
    try:
        desk = hub.sign_in(await get_agent(sessions, "agent1"))
        await hub.handle(AgentRinging("audited", "hotline", "PJSIP/2001", "2001", "王芳", PHONE,
                                      "张三", "PJSIP/gw-1"))
        await hub.drain()
        assert desk.call is not None and desk.call.phase == "ringing"
        hub._sessions = flaky_sessions  # type: ignore[assignment]
        assert await hub.current("agent1") is not None  # a reload: one more view
        await hub.drain()  # the first write fails; the view is kept and the retry writes it
        assert failures["left"] == 0 and hub.pending_audits == 0
    finally:
        await hub.close()
    views = [e for e in await audit.entries(sessions, object_type="consultation")
             if e.action == "pop.view"]
    assert [e.detail["via"] for e in views] == ["current-call"]


async def test_pop_views_not_yet_audited_survive_a_crash_in_the_journal(
        sessions: SessionFactory, db_url: str, tmp_path: Path) -> None:
    """The database is down when the desk is reloaded and stays down until the process stops:
    the view waits in the pop-audit journal and the next run writes it, with its own time."""
    await _seed(sessions, db_url)
    await _record(sessions, CallStarted("journaled", PHONE, "张三"))

    def database_down():
        raise ConnectionError("database is down")

    journal = json_journal(tmp_path, "pop-audits")
    hub = DeskHub(sessions, audit_journal=journal)
    hub.start()
    try:
        hub.sign_in(await get_agent(sessions, "agent1"))
        await hub.handle(AgentRinging("journaled", "hotline", "PJSIP/2001", "2001", "王芳",
                                      PHONE, "张三", "PJSIP/gw-1"))
        await hub.drain()
        hub._sessions = database_down  # type: ignore[assignment]
        before = utcnow()
        assert await hub.current("agent1") is not None  # a reload: a view to audit
        viewed = utcnow()
        assert hub.pending_audits == 1
    finally:
        await hub.close()  # cannot write it: it stays in the journal
        journal.close()
    assert not [e for e in await audit.entries(sessions) if e.action == "pop.view"]

    journal = json_journal(tmp_path, "pop-audits")
    assert len(journal.pending()) == 1
    restarted = DeskHub(sessions, audit_journal=journal)
    restarted.start()
    try:
        await restarted.drain()
    finally:
        await restarted.close()
    [view] = [e for e in await audit.entries(sessions) if e.action == "pop.view"]
    assert (view.actor, view.detail["via"], view.detail["call_id"]) == (
        "agent:agent1", "current-call", "journaled")
    assert before <= view.at.replace(tzinfo=before.tzinfo) <= viewed
    assert journal.pending() == []
    journal.close()


# -- the verification digits a caller enters are kept nowhere -----------------------------------
def _leaks(data: object, secret: str, *known: str) -> bool:
    """Does ``secret`` appear in ``data`` once the known non-secret values (the case number,
    the call id) are cut out of it?"""
    text = json.dumps(data, ensure_ascii=False)
    for value in known:
        text = text.replace(value, "|")
    return secret in text


async def _call_entering_digits(sessions: SessionFactory, db_url: str, answer: list[object],
                                caller: str | None = "13911112222") -> tuple[str, str, int]:
    number = await _seed(sessions, db_url)
    recorder = ConsultationRecorder(sessions)
    recorder.start()
    try:
        call = await run_scripted_call(sessions, LookupGuard(sessions), caller, {
            "greeting": keys(number + "#"), "confirm_case_number": keys("1"),
            "ask_phone_last4": answer, "after_status_menu": keys("2")}, recorder=recorder)
        await recorder.drain()
    finally:
        await recorder.close()
    # What was published on the bus (and so reached the journal, pops and wallboards).
    published = [{"kind": s.kind, "detail": s.detail} for s in call.steps]
    assert not _leaks(published, "8000", number, call.call_id), published
    async with sessions() as s:
        consultation_id = await s.scalar(select(Consultation.id)
                                          .where(Consultation.call_id == call.call_id))
    return number, call.call_id, consultation_id


@pytest.mark.parametrize("answer", [keys("8000"), keys("8000#"),
                                    said("八零零零", digits="8000", confidence=0.8)],
                         ids=["keys", "keys-hash", "speech"])
async def test_verification_digits_are_not_in_steps_pop_or_api(
        sessions: SessionFactory, db_url: str, answer: list[object]) -> None:
    number, call_id, consultation_id = await _call_entering_digits(sessions, db_url, answer)
    detail = await get_consultation(sessions, consultation_id)
    kinds = {s["kind"]: s["detail"] for s in detail.steps}
    assert kinds["verified"] == {"by": "last4", "result": True, "length": 4}
    entered = [s["detail"] for s in detail.steps if s["detail"].get("secret")]
    assert [(d["secret"], d["length"]) for d in entered] == [("verification", 4)]
    assert "八零" not in json.dumps(detail.steps, ensure_ascii=False)
    # Stored steps, and the consultation as the open API returns it (full phone numbers there:
    # look at the steps and the caller, not the case's contact phone).
    api = detail.to_json(viewer_role=API_VIEWER_ROLE)
    assert not _leaks([s["detail"] for s in api["steps"]], "8000", number, call_id)
    assert api["caller_number"] == "13911112222"
    # The pop, for an agent (ringing and connected) and for a supervisor.
    pop = await build_screen_pop(sessions, call_id)
    assert pop.ivr.verified is True and pop.ivr.verified_by == "last4"
    texts = [line.text for line in pop.ivr.transcript]
    assert "Verification by the last four digits of the contact phone: ok" in texts
    for role, reveal in (("agent", False), ("agent", True), ("supervisor", False)):
        shown = pop.to_json(viewer_role=role, reveal=reveal)
        ivr = [line["text"] for line in shown["ivr"]["transcript"]]
        assert not _leaks(ivr, "8000", number, call_id) and "八零" not in "".join(ivr)
        if role == "agent":  # the case's contact phone is masked too
            assert shown["case"]["contact_phone"] == "138********"
            assert not _leaks({k: v for k, v in shown.items() if k not in ("recent",)},
                              "8000", number, call_id, *_timestamps(shown))


def _timestamps(shown: dict) -> list[str]:
    """ISO times in the pop (microseconds may hold any four digits)."""
    case = shown.get("case") or {}
    times = [case.get(k) for k in ("deadline", "created_at", "updated_at")]
    times += [h.get("at") for h in case.get("history", [])]
    times += [line["at"] for line in shown["ivr"]["transcript"]]
    times += [c["created_at"] for c in shown.get("resident_cases", [])]
    return [t for t in times if t]


async def test_a_failed_verification_stores_the_outcome_not_the_guess(
        sessions: SessionFactory, db_url: str) -> None:
    number, call_id, consultation_id = await _call_entering_digits(
        sessions, db_url, keys("4321"), caller=None)
    detail = await get_consultation(sessions, consultation_id)
    assert not _leaks(detail.to_json(viewer_role=API_VIEWER_ROLE)["steps"], "4321", number,
                      call_id, *(s["at"] for s in detail.steps))
    pop = (await build_screen_pop(sessions, call_id)).to_json(viewer_role="agent")
    assert pop["ivr"]["verified"] is False
    assert "Verification by the last four digits of the contact phone: failed" in [
        line["text"] for line in pop["ivr"]["transcript"]]
