"""The call figures /metrics exports, counted from call events as docs/service-levels.md
decides each call; and the service's scrape-time collector and exposition."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from crm.metrics.calls import NO_QUEUE, CallFigures
from crm.telephony.events import (
    AgentAnswered,
    AgentRinging,
    AgentStatusChanged,
    BusEvent,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallStarted,
    CallStep,
    QueueSnapshot,
)
from crm.telephony.steps import (
    CallbackDialling,
    IntentChosen,
    KeysEntered,
    PromptPlayed,
    RouteChosen,
    SpeechHeard,
    StatusTold,
    SurveyEnded,
    SurveyStarted,
    VerificationDigits,
)
from crm.web.app import HealthReport
from hotline.metrics import ScrapeSources, ServiceMetrics
from speech.metered_pool import MeteredThreadPool
from speech.turn_endings import TurnEndings

T = datetime(2026, 12, 6, 9, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def figures(**kwargs: float) -> tuple[CollectorRegistry, CallFigures]:
    registry = CollectorRegistry()
    return registry, CallFigures(registry, settle_s=0, **kwargs)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def feed(calls: CallFigures, *events: BusEvent) -> None:
    for event in events:
        calls.apply(event)


def answered_call(call_id: str, wait_s: float, queue: str = "hotline") -> list[BusEvent]:
    return [CallStarted(call_id, "13800138000", "张三", at=at(0)),
            CallStep(call_id, RouteChosen("agent", "asked"), at=at(1)),
            CallerQueued(call_id, queue, 1, "13800138000", at=at(2)),
            AgentRinging(call_id, queue, "PJSIP/2001", "2001", at=at(2.5)),
            AgentAnswered(call_id, queue, "PJSIP/2001", "2001", at=at(2 + wait_s)),
            CallEnded(call_id, "agent", "16 Normal Clearing", at=at(60), party="caller")]


def test_each_call_is_counted_once_by_its_disposition_and_queue() -> None:
    registry, calls = figures(answer_within_s=15)
    feed(calls, *answered_call("a1", 15.0), *answered_call("a2", 15.5, "hotline-en"))
    feed(calls, CallStarted("b1", None, None, at=at(0)),
         CallerQueued("b1", "hotline", 1, at=at(3)),
         CallerAbandoned("b1", "hotline", 1, 1, 4, at=at(7)),
         CallEnded("b1", "agent", "16", at=at(7)))
    feed(calls, CallStarted("s1", None, None, at=at(0)),
         CallStep("s1", StatusTold("20261206-0001", "received"), at=at(5)),
         CallEnded("s1", None, "16", at=at(9)))
    feed(calls, CallStarted("s2", None, None, at=at(0)),
         CallStep("s2", IntentChosen("service_info", "keys"), at=at(5)),
         CallEnded("s2", None, "16", at=at(9)))
    feed(calls, CallStarted("h1", None, None, at=at(0)), CallEnded("h1", None, "16", at=at(2)))

    offered = {(q, d): value(registry, "hotline_calls_offered_total", queue=q, disposition=d)
               for q in ("hotline", "hotline-en", NO_QUEUE)
               for d in ("answered", "abandoned", "self_service", "ivr_hangup", "left_queue")}
    assert {k: v for k, v in offered.items() if v} == {
        ("hotline", "answered"): 1, ("hotline-en", "answered"): 1, ("hotline", "abandoned"): 1,
        (NO_QUEUE, "self_service"): 2, (NO_QUEUE, "ivr_hangup"): 1}
    assert value(registry, "hotline_calls_queued_total", queue="hotline") == 2
    assert value(registry, "hotline_calls_answered_total", queue="hotline") == 1
    assert value(registry, "hotline_calls_answered_total", queue="hotline-en") == 1
    # 15 s is "at most 15 s": in time; 15.5 s is not.
    assert value(registry, "hotline_calls_answered_in_time_total", queue="hotline") == 1
    assert value(registry, "hotline_calls_answered_in_time_total", queue="hotline-en") == 0
    assert value(registry, "hotline_calls_abandoned_total", queue="hotline") == 1
    assert value(registry, "hotline_queue_wait_seconds_sum", queue="hotline",
                 outcome="abandoned") == 4
    assert value(registry, "hotline_queue_wait_seconds_bucket", queue="hotline",
                 outcome="answered", le="15.0") == 1
    assert value(registry, "hotline_calls_decided_total") == 6
    assert calls.calls_in_progress == 0


def test_calls_in_the_ivr_and_waiting_in_each_queue_follow_the_calls() -> None:
    registry, calls = figures()
    feed(calls, CallStarted("c1", None, None, at=at(0)), CallStarted("c2", None, None, at=at(0)))
    assert value(registry, "hotline_calls_in_ivr") == 2
    feed(calls, CallerQueued("c1", "hotline", 1, at=at(3)))
    assert value(registry, "hotline_calls_in_ivr") == 1
    assert value(registry, "hotline_calls_in_queue", queue="hotline") == 1
    # events about no call change nothing
    feed(calls, AgentStatusChanged("PJSIP/2001", "2001", "hotline", "available"),
         QueueSnapshot("hotline"))
    feed(calls, AgentAnswered("c1", "hotline", "PJSIP/2001", "2001", at=at(5)))
    assert value(registry, "hotline_calls_in_queue", queue="hotline") == 0
    feed(calls, CallEnded("c2", None, "16", at=at(6)), CallEnded("c1", None, "16", at=at(9)))
    assert value(registry, "hotline_calls_in_ivr") == 0
    assert value(registry, "hotline_calls_in_queue", queue="hotline") == 0


def test_a_callback_the_hotline_placed_is_not_offered() -> None:
    registry, calls = figures()
    feed(calls, CallStarted("cb", None, None, at=at(0)),
         CallStep("cb", CallbackDialling(7, 1, "missed", "agent_first"), at=at(0)),
         CallerQueued("cb", "hotline", 1, at=at(1)),
         AgentAnswered("cb", "hotline", "PJSIP/2001", "2001", at=at(3)),
         CallEnded("cb", None, "16", at=at(9)))
    assert value(registry, "hotline_calls_offered_total", queue="hotline",
                 disposition="answered") == 0
    assert value(registry, "hotline_calls_answered_total", queue="hotline") == 0
    assert value(registry, "hotline_calls_decided_total") == 1


def test_a_turn_is_timed_from_the_callers_input_to_the_next_prompt() -> None:
    registry, calls = figures()
    feed(calls, CallStarted("t1", None, None, at=at(0)),
         CallStep("t1", PromptPlayed("greeting", "zh"), at=at(0.1)),
         CallStep("t1", KeysEntered("1"), at=at(4.0)),
         CallStep("t1", PromptPlayed("ask_case", "zh"), at=at(4.25)),
         CallStep("t1", SpeechHeard("二零二六", 0.9), at=at(9.0)),
         CallStep("t1", PromptPlayed("confirm", "zh"), at=at(9.5)),
         CallStep("t1", VerificationDigits("keys", 4), at=at(12.0)),
         CallStep("t1", PromptPlayed("status", "zh"), at=at(12.75)),
         CallStep("t1", PromptPlayed("goodbye", "zh"), at=at(20.0)))  # no input before it
    assert value(registry, "hotline_ivr_turn_seconds_count", input="keys") == 2
    assert value(registry, "hotline_ivr_turn_seconds_sum", input="keys") == 1.0
    assert value(registry, "hotline_ivr_turn_seconds_count", input="speech") == 1
    assert value(registry, "hotline_ivr_turn_seconds_sum", input="speech") == 0.5


def test_only_after_call_ratings_count_for_satisfaction() -> None:
    registry, calls = figures()
    feed(calls, CallStarted("r1", None, None, at=at(0)),
         CallStep("r1", SurveyStarted("after_call"), at=at(1)),
         CallStep("r1", SurveyEnded(1, "rated", 5), at=at(2)),
         CallStarted("r2", None, None, at=at(0)),
         CallStep("r2", SurveyStarted("after_call"), at=at(1)),
         CallStep("r2", SurveyEnded(2, "no_answer"), at=at(2)),
         CallStarted("rv", None, None, at=at(0)),
         CallStep("rv", SurveyStarted("return_visit"), at=at(1)),
         CallStep("rv", SurveyEnded(3, "rated", 1), at=at(2)))
    assert value(registry, "hotline_survey_ratings_total", score="5") == 1
    assert value(registry, "hotline_survey_ratings_total", score="1") == 0


async def test_an_abandon_that_overtakes_the_hang_up_still_decides_the_call() -> None:
    """Two trackers publish on the bus: the queue's abandon may come just after CallEnded."""
    registry = CollectorRegistry()
    calls = CallFigures(registry, settle_s=0.05)
    feed(calls, CallStarted("x", None, None, at=at(0)), CallerQueued("x", "hotline", 1, at=at(1)),
         CallEnded("x", None, "16", at=at(5)),
         CallerAbandoned("x", "hotline", 1, 1, 4, at=at(5)))
    assert value(registry, "hotline_calls_in_queue", queue="hotline") == 0
    assert value(registry, "hotline_calls_decided_total") == 0
    await asyncio.wait_for(calls.settled(), 2)  # the settle timer decides it
    assert value(registry, "hotline_calls_abandoned_total", queue="hotline") == 1
    assert value(registry, "hotline_calls_decided_total") == 1


