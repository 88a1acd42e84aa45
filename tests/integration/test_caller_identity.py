"""Issue 14, part 1: caller identity cannot be forged by caller-controlled text.

Against the real Asterisk: callers whose display names and user parts carry text shaped like
the dialplan's event fields, dialplan expressions, AMI headers, quotes, backslashes, very long
names and bytes that are not UTF-8. Each call must be recorded with the number the gateway
delivered and its literal (or safely replaced) name, and verification must use only that
number: the attack that was confirmed on the running stack (display name
``x,CallerNum: 13800138000`` from another number heard the full status of 张三's case) is
replayed first.
"""

from __future__ import annotations

import pytest

from crm.consultations.recorder import list_consultations
from crm.telephony.events import CallEnded, CallStarted
from hotline.service import HotlineService
from hotline.tools.sipp import place_call
from tests.integration.raw_sip import RawSipCall
from tests.integration.service_fixtures import CallWatcher
from tests.integration.test_speech_ivr import calling, case_of, step

pytestmark = pytest.mark.asterisk

VICTIM = "13800138000"  # 张三, the contact phone of the demo case
ATTACKER = "13311112222"


async def test_forged_caller_number_in_display_name_is_not_verified(
        hotline: HotlineService, watcher: CallWatcher) -> None:
    number = await case_of(hotline, "张三")
    forged = f"x,CallerNum: {VICTIM},CallerIDNum: {VICTIM},CallerName: 张三"
    # The number keyed at the greeting, '#', 1 = yes, then four wrong digits for the last four
    # of the contact phone.
    async with calling(place_call(hotline.settings, caller_number=ATTACKER, caller_name=forged,
                                  keys=f"{number}#10000", hold_ms=60000)):
        started = await watcher.wait_for(lambda e: isinstance(e, CallStarted), within=20)
        told = await watcher.wait_for(step("told"), within=40)
        await watcher.wait_for(step("prompt", prompt="status_stage_only"), within=30)
    assert (started.caller_number, started.caller_name) == (ATTACKER, forged)
    assert told.detail["verified"] is False
    assert not any(step("prompt", prompt="status_full")(e) for e in watcher.events)
    assert not any(step("verified")(e) and e.detail.get("by") == "calling_number"
                   for e in watcher.events)
    await watcher.wait_ended()
    await hotline.recorder.drain()
    [consultation] = [c for c in await list_consultations(hotline.sessions)
                      if c.call_id == started.call_id]
    assert (consultation.caller_number, consultation.caller_name) == (ATTACKER, forged)


HOSTILE = [
    # (user part as sent, display name as sent, expected number, expected name)
    (b"13900139001", b"a,CallerNum: 13800138000", "13900139001", "a,CallerNum: 13800138000"),
    (b"13900139002", b"x;CallId: 00000000-0000-0000-0000-000000000000;y",
     "13900139002", "x;CallId: 00000000-0000-0000-0000-000000000000;y"),
    (b"13900139003", b'\\"quoted\\" back\\\\slash', "13900139003", '"quoted" back\\slash'),
    (b"13900139010", b"it's ok? \tyes", "13900139010", "it's ok? \tyes"),
    (b"13900139004", b"${SHELL(id)}$[1+1]${CALLERID(num)}", "13900139004",
     "${SHELL(id)}$[1+1]${CALLERID(num)}"),
    (b"13900139005", b"Event: Hangup Channel: PJSIP/x Cause: 16", "13900139005",
     "Event: Hangup Channel: PJSIP/x Cause: 16"),
    (b"13900139006", "张三".encode() + b"\xff\xfe" + "李四".encode(), "13900139006", None),
    (b"13900139007", b"L" * 300, "13900139007", None),
    # User parts: a comma is legal in a SIP user part; a colon starts the URI's password.
    (b"13900139008,CallerNum:13800138000", b"user part with a comma",
     "13900139008,CallerNum", "user part with a comma"),
    (b"13900139009%2CCallerNum%3A%2013800138000", b"escaped user part",
     None, "escaped user part"),
]


@pytest.mark.parametrize("user, display, number, name", HOSTILE,
                         ids=[f"hostile-{i}" for i in range(len(HOSTILE))])
async def test_hostile_names_and_user_parts_are_recorded_literally(
        hotline: HotlineService, watcher: CallWatcher, user: bytes, display: bytes,
        number: str | None, name: str | None) -> None:
    remote = (hotline.settings.asterisk.bind_host, hotline.settings.asterisk.sip_port)
    async with RawSipCall(remote, user=user, display=display,
                          dial=hotline.settings.asterisk.hotline_number) as call:
        status = await call.invite()
        assert status == 200, f"the hotline did not answer ({status})"
        started = await watcher.wait_for(lambda e: isinstance(e, CallStarted), within=20)
        await watcher.wait_for(step("ivr_connected"), within=20)
    ended = await watcher.wait_ended()
    assert isinstance(ended, CallEnded) and ended.call_id == started.call_id
    # Only one call started: no forged event was raised beside the real one.
    assert [e.call_id for e in watcher.events if isinstance(e, CallStarted)] == [
        started.call_id]
    recorded_number = started.caller_number or ""
    if number is not None:
        assert recorded_number == number
    else:  # whatever Asterisk unescapes it to, it is this caller's own user part
        assert recorded_number.startswith("13900139009") and recorded_number != VICTIM
    if name is not None:
        assert started.caller_name == name
    elif display.startswith(b"L"):
        assert started.caller_name and set(started.caller_name) == {"L"}
    else:  # bytes that are not UTF-8 are replaced, the rest is kept
        assert started.caller_name and started.caller_name.startswith("张三")
        assert started.caller_name.endswith("李四")
    await hotline.recorder.drain()
    [consultation] = [c for c in await list_consultations(hotline.sessions)
                      if c.call_id == started.call_id]
    assert consultation.caller_number == started.caller_number
    assert consultation.caller_name == started.caller_name
    assert consultation.ended_at is not None
