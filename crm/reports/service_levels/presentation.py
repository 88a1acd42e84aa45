"""How the figures are named and shown: the table of figures (:data:`FIGURES`) with their
labels and targets, the figures that fall short of their target, and the rounding and JSON
the API, the CSV, the pages and the wallboard give them. Rates and averages are rounded only
here."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from crm.i18n.phrases import N_, Phrase
from crm.reports.service_levels.counting import Figures
from crm.settings import ServiceLevelSettings

Kind = Literal["count", "rate", "seconds", "score"]


@dataclass(frozen=True)
class Figure:
    """One figure as the pages, the CSV and the API name and show it."""

    key: str
    name: str
    """Its name in English: the message id a catalog translates (``{within}``, ``{short}``:
    seconds from the settings)."""
    kind: Kind
    target: str | None = None
    """The ServiceLevelSettings field of its target (percent), if it has one."""
    chart: bool = True
    """Drawn as a daily trend on the dashboard."""


FIGURES: tuple[Figure, ...] = (
    Figure("offered", N_("Calls offered"), "count"),
    Figure("answered", N_("Answered by a person"), "count"),
    Figure("connection_rate", N_("Connection rate"), "rate", "target_connection_pct"),
    Figure("answered_within_rate", N_("Answered within {within} s"), "rate",
           "target_answered_within_pct"),
    Figure("abandon_rate", N_("Abandon rate"), "rate"),
    Figure("abandoned_short", N_("Abandoned under {short} s"), "count"),
    Figure("wait_avg_s", N_("Average wait"), "seconds"),
    Figure("wait_p90_s", N_("90th percentile wait"), "seconds"),
    Figure("handle_avg_s", N_("Average handle time"), "seconds"),
    Figure("self_service_rate", N_("Finished in self-service"), "rate"),
    Figure("callbacks_pending", N_("Callbacks pending"), "count", chart=False),
    Figure("callbacks_completed", N_("Callbacks completed"), "count", chart=False),
    Figure("callbacks_completion_rate", N_("Callback completion rate"), "rate"),
    Figure("satisfaction_rate", N_("Satisfaction (satisfied + very satisfied)"), "rate",
           "target_satisfaction_pct"),
    Figure("average_score", N_("Average score (1–5)"), "score"),
)
COUNTS = ("offered", "queued", "answered", "answered_within", "abandoned", "abandoned_short",
          "left_queue", "self_service", "ivr_hangup", "in_progress", "callbacks_requested",
          "callbacks_pending", "callbacks_completed", "callbacks_owed", "surveys_rated",
          "surveys_satisfied")
VALUES = ("connection_rate", "answered_within_rate", "abandon_rate", "short_abandon_rate",
          "self_service_rate", "wait_avg_s", "wait_p90_s", "handle_avg_s",
          "callbacks_completion_rate", "satisfaction_rate", "average_score")
COLUMNS = ("start", "end", *COUNTS, *VALUES, "below_target")
"""The columns of the CSV, and the keys of each bucket in the API's JSON."""
RATE_DIGITS, SECONDS_DIGITS, SCORE_DIGITS = 4, 1, 2


def figure_phrase(figure: Figure, settings: ServiceLevelSettings) -> Phrase:
    """The figure's name, each reader's language (its seconds filled in from the settings)."""
    return Phrase(figure.name, {"within": _plain(settings.answer_within_s),
                                "short": _plain(settings.short_abandon_s)})


def figure_label(figure: Figure, settings: ServiceLevelSettings) -> str:
    """The figure's name in English (the API's and the CSV's)."""
    return figure_phrase(figure, settings).render()


def _plain(value: float) -> str:
    return f"{value:g}"


def target_of(figure: Figure, settings: ServiceLevelSettings) -> Fraction | None:
    """The figure's target as a share (0..1), or None."""
    if figure.target is None:
        return None
    return Fraction(str(getattr(settings, figure.target))) / 100


def below_target(found: Figures, settings: ServiceLevelSettings) -> list[str]:
    """The figures with a target that they fall short of (a figure without data is not)."""
    out = []
    for figure in FIGURES:
        target = target_of(figure, settings)
        value = getattr(found, figure.key)
        if target is not None and value is not None and value < target:
            out.append(figure.key)
    return out


def rounded(key: str, value: Fraction | int | None) -> float | int | None:
    """A figure as the API, the CSV and the pages' attributes give it: counts whole, rates to
    4 decimals (0..1), seconds to 1, the average score to 2."""
    if value is None or isinstance(value, int):
        return value
    digits = (SECONDS_DIGITS if key.endswith("_s") else SCORE_DIGITS
              if key == "average_score" else RATE_DIGITS)
    return round(float(value), digits)


def display(figure: Figure, value: Fraction | int | None, seconds: str = "s") -> str:
    """How a page shows the value: 58.3 %, 12.5 s, 4.33, 12; – for no data (``seconds``:
    the unit of seconds in the reader's language)."""
    if value is None:
        return "–"
    if figure.kind == "rate":
        return f"{float(value) * 100:.1f} %"
    if figure.kind == "seconds":
        return f"{float(value):.1f} {seconds}"
    if figure.kind == "score":
        return f"{float(value):.2f}"
    return str(value)


def value_text(value: float | int | None) -> str:
    """A value as the pages' ``data-value`` attributes hold it: 0.5455, 138, or empty."""
    if value is None:
        return ""
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def bucket_json(found: Figures, settings: ServiceLevelSettings) -> dict[str, Any]:
    """One bucket (or the total) as the API returns it and the CSV writes it."""
    out: dict[str, Any] = {"start": found.start.isoformat(), "end": found.end.isoformat()}
    out.update({key: getattr(found, key) for key in COUNTS})
    out.update({key: rounded(key, getattr(found, key)) for key in VALUES})
    out["below_target"] = below_target(found, settings)
    return out


def targets_json(settings: ServiceLevelSettings) -> dict[str, Any]:
    return {"answer_within_s": settings.answer_within_s,
            "short_abandon_s": settings.short_abandon_s,
            **{f.key: float(t) for f in FIGURES if (t := target_of(f, settings)) is not None}}


def figures_json(found: Figures, settings: ServiceLevelSettings) -> dict[str, Any]:
    """The figures with how each is shown and whether it falls short: the wallboard's."""
    below = set(below_target(found, settings))
    shown = []
    for figure in FIGURES:
        value = getattr(found, figure.key)
        target = target_of(figure, settings)
        shown_value = rounded(figure.key, value)
        shown.append({"key": figure.key, "label": figure_label(figure, settings),
                      "name": figure_phrase(figure, settings).to_json(), "kind": figure.kind,
                      "value": shown_value, "value_text": value_text(shown_value),
                      "display": display(figure, value),
                      "target": float(target) if target is not None else None,
                      "target_display": display(figure, target) if target is not None else None,
                      "below_target": figure.key in below})
    return {"figures": shown, **bucket_json(found, settings)}