def test_a_survey_result_after_the_hang_up_counts_and_late_steps_open_no_call() -> None:
    registry, calls = figures()
    feed(calls, CallStarted("s", None, None, at=at(0)),
         CallStep("s", SurveyStarted("after_call"), at=at(30)),
         CallEnded("s", None, "16", at=at(40)),
         CallStep("s", SurveyEnded(9, "rated", 4), at=at(40.5)),
         CallStep("s", PromptPlayed("goodbye", "zh"), at=at(41)))
    assert value(registry, "hotline_survey_ratings_total", score="4") == 1
    assert calls.calls_in_progress == 0
    assert value(registry, "hotline_calls_decided_total") == 1


def test_calls_never_ended_are_forgotten_beyond_the_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import crm.metrics.calls as module

    monkeypatch.setattr(module, "MAX_CALLS", 3)
    registry, calls = figures()
    for n in range(5):
        feed(calls, CallStarted(f"c{n}", None, None, at=at(n)))
    assert calls.calls_in_progress == 3
    assert value(registry, "hotline_calls_in_ivr") == 3
    feed(calls, CallEnded("c0", None, "16", at=at(9)), CallEnded("c4", None, "16", at=at(9)))
    assert value(registry, "hotline_calls_decided_total") == 1  # c0 was forgotten


