"""The 12345 service-level figures (their definitions: docs/service-levels.md), for a period,
by hour or by day, and for the whole period.

Pure functions do the counting: :func:`classify` tells what became of one call from its
consultation and typed steps (``calls``), :func:`figures` adds calls, surveys and callback
requests up into one :class:`Figures`, :func:`report` cuts a period into buckets
(``counting``). :func:`load` reads the rows they need (both databases) and
:func:`service_levels` does both; :class:`TodayCounter` keeps today's figures for the
wallboard (``reading``). Rates and averages are exact fractions; they are rounded only where
they are shown (``presentation``: :func:`figures_json`).

This package re-exports what the console, the API, the shell and the tests use.
"""

from crm.reports.service_levels.calls import (
    CallbackRow,
    CallFacts,
    CallRow,
    Disposition,
    Rows,
    SurveyRow,
    classify,
)
from crm.reports.service_levels.counting import (
    BUCKETS,
    DEFAULT_DAYS,
    MAX_DAYS,
    Bucket,
    Figures,
    Period,
    Report,
    figures,
    percentile,
    report,
)
from crm.reports.service_levels.presentation import (
    COLUMNS,
    COUNTS,
    FIGURES,
    VALUES,
    Figure,
    below_target,
    bucket_json,
    display,
    figure_label,
    figure_phrase,
    figures_json,
    rounded,
    target_of,
    targets_json,
    value_text,
)
from crm.reports.service_levels.reading import TodayCounter, load, service_levels

__all__ = [
    "BUCKETS", "COLUMNS", "COUNTS", "DEFAULT_DAYS", "FIGURES", "MAX_DAYS", "VALUES", "Bucket",
    "CallFacts", "CallRow", "CallbackRow", "Disposition", "Figure", "Figures", "Period",
    "Report", "Rows", "SurveyRow", "TodayCounter", "below_target", "bucket_json", "classify",
    "display", "figure_label", "figure_phrase", "figures", "figures_json", "load", "percentile",
    "report", "rounded", "service_levels", "target_of", "targets_json", "value_text",
]
