"""Working time: when a handling time limit counted in working days or working hours ends.

A :class:`WorkingCalendar` knows the working week (Monday to Friday unless told otherwise),
public holidays that fall on working days, make-up working days (调休: a Saturday or Sunday
worked in exchange for a holiday bridge), and the working hours of a day, all in one local
time zone. Pure functions of their arguments: no clock, no database.

Rules (the usual ones of local 12345 regulations, made explicit):

- N working days: the day of acceptance is not counted; the limit ends at the close of the
  N-th working day after it (从受理次日起算, 到期日下班时).
- H working hours: counted only inside the working hours of working days, from the moment of
  acceptance (or from the next opening when accepted outside them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

_MAX_DAYS_SCANNED = 3 * 366 * 10
"""A bound on every walk through the calendar (a calendar without working days never ends)."""


class NoWorkingTime(ValueError):
    """The calendar has no working day within the bound (e.g. every weekday a holiday)."""


@dataclass(frozen=True)
class WorkingCalendar:
    tz: tzinfo = UTC
    opens: time = time(9, 0)
    closes: time = time(17, 0)
    holidays: frozenset[date] = frozenset()
    """Days off that would otherwise be working days (法定节假日)."""
    workdays: frozenset[date] = frozenset()
    """Make-up working days (调休上班) that would otherwise be days off."""
    weekend: frozenset[int] = field(default_factory=lambda: frozenset({5, 6}))
    """ISO weekdays counted from Monday = 0 that are days off: Saturday and Sunday."""

    def __post_init__(self) -> None:
        if not self.opens < self.closes:
            raise ValueError(f"working hours must open before they close "
                             f"({self.opens:%H:%M} - {self.closes:%H:%M})")
        both = self.holidays & self.workdays
        if both:
            raise ValueError("a day cannot be both a holiday and a make-up working day: "
                             + ", ".join(sorted(d.isoformat() for d in both)))

    @classmethod
    def build(cls, *, tz: tzinfo = UTC, opens: time = time(9, 0), closes: time = time(17, 0),
              holidays: Iterable[date] = (), workdays: Iterable[date] = (),
              weekend: Iterable[int] = (5, 6)) -> WorkingCalendar:
        return cls(tz, opens, closes, frozenset(holidays), frozenset(workdays),
                   frozenset(weekend))

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() not in self.weekend and day not in self.holidays

    def _local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise ValueError("naive datetime given to the working calendar")
        return moment.astimezone(self.tz)

    def _at(self, day: date, clock: time) -> datetime:
        return datetime.combine(day, clock, tzinfo=self.tz)

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The close of the ``days``-th working day after ``start``'s local day."""
        if days < 1:
            raise ValueError("a limit in working days must be at least 1")
        day = self._local(start).date()
        counted = 0
        for _ in range(_MAX_DAYS_SCANNED):
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
                if counted == days:
                    return self._at(day, self.closes).astimezone(UTC)
        raise NoWorkingTime(f"fewer than {days} working days in {_MAX_DAYS_SCANNED} days")

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """The moment ``hours`` of working time after ``start``."""
        if hours <= 0:
            raise ValueError("a limit in working hours must be positive")
        left = timedelta(hours=hours)
        local = self._local(start)
        day = local.date()
        for _ in range(_MAX_DAYS_SCANNED):
            if self.is_working_day(day):
                opening, closing = self._at(day, self.opens), self._at(day, self.closes)
                begin = max(local, opening)
                if begin < closing:
                    if begin + left <= closing:
                        return (begin + left).astimezone(UTC)
                    left -= closing - begin
            day += timedelta(days=1)
        raise NoWorkingTime(f"no {hours} working hours in {_MAX_DAYS_SCANNED} days")
