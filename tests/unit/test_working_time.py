"""Working-time arithmetic of case deadlines (crm/categories/working_time.py, time_limits.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from crm.categories.time_limits import TimeLimit, TimeLimitRules, rules_from
from crm.categories.working_time import NoWorkingTime, WorkingCalendar
from crm.settings import TimeLimitSettings

SH = ZoneInfo("Asia/Shanghai")
# 2026-09-28 is a Monday; National Day week: Oct 1-7 off, Sunday Oct 11 a make-up working day
HOLIDAYS = [date(2026, 10, d) for d in (1, 2, 5, 6, 7)]
CAL = WorkingCalendar.build(tz=SH, opens=time(9), closes=time(17), holidays=HOLIDAYS,
                            workdays=[date(2026, 10, 11)])


def at(day: int, hour: int, minute: int = 0, month: int = 9) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


def test_working_days_skip_the_weekend_and_count_from_the_next_day() -> None:
    # accepted Friday 2 Oct? no: Friday 25 Sep -> Mon 28 (1), Tue 29 (2), Wed 30 (3)
    assert CAL.add_working_days(at(25, 16), 3) == at(30, 17).astimezone(UTC)
    # accepted on a Saturday: Monday is the first working day
    assert CAL.add_working_days(at(26, 10), 1) == at(28, 17).astimezone(UTC)


def test_working_days_skip_holidays_and_count_a_make_up_day() -> None:
    # Wed 30 Sep: Oct 1, 2 holidays, 3, 4 weekend, 5-7 holidays, 8 Thu (1), 9 Fri (2),
    # 10 Sat off, 11 Sun make-up (3)
    assert CAL.add_working_days(at(30, 12), 3) == at(11, 17, month=10).astimezone(UTC)
    without_make_up = WorkingCalendar.build(tz=SH, holidays=HOLIDAYS)
    assert without_make_up.add_working_days(at(30, 12), 3) == at(12, 17, month=10).astimezone(UTC)


def test_working_hours_run_across_evenings_and_weekends() -> None:
    assert CAL.add_working_hours(at(28, 10), 2) == at(28, 12).astimezone(UTC)
    # Friday 16:00 + 3 h: 1 h on Friday, 2 h on Monday
    assert CAL.add_working_hours(at(25, 16), 3) == at(28, 11).astimezone(UTC)
    # accepted at night: the clock starts at the next opening
    assert CAL.add_working_hours(at(28, 22), 1) == at(29, 10).astimezone(UTC)
    # 24 working hours = three 8-hour days
    assert CAL.add_working_hours(at(28, 9), 24) == at(30, 17).astimezone(UTC)
    # Wed 30 Sep 16:30 + 1 h: half an hour left, then the holidays, Thu 8 Oct 09:30
    assert CAL.add_working_hours(at(30, 16, 30), 1) == at(8, 9, 30, month=10).astimezone(UTC)


def test_rules_count_hours_on_the_clock_and_days_in_working_days() -> None:
    rules = rules_from(TimeLimitSettings(holidays=HOLIDAYS, workdays=[date(2026, 10, 11)]))
    friday_night = at(25, 23)
    assert rules.deadline(friday_night, TimeLimit(2, "h")) == friday_night + timedelta(hours=2)
    assert rules.deadline(friday_night, TimeLimit(1, "d")) == at(28, 17).astimezone(UTC)
    clock = TimeLimitRules()
    assert clock.deadline(friday_night, TimeLimit(7, "d")) == friday_night + timedelta(days=7)
    working_hours = TimeLimitRules(CAL, hours="working")
    assert working_hours.deadline(friday_night, TimeLimit(2, "h")) == at(28, 11).astimezone(UTC)


@pytest.mark.parametrize(("text", "limit"), [
    ("2h", TimeLimit(2, "h")), ("24H", TimeLimit(24, "h")), ("7d", TimeLimit(7, "d")),
    ("15", TimeLimit(15, "d")), ("2小时", TimeLimit(2, "h")), ("7天", TimeLimit(7, "d"))])
def test_limits_are_read(text: str, limit: TimeLimit) -> None:
    assert TimeLimit.parse(text) == limit
    assert TimeLimit.parse(str(limit)) == limit


@pytest.mark.parametrize("text", ["", "0d", "2x", "h", "-1d", "99999h"])
def test_bad_limits_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="limit"):
        TimeLimit.parse(text)


def test_a_calendar_without_working_days_says_so() -> None:
    with pytest.raises(NoWorkingTime):
        WorkingCalendar.build(weekend=range(7)).add_working_days(at(28, 9), 1)
    with pytest.raises(ValueError, match="both"):
        TimeLimitSettings(holidays=[date(2026, 10, 1)], workdays=[date(2026, 10, 1)])
    with pytest.raises(ValueError, match="naive"):
        CAL.add_working_hours(datetime(2026, 9, 28, 9), 1)


def test_the_settings_sections_read_as_written_in_hotline_toml() -> None:
    import tomllib

    from hotline.settings import Settings

    data = tomllib.loads('''
[time_limits]
workday_opens = "08:30"
workday_closes = "17:30"
holidays = ["2026-10-01", "2026-10-02"]
workdays = ["2026-10-11"]
hours = "working"
[repeat_requests]
window_days = 14
''')
    settings = Settings(**data)
    rules = rules_from(settings.time_limits)
    assert rules.hours == "working" and rules.days == "working"
    assert rules.calendar.opens == time(8, 30) and date(2026, 10, 11) in rules.calendar.workdays
    assert settings.repeat_requests.window_days == 14
    with pytest.raises(ValueError, match="timezone"):
        Settings(time_limits={"timezone": "Mars/Olympus"})
