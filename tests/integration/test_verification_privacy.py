"""Issue 14, part 5, on the real stack (Asterisk 22, SIPp callers, the service's HTTP API):
the four digits a caller keys to verify are kept in no step and returned by no API, and
callers from withheld numbers who fail verification do not lock out other withheld callers."""

from __future__ import annotations

import json

import aiohttp
import pytest
from sqlalchemy import select

from crm.agents import tokens as api_tokens
from crm.consultations.recorder import list_consultations
from crm.demo_data import seed_demo
from crm.storage.models import Case, LookupFailure, Resident
from crm.telephony.events import CallStep
from hotline.service import HotlineService
from hotline.tools.sipp import place_call
from tests.integration.service_fixtures import CallWatcher
from tests.integration.test_speech_ivr import calling

pytestmark = pytest.mark.asterisk

SECRET = "8000"
"""The last four digits of 张三's contact phone 13800138000: the verification digits."""
WRONG_GUESS = "4321"
WITHHELD = "anonymous"
"""The SIP From user of a caller who withholds their number."""


def step(kind: str, call_id: str | None = None, **detail: object):
    def match(event: object) -> bool:
        return (isinstance(event, CallStep) and event.kind == kind
                and (call_id is None or event.call_id == call_id)
                and all(event.detail.get(k) == v for k, v in detail.items()))
    return match


def leaks(data: object, secret: str, *known: str) -> bool:
    """Does ``secret`` appear in ``data`` once known non-secret values (the case number, the
    call id) are cut out of it?"""
    text = json.dumps(data, ensure_ascii=False)
    for value in known:
        text = text.replace(value, "|")
    return secret in text


async def zhang_sans_case(service: HotlineService) -> str:
    await seed_demo(service.settings.database_url)
    async with service.sessions() as s:
        return await s.scalar(select(Case.number).join(Resident)
                              .where(Resident.name == "张三").order_by(Case.id))


async def call_until_told(service: HotlineService, watcher: CallWatcher, caller: str,
                          keys: str) -> CallStep:
    """Place a call, wait until the IVR told it the case's status, hang up; the "told"."""
    seen = len(watcher.events)
    async with calling(place_call(service.settings, caller_number=caller, caller_name="来电",
                                  keys=keys, hold_ms=60000)):
        told = await watcher.wait_for(
            lambda e: (e in watcher.events[seen:]
                       and (step("told")(e) or step("lookup_blocked")(e))), within=60)
        assert isinstance(told, CallStep) and told.kind == "told", f"{caller}: {told}"
        await watcher.wait_for(step("prompt", told.call_id, prompt="after_status_menu"),
                               within=30)
    return told


async def api_consultation(service: HotlineService, consultation_id: int) -> dict:
    token = await api_tokens.create_token(service.sessions, f"privacy-{consultation_id}",
                                          ["consultations:read"])
    base = f"http://{service.settings.web.host}:{service.settings.web.port}"
    async with aiohttp.ClientSession() as http, http.get(
            f"{base}/api/consultations/{consultation_id}",
            headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_withheld_callers_failing_do_not_lock_out_one_who_verifies_without_a_trace(
        hotline: HotlineService, watcher: CallWatcher) -> None:
    number = await zhang_sans_case(hotline)
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    # Two withheld callers fail three times each (two invalid numbers, wrong digits): with one
    # shared "anonymous" bucket, the hourly limit of five would now lock every withheld caller.
    for _ in range(2):
        told = await call_until_told(hotline, watcher, WITHHELD,
                                     f"{wrong}#{wrong}#{number}#1{WRONG_GUESS}")
        assert told.detail["verified"] is False
        await watcher.wait_ended()
    # Another withheld caller: looked up, not blocked, and verified by the four digits.
    # This one presses the check-status key (1) at the greeting first.
    told = await call_until_told(hotline, watcher, WITHHELD, f"1{number}#1{SECRET}")
    assert told.detail == {"case": number, "stage": "in_progress", "verified": True}
    await watcher.wait_ended()
    await hotline.recorder.drain()

    mine = [e for e in watcher.events if isinstance(e, CallStep) and e.call_id == told.call_id]
    kinds = [e.kind for e in mine]
    assert "case_lookup" in kinds and "lookup_blocked" not in kinds
    # What the bus carried (to the journal, the pops, the wallboard) ...
    published = [{"kind": e.kind, "detail": e.detail} for e in mine]
    assert not leaks(published, SECRET, number, told.call_id), published
    assert {"secret": "verification", "length": 4} in [e.detail for e in mine
                                                       if e.kind == "keys"]
    # ... what the consultation stored ...
    consultations = {c.call_id: c for c in await list_consultations(hotline.sessions)}
    stored = consultations[told.call_id]
    assert stored.caller_number == WITHHELD
    assert not leaks([s["detail"] for s in stored.steps], SECRET, number, told.call_id)
    assert {"by": "last4", "result": True, "length": 4} in [
        s["detail"] for s in stored.steps if s["kind"] == "verified"]
    # ... and what the open API returns over HTTP.
    body = await api_consultation(hotline, stored.id)
    assert body["call_id"] == told.call_id and body["steps"]
    assert not leaks([s["detail"] for s in body["steps"]], SECRET, number, told.call_id)
    # The failed guesses are not stored either, and nothing was counted against "anonymous".
    failed = [c for c in consultations.values() if c.call_id != told.call_id]
    assert len(failed) == 2
    for c in failed:
        assert not leaks([s["detail"] for s in c.steps], WRONG_GUESS, number, wrong, c.call_id)
    async with hotline.sessions() as s:
        counted = set((await s.scalars(select(LookupFailure.phone))).all())
    assert counted == {f"case:{number}"}
