"""Issue 2 acceptance: SIPp calls 12345, the call reaches the IVR's AudioSocket server with its
call id, the caller's key press arrives, and after hang-up ``hotline consultations list
--json`` shows exactly that call with the number and the Chinese name intact."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys

import pytest

from crm.telephony.events import CallStarted, CallStep
from hotline.service import HotlineService
from hotline.tools.sipp import place_call
from tests.integration.service_fixtures import CallWatcher

pytestmark = pytest.mark.asterisk


def consultations_cli(service: HotlineService) -> list[dict]:
    env = {**os.environ, "HOTLINE_STATE_DIR": str(service.settings.state_dir),
           "HOTLINE_DATABASE__URL": service.settings.database_url}
    out = subprocess.run([sys.executable, "-m", "hotline.cli", "consultations", "list",
                          "--json"], env=env, capture_output=True, text=True, timeout=60,
                         check=True)
    return json.loads(out.stdout)


async def test_call_key_press_and_consultation(hotline: HotlineService,
                                               watcher: CallWatcher) -> None:
    # 5 is no key of the greeting: a stray key sends the caller on to a person.
    result = await place_call(hotline.settings, caller_number="13800138000",
                              caller_name="张三", keys="5", hold_ms=2500)
    assert result.answered, result.stderr
    ended = await watcher.wait_ended()
    connected = await watcher.wait_for(
        lambda e: isinstance(e, CallStep) and e.kind == "ivr_connected", within=1)
    started = await watcher.wait_for(lambda e: isinstance(e, CallStarted), within=1)
    # The AudioSocket session carried the dialplan's call id.
    assert connected.call_id == started.call_id == ended.call_id
    await watcher.wait_for(lambda e: isinstance(e, CallStep) and e.kind in ("dtmf", "keys")
                           and "5" in json.dumps(e.detail), within=1)
    await hotline.recorder.drain()

    rows = consultations_cli(hotline)
    assert len(rows) == 1
    row = rows[0]
    assert row["call_id"] == started.call_id
    assert (row["caller_number"], row["caller_name"]) == ("13800138000", "张三")
    assert row["started_at"] and row["ended_at"] and row["duration_s"] > 0
    assert row["outcome"] in ("to_agent", "abandoned") and ended.route == "agent"
    assert any("5" in json.dumps(s["detail"]) for s in row["steps"])
    assert {"route": "agent", "reason": "stray key"} in [
        s["detail"] for s in row["steps"] if s["kind"] == "route"]
    health = hotline.health()
    assert health.ok and health.calls_refused_overload == 0
    assert health.pending_writes == {"call_events": 0, "pop_audits": 0, "survey_writes": 0}


async def test_a_caller_who_keys_nothing_reaches_the_queue(hotline: HotlineService,
                                                           watcher: CallWatcher) -> None:
    joined = asyncio.Event()
    hotline.ami.subscribe("QueueCallerJoin", lambda _: joined.set())
    # No menu to pass: after the short greeting, silence means "a person, please".
    call = asyncio.create_task(place_call(hotline.settings, caller_number="13900139000",
                                          caller_name="李秀英", hold_ms=30000))
    try:
        await asyncio.wait_for(joined.wait(), 20)
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
    ended = await watcher.wait_ended()
    assert ended.route == "agent"
    routes = [e.detail for e in watcher.events if isinstance(e, CallStep) and e.kind == "route"]
    assert routes == [{"route": "agent", "reason": "silent"}]