def test_metric_labels_never_carry_a_callers_number_or_name() -> None:
    registry, calls = figures()
    feed(calls, *answered_call("p1", 3.0))
    text = ServiceMetrics().exposition()  # an empty service's exposition parses too
    assert b"hotline_screen_pop_delay_seconds" in text
    samples = [s for m in registry.collect() for s in m.samples]
    labels = {v for s in samples for v in s.labels.values()}
    assert samples and not labels & {"13800138000", "张三", "PJSIP/2001", "2001", "p1"}


def test_the_scrape_reads_the_services_state_at_that_moment() -> None:
    metrics = ServiceMetrics()
    report = HealthReport("logged_in", 4573, 2, 10, audiosocket_refused={"peer": 3},
                          pending_writes={"call_events": 4, "survey_writes": 0})
    reports = [report]
    logins = [1]
    pool = MeteredThreadPool(1)
    try:
        pool.submit(sum, [1, 2]).result(timeout=5)
        endings = TurnEndings()
        metrics.scrape_from(ScrapeSources(lambda: reports[-1], lambda: logins[-1],
                                          lambda: pool, metrics.database_errors, endings))
        r = metrics.registry
        assert r.get_sample_value("hotline_speech_turns_ended_total", {"reason": "request"}) is None
        endings.count("request")
        endings.count("request_missed")
        endings.count("request")
        assert r.get_sample_value("hotline_speech_turns_ended_total", {"reason": "request"}) == 2
        assert r.get_sample_value("hotline_speech_turns_ended_total",
                                  {"reason": "request_missed"}) == 1
        assert r.get_sample_value("hotline_ami_logged_in") == 1
        assert r.get_sample_value("hotline_ami_reconnects_total") == 0
        assert r.get_sample_value("hotline_audiosocket_refused_total", {"reason": "peer"}) == 3
        assert r.get_sample_value("hotline_journal_pending", {"journal": "call_events"}) == 4
        assert r.get_sample_value("hotline_recognizer_threads") == 1
        assert r.get_sample_value("hotline_recognizer_waiting") == 0
        pool.submit_urgent(sum, [3]).result(timeout=5)
        assert r.get_sample_value("hotline_recognizer_final_decode_seconds_count") == 1
        assert r.get_sample_value("hotline_recognizer_final_decode_seconds_bucket",
                                  {"le": "+Inf"}) == 1
        assert (r.get_sample_value("hotline_recognizer_busy_seconds_total") or 0) > 0
        logins.append(3)
        reports.append(HealthReport("disconnected", 4573, 0, 10))
        assert r.get_sample_value("hotline_ami_reconnects_total") == 2
        assert r.get_sample_value("hotline_ami_logged_in") == 0
    finally:
        pool.shutdown()


@pytest.mark.parametrize("busy", [0, 2])
def test_the_metered_pool_counts_threads_at_work(busy: int) -> None:
    import threading

    pool = MeteredThreadPool(2)
    release = threading.Event()
    started = threading.Barrier(busy + 1) if busy else None
    try:
        def work() -> None:
            assert started is not None
            started.wait(5)
            release.wait(5)

        futures = [pool.submit(work) for _ in range(busy)]
        if started is not None:
            started.wait(5)
        assert pool.running == busy
        release.set()
        for f in futures:
            f.result(timeout=5)
        assert pool.running == 0
    finally:
        release.set()
        pool.shutdown()


async def test_database_errors_are_counted_where_the_driver_raises_them(tmp_path) -> None:
    from sqlalchemy import text

    from crm.metrics.database_errors import DatabaseErrors
    from crm.storage.db import make_engine

    errors = DatabaseErrors()
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'errors.db'}")
    errors.watch(engine)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            assert errors.count == 0
            with pytest.raises(Exception, match="no such table"):
                await conn.execute(text("SELECT * FROM no_such_table"))
        assert errors.count == 1
    finally:
        await engine.dispose()
