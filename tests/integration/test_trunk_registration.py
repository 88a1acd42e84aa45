"""Issue 17: the trunk registers with the carrier (outbound registration, digest), against
the real Asterisk 22 and a SIPp registrar standing in for the carrier at 127.0.0.6.

The test bed is reloaded (``hotline asterisk up``) with a [trunk] server for the test, then
with its own settings again; the registrar checks the digest with the carrier's password."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from hotline.asterisk import cli, up
from hotline.settings import Settings, TrunkSettings
from hotline.tools.bed import BED_TRUNK_ADDRESS
from hotline.tools.sipp import SippProcess, free_udp_port

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]

CARRIER = "127.0.0.6"
USER = "0105551234"
PASSWORD = "carrier-pw-17"

REGISTRAR = f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="carrier registrar">
  <recv request="REGISTER"/>
  <send><![CDATA[

      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="carrier.example", nonce="47ebe028cda119c35d4877b383027d28"
      Content-Length: 0

    ]]></send>
  <recv request="REGISTER">
    <action>
      <ereg regexp="username=\\"([^\\"]*)\\"" search_in="hdr" header="Authorization:"
            assign_to="whole,user"/>
      <verifyauth assign_to="authvalid" username="{USER}" password="{PASSWORD}"/>
    </action>
  </recv>
  <nop><action><log message="authorization [$whole]"/></action></nop>
  <nop hide="true" test="authvalid" next="accept"/>
  <send next="refused"><![CDATA[

      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
  <label id="accept"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires=3600
      Expires: 3600
      Content-Length: 0

    ]]></send>
  <nop next="done"><action><log message="registered [$user]"/></action></nop>
  <label id="refused"/>
  <nop><action><log message="refused [$user]"/></action></nop>
  <label id="done"/>
</scenario>
"""


async def registration_state(settings: Settings, within: float) -> str:
    """The trunk registration's state once it leaves the in-between ones (bounded)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        text = cli(settings, "pjsip show registrations")
        match = re.search(r"^\s*carrier-trunk-registration/\S+\s+\S+\s+(\w+)", text, re.M)
        state = match.group(1) if match else "absent"
        if state not in ("Unregistered", "absent") or asyncio.get_running_loop().time() > deadline:
            return state
        await asyncio.sleep(0.1)


@pytest.mark.parametrize(("password", "outcome", "state"), [
    (PASSWORD, "registered", "Registered"), ("not-the-password", "refused", "Rejected")],
    ids=["right-secret", "wrong-secret"])
async def test_trunk_registers_with_the_carriers_secret(
    asterisk_bed: Settings, tmp_path: Path, password: str, outcome: str, state: str,
) -> None:
    scenario = tmp_path / "registrar.xml"
    scenario.write_text(REGISTRAR, encoding="utf-8")
    port = free_udp_port(host=CARRIER)
    registrar = await SippProcess.start(
        "registrar", tmp_path, ["-sf", str(scenario), "-i", CARRIER, "-p", str(port),
                                "-m", "1"])
    settings = asterisk_bed.model_copy(deep=True)
    settings.trunk = TrunkSettings(addresses=[BED_TRUNK_ADDRESS], server=f"{CARRIER}:{port}",
                                   username=USER, secret=password)
    try:
        up(settings, progress=lambda message: None)
        heard = await registrar.wait_event("registered", "refused", within=20)
        assert heard == f"{outcome} {USER}", registrar.errors()
        assert await registration_state(settings, within=10) == state
    finally:
        await registrar.stop()
        up(asterisk_bed, progress=lambda message: None)
    assert "carrier-trunk-registration" not in cli(asterisk_bed, "pjsip show registrations")
