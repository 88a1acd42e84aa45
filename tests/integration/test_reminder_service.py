"""The running service (``hotline serve``'s running_service, against the test Asterisk) sends
the departments' reminders on its own timer: a case that is due soon is reminded without
anyone running ``hotline dispatch remind``, counted on /metrics, and the last pass is on
/healthz."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from crm.cases import dispatch
from crm.cases.service import change_stage, create_case
from crm.demo_data import seed_demo
from crm.storage.models import utcnow
from hotline.service import HotlineService, running_service
from hotline.settings import Settings
from tests.integration.service_fixtures import hang_up_leftover_calls, service_settings
from tests.integration.test_metrics import scrape, total

pytestmark = pytest.mark.asterisk

EVERY = 0.2
"""The service's reminder interval here (seconds)."""


@pytest.fixture
async def reminding(asterisk_bed: Settings, tmp_path: Path) -> AsyncIterator[HotlineService]:
    settings = service_settings(asterisk_bed, tmp_path)
    settings.dispatch.remind_every_s = EVERY
    await hang_up_leftover_calls(asterisk_bed)
    async with running_service(settings) as service:
        yield service


async def test_the_service_reminds_a_due_soon_case_on_its_own_timer(
        reminding: HotlineService) -> None:
    settings, sessions = reminding.settings, reminding.sessions
    await seed_demo(settings.database_url)
    case = await create_case(sessions, category="garbage", description="垃圾桶满了",
                             actor="agent:agent1", contact_phone="13800138000",
                             now=utcnow() - timedelta(days=2, hours=12))  # 3 days: 12 h left
    await change_stage(sessions, case.number, "dispatched", actor="agent:agent1")
    base = f"http://127.0.0.1:{settings.web.port}"
    assert reminding.metrics is not None
    async with asyncio.timeout(20):  # pass by pass, until one has reminded the case
        while not [r for r in await dispatch.reminders(sessions, department="sanitation")
                   if r.case_number == case.number]:
            await reminding.metrics.reminders.next_pass()
    [reminder] = [r for r in await dispatch.reminders(sessions, department="sanitation")
                  if r.case_number == case.number]
    assert reminder.kind == "due_soon"
    samples = await scrape(f"{base}/metrics")
    assert total(samples, "hotline_dispatch_reminders_total") >= 1
    assert total(samples, "hotline_dispatch_reminder_passes_failed_total") == 0
    async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as answer:
        health = await answer.json()
    last = health["reminders"]["last"]
    assert last["error"] is None and last["at"] >= reminder.at.isoformat()
