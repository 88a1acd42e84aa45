"""The 12345 service-level figures of a scripted day of calls (tests/service_level_calls.py),
worked out by hand, against what the hotline computes: the module, the open API (JSON and
CSV), the console's CSV and dashboard, and the figures the wallboard pushes over its
websocket. The calls go through the real consultation recorder into SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from crm.consultations.recorder import apply_event
from crm.live.wallboard import Wallboard
from crm.reports import service_levels as levels
from crm.storage.db import SessionFactory
from crm.telephony.events import (
    AgentAnswered,
    AgentCallEnded,
    CallEnded,
    CallerQueued,
    CallStarted,
)
from tests.service_level_calls import (
    DAY,
    DAY_TOTAL,
    EMPTY,
    HOUR_10,
    HOUR_11,
    NOW,
    SETTINGS,
    TZ,
    Hotline,
    crm_side,
    rounded,
)

PUSH_WAIT = 20.0


@pytest.fixture
async def hotline(sessions: SessionFactory, db_url: str) -> AsyncIterator[Hotline]:
    async with crm_side(sessions, db_url) as running:
        yield running


def exact(found: levels.Figures) -> dict[str, Any]:
    return {**{key: getattr(found, key) for key in EMPTY if key != "below_target"},
            "below_target": levels.below_target(found, SETTINGS)}


def only(expected: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    return {key: got[key] for key in expected}


def csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(value)
    return str(value)


def hour_of(bucket: dict[str, Any] | levels.Figures) -> int:
    start = bucket["start"] if isinstance(bucket, dict) else bucket.start.isoformat()
    return int(start[11:13])


async def test_the_hand_worked_figures_match_the_module_api_csv_and_dashboard(
        hotline: Hotline) -> None:
    await hotline.play()

    # The module, by hour and for the day.
    by_hour = await levels.service_levels(hotline.sessions, levels.Period(DAY, DAY, "hour"),
                                          TZ, SETTINGS)
    assert len(by_hour.buckets) == 24
    for bucket in by_hour.buckets:
        expected = {10: HOUR_10, 11: HOUR_11}.get(hour_of(bucket), EMPTY)
        assert exact(bucket) == expected, bucket.start
    assert exact(by_hour.total) == DAY_TOTAL
    by_day = await levels.service_levels(hotline.sessions, levels.Period(DAY, DAY, "day"),
                                         TZ, SETTINGS)
    assert [exact(b) for b in by_day.buckets] == [DAY_TOTAL]
    before = await levels.service_levels(
        hotline.sessions, levels.Period(DAY - timedelta(days=1), DAY - timedelta(days=1)),
        TZ, SETTINGS)
    assert (before.total.offered, before.total.answered, before.total.answered_within) \
        == (1, 1, 1)  # kpi-14, the day before, answered in 5 s

    # The open API: JSON and CSV, by hour; a token without reports:read gets nothing.
    client = await hotline.client()
    auth = {"Authorization": f"Bearer {hotline.token}"}
    url = f"/api/service-levels?from={DAY}&to={DAY}&bucket=hour"
    response = await client.get(url, headers=auth)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["timezone"] == "Asia/Shanghai" and len(body["buckets"]) == 24
    assert body["targets"] == {"answer_within_s": 15.0, "short_abandon_s": 5.0,
                               "connection_rate": 0.95, "answered_within_rate": 0.9,
                               "satisfaction_rate": 0.6}
    for bucket in body["buckets"]:
        expected = rounded({10: HOUR_10, 11: HOUR_11}.get(hour_of(bucket), EMPTY))
        assert only(expected, bucket) == expected, bucket["start"]
    assert only(DAY_TOTAL, body["total"]) == rounded(DAY_TOTAL)
    assert body["total"]["connection_rate"] == 0.5455  # 6/11, spelt out once
    day = await (await client.get(f"/api/service-levels?from={DAY}&to={DAY}",
                                  headers=auth)).json()
    assert [only(DAY_TOTAL, b) for b in day["buckets"]] == [rounded(DAY_TOTAL)]

    response = await client.get(url + "&format=csv", headers=auth)
    assert response.status == 200 and response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO((await response.text()).lstrip("\ufeff"))))
    assert len(rows) == 24
    for row in rows:
        expected = rounded({10: HOUR_10, 11: HOUR_11}.get(int(row["start"][11:13]), EMPTY))
        assert {k: row[k] for k in expected} == {k: csv_text(v) for k, v in expected.items()}

    bad = await client.get(url + "&format=xml", headers=auth)
    assert bad.status == 400 and "format must be json or csv" in await bad.text()
    refused = await client.get(url, headers={"Authorization": "Bearer hlt_nothing"})
    assert refused.status == 401
    bad = await client.get(f"/api/service-levels?from={DAY}&to=2027-01-22&bucket=hour",
                           headers=auth)
    assert bad.status == 400 and "at most 31 days" in (await bad.json())["error"]["message"]

    # The console: the CSV download by day, and the dashboard's tiles and table.
    console = await hotline.console()
    response = await console.get(f"/console/service-levels.csv?from={DAY}&to={DAY}&bucket=day")
    assert response.status == 200
    rows = list(csv.DictReader(io.StringIO((await response.text()).lstrip("\ufeff"))))
    assert [{k: row[k] for k in DAY_TOTAL} for row in rows] \
        == [{k: csv_text(v) for k, v in rounded(DAY_TOTAL).items()}]
    wrong = await console.get("/console/service-levels?from=2026-11-31")
    assert wrong.status == 400 and "不是日期" in await wrong.text()  # is not a date
    page = await console.get(f"/console/service-levels?from={DAY}&to={DAY}")
    html = await page.text()
    assert page.status == 200, html[:500]
    tiles = dict(re.findall(r'id="level-(\w+)" data-key="\w+" data-value="([^"]*)"', html))
    expected = rounded(DAY_TOTAL)
    assert tiles == {f.key: levels.value_text(expected[f.key]) for f in levels.FIGURES}
    for key in ("connection_rate", "answered_within_rate"):
        tile = re.search(rf'<div class="([^"]+)" id="level-{key}".*?</div>', html, re.S)
        assert tile is not None and "below-target" in tile.group(1)
        assert "▼ 低于目标" in tile.group(0)
    tile = re.search(r'<div class="([^"]+)" id="level-satisfaction_rate".*?</div>', html, re.S)
    assert tile is not None and "below-target" not in tile.group(1)
    assert "低于目标" not in tile.group(0)
    assert 'class="target"' in html and "目标 95%" in html  # the line on the chart
    row = re.search(rf'<tr data-day="{DAY}">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = dict(re.findall(r'<td data-key="(\w+)">([^<]*)</td>', row.group(1)))
    assert cells["connection_rate"] == "54.5 %" and cells["wait_p90_s"] == "40.0 秒"
    assert cells["satisfaction_rate"] == "66.7 %" and cells["average_score"] == "3.67"
    short = f"{SETTINGS.short_abandon_s:g}"
    board = await (await console.get("/console/")).text()  # today's figures, named
    assert f"{short} 秒内短时放弃" in board and "Abandoned under" not in board

    # The same pages for a supervisor who chose English.
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf is not None
    await console.post("/console/locale", data={"csrf": csrf.group(1), "locale": "en"})
    english = await (await console.get(f"/console/service-levels?from={DAY}&to={DAY}")).text()
    assert '<html lang="en">' in english and "▼ Below target" in english
    assert "Target 95%" in english and "低于目标" not in english
    row = re.search(rf'<tr data-day="{DAY}">(.*?)</tr>', english, re.S)
    assert row is not None
    assert dict(re.findall(r'<td data-key="(\w+)">([^<]*)</td>', row.group(1)))[
        "wait_p90_s"] == "40.0 s"
    board = await (await console.get("/console/")).text()
    assert f"Abandoned under {short} s" in board and "短时放弃" not in board


async def test_the_wallboard_pushes_todays_figures_as_calls_end(hotline: Hotline) -> None:
    console = await hotline.console()
    async with console.ws_connect("/console/wallboard/ws") as ws:
        first = await ws.receive_json(timeout=5)
        assert first["type"] == "wallboard" and first["levels"]["offered"] == 0
        await hotline.play()
        expected = rounded(DAY_TOTAL)
        seen: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(PUSH_WAIT):
                while True:
                    message = await ws.receive_json()
                    seen.append(message["levels"])
                    if only(expected, message["levels"]) == expected:
                        break
        except TimeoutError:
            last = only(expected, seen[-1]) if seen else None
            raise AssertionError(f"the wallboard never pushed the day's figures; the last "
                                 f"push: {last}, expected {expected}") from None
    pushed = message["levels"]
    assert pushed["start"] == f"{DAY}T00:00:00+08:00"
    shown = {f["key"]: f for f in pushed["figures"]}
    assert shown["connection_rate"]["display"] == "54.5 %"
    assert shown["connection_rate"]["below_target"] is True
    assert shown["answered_within_rate"]["below_target"] is True
    assert shown["satisfaction_rate"]["below_target"] is False
    assert shown["wait_avg_s"]["value"] == round(float(DAY_TOTAL["wait_avg_s"]), 1)
    # The figures grew call by call: an earlier push had fewer calls than the last.
    assert any(0 < s["offered"] < expected["offered"] for s in seen)
    assert hotline.counter.full_counts == 1  # then only new and open calls were read


async def _answered_call(sessions: SessionFactory, call_id: str, start: datetime) -> None:
    async with sessions() as session, session.begin():
        for event in (CallStarted(call_id, "13800138000", None, at=start),
                      CallerQueued(call_id, "hotline", 1, at=start + timedelta(seconds=5)),
                      AgentAnswered(call_id, "hotline", "PJSIP/2001", "2001", hold_time_s=3,
                                    at=start + timedelta(seconds=8))):
            await apply_event(session, event)


async def _end(sessions: SessionFactory, call_id: str, at: datetime) -> None:
    async with sessions() as session, session.begin():
        await apply_event(session, AgentCallEnded(call_id, "hotline", "PJSIP/2001", "2001",
                                                  60, "agent", at=at))
        await apply_event(session, CallEnded(call_id, "agent", "16", at=at))


async def test_todays_counter_reads_new_and_open_calls_and_the_whole_day_now_and_then(
        sessions: SessionFactory) -> None:
    counter = levels.TodayCounter(sessions, TZ, SETTINGS, full_every_s=60)
    morning = NOW - timedelta(hours=2)
    await _answered_call(sessions, "a", morning)
    first = await counter(NOW)
    # "a" is still talking: answered, no handle time yet; it is read again until it ends.
    assert (first["offered"], first["answered"], first["handle_avg_s"]) == (1, 1, None)
    await _end(sessions, "a", morning + timedelta(seconds=68))
    await _answered_call(sessions, "b", NOW - timedelta(minutes=1))
    second = await counter(NOW + timedelta(seconds=10))
    assert (second["offered"], second["answered"], second["handle_avg_s"]) == (2, 2, 60.0)
    assert counter.full_counts == 1
    third = await counter(NOW + timedelta(seconds=70))  # a minute on: the whole day again
    assert counter.full_counts == 2 and third == second
    tomorrow = await counter(NOW + timedelta(days=1))
    assert counter.full_counts == 3 and tomorrow["offered"] == 0
    assert tomorrow["start"] == f"{DAY + timedelta(days=1)}T00:00:00+08:00"


async def test_a_failing_count_keeps_the_last_figures_and_the_wallboard_going(
        sessions: SessionFactory, caplog: pytest.LogCaptureFixture) -> None:
    counts: list[datetime] = []

    async def flaky(now: datetime) -> dict[str, Any]:
        counts.append(now)
        if len(counts) > 1:
            raise RuntimeError("database gone")
        return {"offered": 7}

    board = Wallboard(sessions, queue="hotline", tz=TZ, clock=lambda: NOW, levels=flaky,
                      levels_refresh_s=3600)
    await board.start()
    try:
        assert board.state()["levels"] == {"offered": 7}
        await board.handle(CallEnded("x", None, None, at=NOW))
        await board.wait_for(lambda: len(counts) == 2 and board.waiting_count == 0, 5)
        await board.drain()
        assert board.state()["levels"] == {"offered": 7}
        assert "counting today's service levels failed" in caplog.text
        await board.handle(CallerQueued("y", "hotline", 1, at=NOW))
        await board.drain()
        assert board.state()["waiting"]["count"] == 1
    finally:
        await board.close()


async def test_the_wallboard_counts_at_most_once_per_interval_however_many_calls_end(
        sessions: SessionFactory) -> None:
    """Each count reads all of today's calls: a burst of ended calls makes one more count
    after the interval, not one each."""
    loop = asyncio.get_running_loop()
    counted_at: list[float] = []

    async def levels(now: datetime) -> dict[str, Any]:
        counted_at.append(loop.time())
        return {"offered": len(counted_at)}

    board = Wallboard(sessions, queue="hotline", tz=TZ, clock=lambda: NOW, levels=levels,
                      levels_refresh_s=3600, levels_min_interval_s=0.5)
    await board.start()
    try:
        first = len(counted_at)
        for i in range(20):
            await board.handle(CallEnded(f"call-{i}", None, None, at=NOW))
        await board.wait_for(lambda: len(counted_at) > first, 5)
        await board.drain()
        assert len(counted_at) == first + 1
        assert counted_at[-1] - counted_at[-2] >= 0.5
    finally:
        await board.close()
