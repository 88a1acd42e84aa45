"""The resident's urge (催办) on the real stack (Asterisk 22, a SIPp caller, the service): a
caller keys the number of their overdue case, is told its status with the urge key, keys it,
and the urge is recorded on the case and counted -- through the IVR's case directory."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm.cases import dispatch
from crm.cases.service import change_stage, create_case, get_case
from crm.demo_data import seed_demo
from crm.storage.models import utcnow
from crm.telephony.events import CallStep
from hotline.service import HotlineService
from hotline.tools.sipp import place_call
from ivr.flows.menu import URGE_KEY
from tests.integration.service_fixtures import CallWatcher
from tests.integration.test_speech_ivr import calling, step

pytestmark = pytest.mark.asterisk


async def test_a_caller_urges_an_overdue_case_by_key(hotline: HotlineService,
                                                     watcher: CallWatcher) -> None:
    await seed_demo(hotline.settings.database_url)
    created = await create_case(hotline.sessions, category="garbage", description="垃圾没人清",
                                actor="agent:agent1", resident_phone="13800138000",
                                contact_phone="13800138000",
                                now=utcnow() - timedelta(days=10))  # 3-day limit: overdue
    number = created.number
    await change_stage(hotline.sessions, number, "dispatched", actor="agent:agent1")
    async with calling(place_call(hotline.settings, caller_number="13800138000",
                                  caller_name="张三", keys=f"{number}#1{URGE_KEY}",
                                  hold_ms=60_000)):
        told = await watcher.wait_for(step("told"), within=40)
        urged = await watcher.wait_for(step("urge"), within=40)
        await watcher.wait_for(step("prompt", prompt="urge_recorded"), within=30)
    assert told.detail == {"case": number, "stage": "dispatched", "verified": True}
    assert urged.detail == {"case": number, "by": "keys", "count": 1}
    assert await dispatch.urge_count(hotline.sessions, number) == 1
    view = await get_case(hotline.sessions, number)
    assert view.history[-1].actor == "resident:ivr_keys"
    assert number in [c.number for c in await dispatch.overdue_cases(hotline.sessions)
                      if c.urges == 1]
    mine = [e for e in watcher.events if isinstance(e, CallStep) and e.call_id == told.call_id]
    said = [e.detail["prompt"] for e in mine if e.kind == "prompt"]
    assert said.index("status_full") < said.index("urge_recorded"), said
