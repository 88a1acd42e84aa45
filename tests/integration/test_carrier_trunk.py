"""Issue 17, the real network: calls from the carrier trunk, against the real Asterisk 22.

The test bed's trunk is identified by its address, 127.0.0.5 (hotline.tools.bed); the PSTN
gateway (127.0.0.1) and the phones are not trusted for the caller's identity. Every call is
a real SIPp call; every wait is for a call event, bounded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest

from crm.telephony.events import CallStarted, CallStep
from hotline.asterisk import cli
from hotline.service import HotlineService
from hotline.settings import Settings
from hotline.tools.bed import BED_TRUNK_ADDRESS
from hotline.tools.dtmf_tones import write_tones
from hotline.tools.sipp import place_call
from tests.integration.service_fixtures import CallWatcher
from tests.integration.test_speech_ivr import calling, case_of, step

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]

ASSERTED = "13800138000"  # 张三, the contact phone of the demo case
PAI = f"P-Asserted-Identity: <sip:{ASSERTED}@carrier.example>"


def test_bed_has_a_trunk_identified_by_address_that_prefers_alaw(
    asterisk_bed: Settings,
) -> None:
    endpoint = cli(asterisk_bed, "pjsip show endpoint carrier-trunk")
    assert re.search(r"^\s*trust_id_inbound\s*:\s*true\s*$", endpoint, re.M), endpoint
    assert re.search(r"^\s*allow\s*:\s*\(alaw\|ulaw\)\s*$", endpoint, re.M), endpoint
    assert re.search(r"^\s*dtmf_mode\s*:\s*auto\s*$", endpoint, re.M), endpoint
    assert re.search(rf"Match:\s+{re.escape(BED_TRUNK_ADDRESS)}(/32)?\s*$", endpoint, re.M)
    phone = cli(asterisk_bed, f"pjsip show endpoint {asterisk_bed.asterisk.agent_extensions[0]}")
    assert re.search(r"^\s*trust_id_inbound\s*:\s*false\s*$", phone, re.M), phone


@pytest.mark.parametrize(("headers", "expected"), [((PAI,), ASSERTED), ((), "0571000000")],
                         ids=["asserted", "from-only"])
async def test_caller_number_is_the_one_the_carrier_delivers(
    hotline: HotlineService, watcher: CallWatcher, headers: tuple[str, ...], expected: str
) -> None:
    """P-Asserted-Identity when the carrier sends one, else the number in From."""
    call = await place_call(hotline.settings, caller_number="0571000000", keys="",
                            hold_ms=1500, local_ip=BED_TRUNK_ADDRESS, headers=headers)
    assert call.answered, call.stderr
    started = await watcher.wait_for(lambda e: isinstance(e, CallStarted), within=10)
    await watcher.wait_ended()
    assert started.caller_number == expected


@pytest.mark.parametrize("phone", [False, True], ids=["gateway", "softphone"])
async def test_an_asserted_identity_from_elsewhere_is_ignored(
    hotline: HotlineService, watcher: CallWatcher, phone: bool
) -> None:
    """The PSTN gateway (127.0.0.1) and a phone may send P-Asserted-Identity too: the
    caller is still who From (the gateway) or the phone's own account says."""
    settings = hotline.settings
    number = settings.asterisk.softphone_user if phone else "13900139000"
    call = await place_call(
        settings, caller_number=number, hold_ms=1500, headers=(PAI,),
        auth_password=settings.asterisk.softphone_password if phone else None)
    assert call.answered, call.stderr
    started = await watcher.wait_for(lambda e: isinstance(e, CallStarted), within=10)
    await watcher.wait_ended()
    assert started.caller_number == number


async def test_in_band_keys_from_the_trunk_key_a_case_number(
    hotline: HotlineService, watcher: CallWatcher, tmp_path: Path
) -> None:
    """A gateway that sends keys only as tones (no telephone-event in its offer): Asterisk
    detects them in the audio and the IVR hears the keys; the case number is read back,
    verified by the number the carrier asserted."""
    number = await case_of(hotline, "张三")
    tones = write_tones(f"{number}#1", tmp_path / "keys.wav", lead_ms=800, tail_ms=500)
    async with calling(place_call(
            hotline.settings, caller_number="0571000000", audio=tones, hold_ms=60_000,
            local_ip=BED_TRUNK_ADDRESS, headers=(PAI,), telephone_event=False)):
        started = await watcher.wait_for(lambda e: isinstance(e, CallStarted), within=20)
        told = await watcher.wait_for(step("told"), within=40)
    assert started.caller_number == ASSERTED
    assert told.detail == {"case": number, "stage": "in_progress", "verified": True}
    mine = [e for e in watcher.events if isinstance(e, CallStep) and e.call_id == told.call_id]
    [keyed] = [e for e in mine if e.kind == "keys" and e.detail == {"keys": number}]
    print(f"in-band keys: {number}# heard {(keyed.at - started.at).total_seconds():.2f} s, "
          f"told {(told.at - started.at).total_seconds():.2f} s after the call started")


@pytest.mark.parametrize(("source", "offer", "chosen"), [
    (BED_TRUNK_ADDRESS, ("PCMU", "PCMA"), "alaw"),
    (BED_TRUNK_ADDRESS, ("PCMU",), "ulaw"),
    ("127.0.0.1", ("PCMU", "PCMA"), "ulaw"),
], ids=["trunk-both", "trunk-ulaw-only", "gateway-both"])
async def test_alaw_is_chosen_when_offered_and_ulaw_accepted(
    hotline: HotlineService, watcher: CallWatcher, source: str,
    offer: tuple[Literal["PCMU", "PCMA"], ...], chosen: str,
) -> None:
    """The carrier lists u-law first: the trunk still takes A-law when it is offered (the
    PSTN gateway, configured u-law first, takes u-law from the same offer)."""
    endpoint = "carrier-trunk" if source == BED_TRUNK_ADDRESS else "pstn-gateway"
    async with calling(place_call(hotline.settings, caller_number="0571000000",
                                  hold_ms=60_000, local_ip=source, codecs=offer)):
        started = await watcher.wait_for(lambda e: isinstance(e, CallStarted), within=20)
        assert started.channel and started.channel.startswith(f"PJSIP/{endpoint}-")
        channel = cli(hotline.settings, f"core show channel {started.channel}")
    assert re.search(rf"^\s*NativeFormats:\s*\({chosen}\)\s*$", channel, re.M), channel
