"""deploy/grafana/hotline.json asks only for metrics the service exports (and the two of
Asterisk's res_prometheus that tests/integration/test_metrics.py finds on the test Asterisk),
with labels they have; and it shows the four 12345 figures against their targets."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crm.telephony.events import (
    AgentAnswered,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallStarted,
    CallStep,
)
from crm.telephony.steps import KeysEntered, PromptPlayed, SurveyEnded, SurveyStarted
from crm.web.app import HealthReport
from hotline.metrics import ScrapeSources, ServiceMetrics
from speech.metered_pool import MeteredThreadPool
from speech.turn_endings import TurnEndings

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "hotline.json"
ASTERISK_METRICS = {"asterisk_channels_count": set(), "asterisk_endpoints_count": set()}
METRIC = re.compile(r"\b((?:hotline|asterisk)_[a-z0-9_]+)(\{[^}]*\})?")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exported() -> dict[str, set[str]]:
    """Every sample name the service exports, with its label names, once each part has
    something to say."""
    metrics = ServiceMetrics()
    t = datetime(2026, 12, 6, 9, tzinfo=UTC)
    calls = metrics.calls
    calls.settle_s = 0
    for event in (CallStarted("a", None, None, at=t), CallStep("a", KeysEntered("0"), at=t),
                  CallStep("a", PromptPlayed("x"), at=t),
                  CallerQueued("a", "hotline", 1, at=t),
                  AgentAnswered("a", "hotline", "PJSIP/2001", "2001", at=t + timedelta(seconds=3)),
                  CallStep("a", SurveyStarted("after_call"), at=t),
                  CallStep("a", SurveyEnded(1, "rated", 5), at=t),
                  CallEnded("a", None, "16", at=t + timedelta(seconds=9)),
                  CallStarted("b", None, None, at=t), CallerQueued("b", "hotline", 1, at=t),
                  CallerAbandoned("b", "hotline", 1, 1, 2, at=t), CallEnded("b", None, "16", at=t)):
        calls.apply(event)
    metrics.observe_pop(0.2)
    pool = MeteredThreadPool(1)
    endings = TurnEndings()
    endings.count("request")
    try:
        metrics.scrape_from(ScrapeSources(
            lambda: HealthReport("logged_in", 1, 0, 0, audiosocket_refused={"flood": 0},
                                 pending_writes={"call_events": 0}),
            lambda: 1, lambda: pool, metrics.database_errors, endings))
        names: dict[str, set[str]] = {}
        for family in metrics.registry.collect():
            for sample in family.samples:
                names.setdefault(sample.name, set()).update(sample.labels)
        return names
    finally:
        pool.shutdown()


def expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


def test_every_query_names_only_metrics_and_labels_that_exist() -> None:
    known = {**exported(), **ASTERISK_METRICS}
    assert expressions()
    for title, expr in expressions():
        found = METRIC.findall(expr)
        assert found, f"{title}: no metric in {expr!r}"
        for name, matchers in found:
            assert name in known, f"{title}: {name} is not exported"
            for label in MATCHER.findall(matchers):
                assert label in known[name], f"{title}: {name} has no label {label}"
        names = {name for name, _ in found}
        for group in GROUPING.findall(expr):
            for label in filter(None, (x.strip() for x in group.split(","))):
                assert any(label in known[n] for n in names), f"{title}: no metric has {label}"


def test_the_four_12345_figures_are_shown_with_their_targets() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    stats = {p["title"]: p for p in dashboard["panels"] if p["type"] == "stat"}
    for title, target in (("Answered within 15 s (及时接听率)", 0.9),
                          ("接通率 (connection rate)", 0.95), ("满意率 (satisfaction)", 0.9)):
        steps = stats[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1] == {"color": "green", "value": target}
    assert "Abandon rate (放弃率)" in stats


def test_the_exporter_check_catches_a_misspelt_metric() -> None:
    known = exported()
    assert "hotline_calls_offered_total" in known and "hotline_calls_offerd_total" not in known
    assert "queue" in known["hotline_calls_abandoned_total"]
    assert "le" in known["hotline_ivr_turn_seconds_bucket"]
