"""bench.service_metrics: a step's share of a histogram on /metrics, and its quantiles."""

import math

from bench.service_metrics import (
    bucket_delta,
    count_delta,
    histogram_buckets,
    labelled_counts,
    quantile_bound,
)

NAME = "hotline_recognizer_final_decode_seconds"


def scrape(*counts: int) -> str:
    bounds = ["0.01", "0.02", "0.05", "+Inf"]
    lines = ["# HELP x y", f"# TYPE {NAME} histogram"]
    lines += [f'{NAME}_bucket{{le="{b}"}} {c}.0' for b, c in zip(bounds, counts, strict=True)]
    lines += [f"{NAME}_count {counts[-1]}.0", f"{NAME}_sum 0.5",
              'other_bucket{le="0.01"} 99.0']
    return "\n".join(lines)


def test_a_steps_share_is_the_difference_of_two_scrapes() -> None:
    before = histogram_buckets(scrape(1, 2, 3, 3), NAME)
    after = histogram_buckets(scrape(1, 12, 21, 23), NAME)
    assert before == {0.01: 1, 0.02: 2, 0.05: 3, math.inf: 3}
    step = bucket_delta(before, after)
    assert step == {0.01: 0, 0.02: 10, 0.05: 18, math.inf: 20}
    assert quantile_bound(step, 0.5) == 0.02
    assert quantile_bound(step, 0.95) == math.inf  # 2 of 20 over the last finite bound


def test_nothing_counted_has_no_quantile() -> None:
    assert histogram_buckets("", NAME) == {}
    assert quantile_bound({}, 0.95) is None
    assert quantile_bound({0.01: 0.0, math.inf: 0.0}, 0.5) is None


def test_a_steps_turn_endings_by_reason() -> None:
    name = "hotline_speech_turns_ended_total"

    def endings(request: int, silence: int) -> str:
        return "\n".join([f"# TYPE {name[:-6]} counter",
                          f'{name}{{reason="request"}} {request}.0',
                          f'{name}{{reason="silence"}} {silence}.0',
                          'hotline_other_total{reason="request"} 7.0'])

    before = labelled_counts(endings(3, 5), name, "reason")
    assert before == {"request": 3, "silence": 5}
    assert count_delta(before, labelled_counts(endings(29, 5), name, "reason")) == {"request": 26}
    assert labelled_counts("", name, "reason") == {}
