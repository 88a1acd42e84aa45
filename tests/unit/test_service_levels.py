"""The service-level figures' pure parts: what becomes of one call, the percentile, the
thresholds at their edges, periods and their buckets (clock changes included), targets."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction as F

import pytest

from crm.errors import InvalidInput
from crm.reports import service_levels as levels
from crm.settings import ServiceLevelSettings
from crm.telephony.steps import (
    AgentCompleted,
    AgentConnected,
    IntentChosen,
    QueueAbandoned,
    QueueJoined,
    RouteChosen,
    StatusTold,
    UnknownStep,
)

T = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
SETTINGS = ServiceLevelSettings()


def s(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def call(*steps, ended: float | None = 300, outcome: str | None = None) -> levels.CallRow:
    return levels.CallRow(1, T, s(ended) if ended is not None else None, outcome,
                          tuple((s(at), step) for at, step in steps))


def test_an_answered_call_waits_from_the_join_and_is_handled_until_the_agent_call_ends() -> None:
    facts = levels.classify(call((10, QueueJoined("hotline")),
                                 (22.5, AgentConnected("hotline", "2001", hold_time_s=12)),
                                 (142.5, AgentCompleted("hotline", "2001", 120))))
    assert (facts.disposition, facts.queued, facts.wait_s, facts.handle_s) \
        == ("answered", True, F(25, 2), F(120))


def test_an_answer_without_a_join_takes_the_queues_hold_time() -> None:
    facts = levels.classify(call((30, AgentConnected("hotline", "2001", hold_time_s=7,
                                                     resynchronised=True))))
    assert (facts.disposition, facts.wait_s, facts.handle_s) == ("answered", F(7), None)


def test_abandoned_left_the_queue_in_progress_self_service_and_ivr_hang_up() -> None:
    abandoned = levels.classify(call((5, QueueJoined()), (9, QueueAbandoned(hold_time_s=4))))
    assert (abandoned.disposition, abandoned.wait_s) == ("abandoned", F(4))
    by_outcome = levels.classify(call((5, QueueJoined()), outcome="abandoned"))
    assert (by_outcome.disposition, by_outcome.wait_s) == ("abandoned", None)
    assert levels.classify(call((5, QueueJoined()))).disposition == "left_queue"
    assert levels.classify(call((5, QueueJoined()), ended=None)).disposition == "in_progress"
    assert levels.classify(call((5, StatusTold("x", "accepted")), ended=None)).disposition \
        == "in_progress"  # may still ask for a person
    for served in (StatusTold("20261122001", "accepted"), RouteChosen("end"),
                   IntentChosen("service_info", "keys")):
        assert levels.classify(call((5, served))).disposition == "self_service", served
    assert levels.classify(call((5, StatusTold("x", "accepted")), (9, QueueJoined()),
                                (12, AgentConnected()))).disposition == "answered"
    assert levels.classify(call((5, IntentChosen("agent", "keys")), (6, RouteChosen("agent")),
                                (9, UnknownStep("brand_new", {"x": 1})))).disposition \
        == "ivr_hangup"


def test_the_percentile_is_the_nearest_rank() -> None:
    assert levels.percentile([]) is None
    assert levels.percentile([F(5)]) == 5
    assert levels.percentile([F(n) for n in range(10, 0, -1)]) == 9  # ceil(9.0) = 9th
    assert levels.percentile([F(n) for n in range(1, 21)]) == 18
    assert levels.percentile([F(n) for n in range(1, 9)]) == 8  # ceil(7.2) = 8th


def _facts(disposition: str, wait: float | None) -> levels.CallFacts:
    return levels.CallFacts(T, disposition, True,  # type: ignore[arg-type]
                            F(wait) if wait is not None else None)


def test_thresholds_at_their_edges_and_from_the_settings() -> None:
    calls = [_facts("answered", 15), _facts("answered", 15.001), _facts("abandoned", 4.999),
             _facts("abandoned", 5)]
    found = levels.figures(T, s(3600), calls, [], None, SETTINGS)
    assert (found.answered_within, found.abandoned_short) == (1, 1)  # <= 15 s, < 5 s
    assert found.answered_within_rate == F(1, 4) and found.abandon_rate == F(2, 4)
    assert found.callbacks_requested is None and found.callbacks_completion_rate is None
    stricter = ServiceLevelSettings(answer_within_s=10, short_abandon_s=6)
    found = levels.figures(T, s(3600), calls, [], None, stricter)
    assert (found.answered_within, found.abandoned_short) == (0, 2)


def test_nothing_to_divide_by_is_no_value_and_never_below_target() -> None:
    found = levels.figures(T, s(3600), [], [], [], SETTINGS)
    assert found.connection_rate is None and found.satisfaction_rate is None
    assert found.callbacks_requested == 0 and found.callbacks_completion_rate is None
    assert levels.below_target(found, SETTINGS) == []
    shown = levels.figures_json(found, SETTINGS)
    assert {f["key"]: f["display"] for f in shown["figures"]}["connection_rate"] == "–"


def test_a_figure_exactly_at_its_target_is_not_below() -> None:
    calls = [_facts("answered", 1)] * 19 + [_facts("abandoned", 30)]  # 19 of 20 = 95 %
    found = levels.figures(T, s(3600), calls, [], None, SETTINGS)
    assert found.connection_rate == F(95, 100)
    assert "connection_rate" not in levels.below_target(found, SETTINGS)
    assert "answered_within_rate" not in levels.below_target(found, SETTINGS)  # 95 % >= 90 %
    one_less = levels.figures(T, s(3600), [*calls[1:], _facts("abandoned", 30)], [], None,
                              SETTINGS)
    assert levels.below_target(one_less, SETTINGS) == ["connection_rate"]  # 18/20 = 90 %


def test_satisfaction_counts_satisfied_and_very_satisfied() -> None:
    surveys = [levels.SurveyRow(T, score) for score in (5, 4, 3, 2, 1)]
    found = levels.figures(T, s(3600), [], surveys, None, SETTINGS)
    assert (found.satisfaction_rate, found.average_score) == (F(2, 5), F(3))


def test_periods_from_a_query() -> None:
    today = date(2026, 11, 22)
    assert levels.Period.from_query({}, today=today) \
        == levels.Period(date(2026, 10, 24), today, "day")
    assert levels.Period.from_query({"bucket": "hour"}, today=today) \
        == levels.Period(today, today, "hour")
    for query, message in (({"bucket": "week"}, "bucket must be one of hour, day"),
                           ({"from": "2026-11-23"}, "from must not be after to"),
                           ({"from": "22/11/2026"}, "is not a date"),
                           ({"from": "2026-10-01", "bucket": "hour"}, "at most 31 days"),
                           ({"from": "2025-01-01"}, "at most 366 days")):
        with pytest.raises(InvalidInput, match=message):
            levels.Period.from_query(query, today=today)


def test_buckets_are_local_days_and_real_hours() -> None:
    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")
    days = levels.Period(date(2026, 11, 1), date(2026, 11, 30)).buckets(shanghai)
    assert len(days) == 30 and days[0][0].isoformat() == "2026-11-01T00:00:00+08:00"
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    spring = levels.Period(date(2026, 3, 29), date(2026, 3, 29), "hour").buckets(berlin)
    autumn = levels.Period(date(2026, 10, 25), date(2026, 10, 25), "hour").buckets(berlin)
    assert (len(spring), len(autumn)) == (23, 25)
    assert all(end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=1)
               for start, end in autumn)
    assert [start.hour for start, _ in autumn][1:5] == [1, 2, 2, 3]  # 02:00 twice


def test_a_report_puts_each_call_in_the_bucket_it_started_in() -> None:
    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")
    period = levels.Period(date(2026, 11, 22), date(2026, 11, 22), "hour")
    start = datetime(2026, 11, 22, 9, 59, 59, tzinfo=shanghai).astimezone(UTC)
    late = levels.CallRow(1, start, start + timedelta(minutes=5), None,
                          ((start + timedelta(seconds=5), QueueJoined()),
                           (start + timedelta(seconds=65), AgentConnected())))
    outside = levels.CallRow(2, start - timedelta(days=1), start, None, ())
    found = levels.report(period, shanghai, levels.Rows((late, outside), (), None), SETTINGS)
    assert [b.offered for b in found.buckets][9:11] == [1, 0]
    assert found.total.offered == 1 and found.total.wait_avg_s == 60


def test_the_settings_section_loads_from_the_file_and_names_a_bad_key(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hotline.settings import SettingsError, load_settings

    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    assert load_settings(fill_secrets=False).service_levels == ServiceLevelSettings()
    good = tmp_path / "good.toml"
    good.write_text("[service_levels]\nanswer_within_s = 20\ntarget_connection_pct = 98\n")
    monkeypatch.setenv("HOTLINE_SERVICE_LEVELS__SHORT_ABANDON_S", "3")
    loaded = load_settings(good, fill_secrets=False).service_levels
    assert (loaded.answer_within_s, loaded.target_connection_pct, loaded.short_abandon_s) \
        == (20, 98, 3)
    bad = tmp_path / "bad.toml"
    bad.write_text("[service_levels]\ntarget_satisfaction_pct = 150\nbogus = 1\n")
    with pytest.raises(SettingsError) as error:
        load_settings(bad, fill_secrets=False)
    assert "service_levels.target_satisfaction_pct" in str(error.value)
    assert "service_levels.bogus" in str(error.value)
