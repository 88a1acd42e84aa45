"""A category's handling time limit (``2h``, ``24h``, ``7d``, ``15d``) and the rules that turn
it into a case's deadline: hours and days each counted on the clock or in working time
(:mod:`crm.categories.working_time`), as the ``[time_limits]`` settings say."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from crm.categories.working_time import WorkingCalendar
from crm.i18n.phrases import Phrase
from crm.settings import TimeLimitSettings

Unit = Literal["h", "d"]
Counting = Literal["calendar", "working"]
_LIMIT = re.compile(r"([0-9]{1,4})\s*(h|d|小时|天|工作日)?", re.IGNORECASE)
_UNITS = {"h": "h", "小时": "h", "d": "d", "天": "d", "工作日": "d", None: "d"}
MAX_HOURS = 24 * 90
MAX_DAYS = 3650


class InvalidTimeLimit(ValueError):
    """A time limit that cannot be read; ``phrase`` says why in each reader's language."""

    def __init__(self, phrase: Phrase) -> None:
        super().__init__(phrase.render())
        self.phrase = phrase


@dataclass(frozen=True)
class TimeLimit:
    amount: int
    unit: Unit

    @classmethod
    def parse(cls, text: str) -> TimeLimit:
        """``2h``, ``24h``, ``7d``, ``15d`` (a bare number is days; 小时 / 天 / 工作日 too)."""
        match = _LIMIT.fullmatch(text.strip())
        if match is None:
            raise InvalidTimeLimit(Phrase("{value} is not a time limit like 2h, 24h, 7d or 15d",
                                          {"value": repr(text)}))
        amount, unit = int(match[1]), _UNITS[match[2] and match[2].lower()]
        top = MAX_HOURS if unit == "h" else MAX_DAYS
        if not 0 < amount <= top:
            raise InvalidTimeLimit(
                Phrase("{value}: a limit in hours must be from 1 to {max}",
                       {"value": repr(text), "max": top}) if unit == "h" else
                Phrase("{value}: a limit in days must be from 1 to {max}",
                       {"value": repr(text), "max": top}))
        return cls(amount, unit)  # type: ignore[arg-type]

    @classmethod
    def of(cls, days: int | None, hours: int | None) -> TimeLimit | None:
        """From a category's two columns (hours win: an hour limit is the tighter rule)."""
        if hours:
            return cls(hours, "h")
        if days:
            return cls(days, "d")
        return None

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    @property
    def days(self) -> int | None:
        return self.amount if self.unit == "d" else None

    @property
    def whole_days(self) -> int:
        """The limit in days, hours rounded up to whole days."""
        return self.amount if self.unit == "d" else -(-self.amount // 24)

    @property
    def hours(self) -> int | None:
        return self.amount if self.unit == "h" else None


@dataclass(frozen=True)
class TimeLimitRules:
    """How limits are counted. The default counts on the clock (what a deadline was before
    working time existed); the service builds its rules from ``[time_limits]``."""

    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)
    hours: Counting = "calendar"
    days: Counting = "calendar"

    def deadline(self, accepted: datetime, limit: TimeLimit) -> datetime:
        counting = self.hours if limit.unit == "h" else self.days
        if counting == "calendar":
            step = timedelta(hours=limit.amount) if limit.unit == "h" else timedelta(
                days=limit.amount)
            return accepted + step
        if limit.unit == "h":
            return self.calendar.add_working_hours(accepted, limit.amount)
        return self.calendar.add_working_days(accepted, limit.amount)


def rules_from(settings: TimeLimitSettings) -> TimeLimitRules:
    """The rules ``[time_limits]`` describes."""
    calendar = WorkingCalendar.build(
        tz=zoneinfo.ZoneInfo(settings.timezone), opens=settings.workday_opens,
        closes=settings.workday_closes, holidays=settings.holidays, workdays=settings.workdays)
    return TimeLimitRules(calendar, settings.hours, settings.days)
