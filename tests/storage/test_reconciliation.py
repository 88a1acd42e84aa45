"""Closing, on SQLite and PostgreSQL, the consultations of calls that ended while the service
was down, from Asterisk's record (the lines in tests/data/asterisk/cel_calls.jsonl, recorded
from the test Asterisk): real end, party, the agent who answered, the queue steps, the
``reconciled`` mark, and the service-level figures that read them."""

from __future__ import annotations

from datetime import timedelta

from crm.consultations.reconciliation import close_reconciled
from crm.consultations.recorder import ConsultationRecorder, list_consultations
from crm.consultations.service import get_consultation
from crm.demo_data import seed_demo
from crm.reports.service_levels.calls import classify
from crm.reports.service_levels.reading import load
from crm.storage.db import SessionFactory
from crm.telephony.events import CallEnded, CallStarted, CallStep
from crm.telephony.steps import IvrConnected
from ivr.asterisk.call_records import call_endings, read_events
from tests.unit.test_call_records import ABANDONED, ANSWERED, SAMPLE, at

STARTED = {ANSWERED: at("1796551297.525822"), ABANDONED: at("1796551303.777163")}


async def _record(sessions: SessionFactory, *events: object) -> None:
    recorder = ConsultationRecorder(sessions)
    recorder.start()
    try:
        for event in events:
            await recorder.handle(event)  # type: ignore[arg-type]
        await recorder.drain()
    finally:
        await recorder.close()


async def test_open_calls_are_closed_with_their_recorded_end(sessions: SessionFactory,
                                                             db_url: str) -> None:
    await seed_demo(db_url)
    done_at = STARTED[ANSWERED] - timedelta(minutes=1)
    await _record(
        sessions,
        *(CallStarted(call_id, "13800138000", "张三", "PJSIP/pstn-gateway-00000000", at=t)
          for call_id, t in STARTED.items()),
        *(CallStep(call_id, IvrConnected(True), at=t + timedelta(seconds=0.1))
          for call_id, t in STARTED.items()),
        CallStarted("ended-before", "13900139000", None, None, at=done_at),
        CallEnded("ended-before", "end", "16 Normal Clearing", at=done_at + timedelta(seconds=9),
                  party="ivr"))
    ends = call_endings(read_events(SAMPLE), [*STARTED, "ended-before"])
    assert {e.call_id for e in ends} == set(STARTED)  # the record knows only these two

    assert sorted(await close_reconciled(sessions, ends)) == sorted(STARTED)
    assert await close_reconciled(sessions, ends) == []  # closed once, never again

    views = {c.call_id: c for c in await list_consultations(sessions)}
    answered = await get_consultation(sessions, views[ANSWERED].id)
    assert answered.ended_at == at("1796551300.800632")
    assert answered.duration_s == round((answered.ended_at - STARTED[ANSWERED])
                                        .total_seconds(), 3)
    assert (answered.hangup_party, answered.hangup_cause) == ("agent", "16 Normal Clearing")
    assert answered.outcome == "ivr_fallback" and answered.agent_login == "agent1"
    kinds = [s["kind"] for s in answered.steps]
    assert kinds == ["ivr_connected", "queued", "agent_answered", "agent_completed",
                     "reconciled"]
    completed = answered.steps[3]
    assert completed["detail"]["reason"] == "agent" and completed["detail"]["talk_time_s"] == 3

    abandoned = views[ABANDONED]
    assert abandoned.ended_at == at("1796551307.282674")
    assert (abandoned.hangup_party, abandoned.outcome) == ("caller", "abandoned")
    assert [s["kind"] for s in abandoned.steps] == ["ivr_connected", "queued", "abandoned",
                                                   "reconciled"]

    before = views["ended-before"]
    assert before.hangup_party == "ivr" and before.duration_s == 9.0
    assert "reconciled" not in [s["kind"] for s in before.steps]

    rows = await load(sessions, done_at - timedelta(minutes=1),
                      STARTED[ABANDONED] + timedelta(minutes=1))
    facts = {row.id: classify(row) for row in rows.calls}
    answered_facts = facts[answered.id]
    assert answered_facts.disposition == "answered"
    assert float(answered_facts.wait_s or 0) == 0.249  # APP_START(Queue) -> the agent's ANSWER
    assert float(answered_facts.handle_s or 0) == 3.009  # -> the agent's leg hung up
    abandoned_facts = facts[abandoned.id]
    assert abandoned_facts.disposition == "abandoned"
    assert float(abandoned_facts.wait_s or 0) == 3.492
