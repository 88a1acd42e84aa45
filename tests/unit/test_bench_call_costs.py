"""bench.call_costs: the idle rate comes off, only calls that ended count, memory per call is
the rise over the step's peak in flight; kinds are checked on the command line."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bench.call_costs import kind_cost, parse_kinds
from bench.load import parse_args
from bench.load_procs import GroupUsage, Usage


@dataclass
class Step:
    offered: int = 10
    outcomes: dict[str, int] = field(default_factory=lambda: {"completed": 7, "diverted": 1,
                                                              "stuck": 2})
    in_flight_peak: int = 5
    turns_by_input: dict[str, list[float]] = field(
        default_factory=lambda: {"keys": [0.1] * 99 + [0.3], "speech": []})
    pop_delays_s: list[float] = field(default_factory=list)
    usage: Usage | None = None

    @property
    def lost(self) -> int:
        return self.outcomes.get("stuck", 0)


def test_cpu_per_call_takes_the_idle_rate_off_and_counts_ended_calls() -> None:
    usage = Usage(40.0, {"hotline serve": GroupUsage(50.0, 90.0, 700.0),
                         "asterisk": GroupUsage(10.0, 20.0, 100.0)})
    cost = kind_cost("lookup", Step(usage=usage), {"hotline serve": 0.05}, rss_start=680.0)
    # serve: 0.5 x 40 s = 20 s, idle 0.05 x 40 = 2 s -> 18 s over 8 ended calls
    assert cost.cpu_ms_per_call["hotline serve"] == pytest.approx(2250.0)
    assert cost.cpu_ms_per_call["asterisk"] == pytest.approx(500.0)
    assert cost.ended == 8 and cost.lost == 2
    assert cost.service_mb_per_call == pytest.approx(4.0)  # (700 - 680) / 5 in flight
    assert cost.turn_p95_ms == {"keys": pytest.approx(100.0)}  # empty speech: none
    assert cost.pop_p95_ms is None


def test_memory_that_fell_during_the_step_is_no_negative_cost() -> None:
    usage = Usage(10.0, {"hotline serve": GroupUsage(1.0, 2.0, 600.0)})
    cost = kind_cost("agent", Step(usage=usage), {"hotline serve": 0.5}, rss_start=650.0)
    assert cost.service_mb_per_call == 0.0 and cost.cpu_ms_per_call["hotline serve"] == 0.0


def test_kinds_on_the_command_line() -> None:
    assert parse_kinds("speech, lookup") == ["speech", "lookup"]
    for bad in ("", "lookup,lookup", "voice"):
        with pytest.raises(ValueError, match="--cost-kinds"):
            parse_kinds(bad)
    args = parse_args(["--cost-per-kind", "--cost-kinds", "agent", "--cost-calls", "4"])
    assert args.cost_kinds == ["agent"] and args.cost_calls == 4
    with pytest.raises(SystemExit):
        parse_args(["--cost-per-kind", "--find-max"])
