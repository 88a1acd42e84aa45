"""Satisfaction reports and drill-down lists on SQLite and PostgreSQL, from surveys seeded
through the survey service (tests/console_data.py)."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta

import pytest

from crm.audit import log as audit
from crm.demo_data import seed_demo
from crm.errors import InvalidInput
from crm.reports.audit_log import AuditFilter, audit_entries
from crm.reports.residents import resident_record
from crm.reports.satisfaction import (
    ReportFilter,
    filter_choices,
    list_consultations,
    list_surveys,
    satisfaction_report,
)
from tests.console_data import (
    CALLER,
    DISTRIBUTION,
    OFFERED,
    PER_AGENT,
    PER_CATEGORY,
    PER_DEPARTMENT,
    RATED,
    Seeded,
    seed_surveys,
)

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def seeded(sessions, db_url) -> Seeded:
    await seed_demo(db_url)
    return await seed_surveys(sessions, TZ)


def _filter(seeded: Seeded, **query: str) -> ReportFilter:
    return ReportFilter.from_query(query, today=seeded.today)


def _by_key(stats) -> dict[str, tuple[int, float, int]]:
    return {s.key: (s.count, s.average, s.low) for s in stats}


async def test_the_report_adds_up_scores_by_day_score_agent_department_and_category(
        sessions, seeded: Seeded) -> None:
    report = await satisfaction_report(sessions, _filter(seeded), TZ)
    assert (report.offered, report.rated, report.low) == (OFFERED, RATED, 2)
    assert report.average == pytest.approx(20 / 6, abs=0.01)
    assert report.response_rate == pytest.approx(6 / 7, abs=0.001)
    assert report.distribution == DISTRIBUTION
    assert _by_key(report.per_agent) == PER_AGENT
    assert _by_key(report.per_department) == PER_DEPARTMENT
    assert _by_key(report.per_category) == PER_CATEGORY
    assert [s.label for s in report.per_agent] == ["王芳", "Kim Jisoo"]  # busiest first
    assert len(report.trend) == 30 and report.trend[-1].day == seeded.today
    days = {d.day.isoformat(): (d.count, d.average) for d in report.trend if d.count}
    assert days == seeded.trend()
    assert all(d.average is None for d in report.trend if not d.count)


async def test_filters_narrow_the_report(sessions, seeded: Seeded) -> None:
    yesterday = (seeded.today - timedelta(days=1)).isoformat()
    one_day = await satisfaction_report(sessions, _filter(seeded, since=yesterday,
                                                          until=yesterday), TZ)
    assert (one_day.rated, one_day.distribution[1], one_day.distribution[2]) == (2, 1, 1)
    assert len(one_day.trend) == 1
    housing = await satisfaction_report(sessions, _filter(seeded, department="housing"), TZ)
    assert housing.distribution == {1: 1, 2: 0, 3: 0, 4: 0, 5: 2}
    repair_by_agent1 = await satisfaction_report(
        sessions, _filter(seeded, category="repair", agent="agent1"), TZ)
    assert _by_key(repair_by_agent1.per_agent) == {"agent1": (2, 5.0, 0)}
    nobody = await satisfaction_report(sessions, _filter(seeded, agent="supervisor1"), TZ)
    assert (nobody.offered, nobody.rated, nobody.average) == (0, 0, None)
    assert nobody.per_agent == () and nobody.distribution == dict.fromkeys(range(1, 6), 0)


async def test_drill_down_lists_filter_by_score_agent_and_department(
        sessions, seeded: Seeded) -> None:
    low = await list_surveys(sessions, _filter(seeded, max_score="2"), TZ)
    assert sorted(r.score for r in low) == [1, 2]
    assert {r.agent_login for r in low} == {"agent2"}
    assert all(r.follow_up_status == "open" for r in low)
    assert [r.categories for r in low if r.score == 1] == [("房屋维修",)]
    everything = await list_surveys(sessions, _filter(seeded), TZ)
    assert len(everything) == 7 and everything[0].outcome == "no_answer"  # newest first
    assert everything[0].started_at.tzinfo is not None

    calls = await list_consultations(sessions, _filter(seeded, max_score="2"), TZ)
    assert sorted(c.scores for c in calls) == [(1,), (2,)]
    housing = await list_consultations(sessions, _filter(seeded, department="housing",
                                                         agent="agent1"), TZ)
    assert len(housing) == 2 and all(c.agent_login == "agent1" for c in housing)
    assert all(c.caller_number == CALLER and c.outcome == "to_agent" for c in housing)
    paged = await list_consultations(sessions, _filter(seeded, page="2"), TZ, limit=5)
    assert len(paged) == 2


async def test_bad_filters_are_refused(seeded: Seeded) -> None:
    for query in ({"since": "2026-13-01"}, {"since": "2026-02-02", "until": "2026-02-01"},
                  {"since": "2024-01-01", "until": "2026-01-01"}, {"max_score": "9"},
                  {"agent": "Robert'); DROP TABLE"}, {"kind": "phone"},
                  {"min_score": "4", "max_score": "2"}, {"page": "0"}):
        with pytest.raises(InvalidInput):
            _filter(seeded, **query)
    f = _filter(seeded, agent="agent1", max_score="2", page="3")
    assert f.query() == {"since": f.since.isoformat(), "until": f.until.isoformat(),
                         "agent": "agent1", "max_score": "2", "page": "3"}
    assert "page" not in f.query(page=1)


async def test_audit_entries_and_a_residents_record(sessions, seeded: Seeded) -> None:
    await audit.write(sessions, actor="agent:supervisor1", action="recording.play",
                      object_type="consultation", object_id=seeded.consultations[0])
    f = AuditFilter.from_query({"action": "recording.play"}, today=seeded.today)
    [entry] = await audit_entries(sessions, f, TZ)
    assert (entry.actor, entry.object_id) == ("agent:supervisor1", str(seeded.consultations[0]))
    by_kind = await audit_entries(sessions, AuditFilter.from_query(
        {"actor": "agent:"}, today=seeded.today), TZ)
    assert by_kind and all(e.actor.startswith("agent:") for e in by_kind)
    choices = await filter_choices(sessions)
    assert ("supervisor1", "陈静") in choices.assignees
    assert all(login not in ("agent1", "agent2") for login, _ in choices.assignees)

    resident_id = await _resident_id(sessions)
    record = await resident_record(sessions, resident_id, TZ)
    assert record.name == "张三" and record.phones == (CALLER,)
    assert len(record.consultations) == 7 and record.cases


async def _resident_id(sessions) -> int:
    from sqlalchemy import select

    from crm.storage.models import ResidentPhone

    async with sessions() as session:
        return int(await session.scalar(select(ResidentPhone.resident_id)
                                        .where(ResidentPhone.phone == CALLER)))
