"""Histograms read off the service's /metrics between two scrapes: what a bench step added.

Prometheus' text format gives a histogram as cumulative ``_bucket{le="..."}`` counts; the
difference of two scrapes is the step's own distribution, and its quantiles are known only to
the bucket: ``quantile_bound`` gives the upper bound of the bucket the quantile falls in.
"""

from __future__ import annotations

import math
import re

_SAMPLE = re.compile(r'^(?P<name>[a-z_:][a-z0-9_:]*)_bucket\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$')
_LE = re.compile(r'(?:^|,)le="(?P<le>[^"]+)"')


def histogram_buckets(text: str, name: str) -> dict[float, float]:
    """Cumulative counts by upper bound (+Inf as math.inf) of the histogram ``name``
    (without labels other than ``le``); empty when the text has none."""
    found: dict[float, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m is None or m["name"] != name:
            continue
        le = _LE.search(m["labels"])
        if le is None:
            continue
        found[math.inf if le["le"] == "+Inf" else float(le["le"])] = float(m["value"])
    return found


_COUNTER = re.compile(r'^(?P<name>[a-z_:][a-z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$')


def labelled_counts(text: str, name: str, label: str) -> dict[str, float]:
    """The samples of the metric ``name`` (a counter's ``..._total``) by the value of
    ``label``: ``hotline_speech_turns_ended_total{reason="request"} 26`` -> {"request": 26}."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        m = _COUNTER.match(line.strip())
        if m is None or m["name"] != name:
            continue
        value = re.search(rf'(?:^|,){re.escape(label)}="(?P<v>[^"]*)"', m["labels"])
        if value is not None:
            found[value["v"]] = float(m["value"])
    return found


def count_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What each label value counted between two scrapes."""
    return {key: count - before.get(key, 0.0) for key, count in sorted(after.items())
            if count - before.get(key, 0.0)}


def bucket_delta(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    """What was counted between two scrapes (a bound missing before counts from zero)."""
    return {bound: count - before.get(bound, 0.0) for bound, count in sorted(after.items())}


def quantile_bound(cumulative: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile (math.inf past the last
    finite bound); None when nothing was counted."""
    total = cumulative.get(math.inf, max(cumulative.values(), default=0.0))
    if total <= 0:
        return None
    return next((bound for bound, count in sorted(cumulative.items()) if count >= q * total),
                math.inf)
