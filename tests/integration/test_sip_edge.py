"""Issue 14, part 2: the SIP edge, attacked against the real Asterisk 22 with real SIPp.

The test bed trusts only 127.0.0.1: it is the PSTN gateway's one address and the one network
phones may use SIP from (tests/integration/asterisk_fixtures.py). Attacks come from other
loopback addresses (127.0.0.2), which reach Asterisk on 127.0.0.1 like any outside host.
Every assertion is on the SIP answer Asterisk gives or on its registrations (CLI), and every
wait is for a SIP answer or a call event, bounded.
"""

from __future__ import annotations

import re

import pytest

from crm.telephony.events import CallStarted, CallStep
from hotline.asterisk import cli
from hotline.service import HotlineService
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone, RegistrationRefused, phone_password
from hotline.tools.sipp import place_call, send_request
from tests.integration.service_fixtures import CallWatcher

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]

OUTSIDER = "127.0.0.2"
"""A loopback address that is neither the gateway nor in asterisk.sip_permit."""
GATEWAY = "pstn-gateway"


def contacts(settings: Settings, aor: str) -> list[str]:
    """The contacts Asterisk holds for ``aor`` (from ``pjsip show aor``)."""
    text = cli(settings, f"pjsip show aor {aor}")
    return re.findall(rf"^\s*Contact:\s+{re.escape(aor)}/(\S+)", text, re.M)


@pytest.fixture
async def agent(asterisk_bed: Settings) -> str:
    """An agent extension with no registration (one an earlier run left is removed)."""
    extension = asterisk_bed.asterisk.agent_extensions[0]
    cleared = await send_request(
        asterisk_bed, "REGISTER", from_user=extension, contact="*", expires=0,
        credentials=(extension, phone_password(asterisk_bed, extension)))
    assert cleared.status == 200, cleared
    assert contacts(asterisk_bed, extension) == []
    return extension


def test_bed_trusts_only_127_0_0_1(asterisk_bed: Settings) -> None:
    """The attacks below mean something only if 127.0.0.2 is trusted for nothing."""
    assert asterisk_bed.asterisk.gateway_addresses == ["127.0.0.1"]
    assert asterisk_bed.asterisk.sip_permit == ["127.0.0.1"]
    endpoint = cli(asterisk_bed, f"pjsip show endpoint {GATEWAY}")
    assert re.search(r"^\s*identify_by\s*:\s*ip\s*$", endpoint, re.M), endpoint
    assert re.search(r"Match:\s+127\.0\.0\.1(/32)?\s*$", endpoint, re.M), endpoint


@pytest.mark.parametrize("from_user", [GATEWAY, "13800138000", "2001"])
async def test_invite_from_an_address_outside_the_match_list_gets_no_service(
    asterisk_bed: Settings, from_user: str
) -> None:
    """Claiming the gateway by name, calling as a resident, or as an agent phone from an
    address that is neither the gateway nor a phone network: a challenge nobody can answer."""
    answer = await send_request(asterisk_bed, "INVITE", from_user=from_user,
                                local_ip=OUTSIDER)
    assert answer.status == 401, answer
    assert not answer.challenged


async def test_claimed_gateway_is_refused_while_an_honest_call_reaches_the_ivr(
    hotline: HotlineService, watcher: CallWatcher
) -> None:
    settings = hotline.settings
    attack = await send_request(settings, "INVITE", from_user=GATEWAY, local_ip=OUTSIDER)
    assert attack.status == 401, attack

    honest = await place_call(settings, caller_number="13900139000", keys="5", hold_ms=2500)
    assert honest.answered, honest.stderr
    started = await watcher.wait_for(lambda e: isinstance(e, CallStarted), within=10)
    await watcher.wait_for(lambda e: isinstance(e, CallStep) and e.kind == "ivr_connected"
                           and e.call_id == started.call_id, within=10)
    await watcher.wait_ended()
    assert [e.caller_number for e in watcher.events if isinstance(e, CallStarted)] == [
        "13900139000"]


async def test_gateway_never_registers(asterisk_bed: Settings) -> None:
    """The gateway has no AOR: a REGISTER from its own address is forbidden, one claiming
    its name from elsewhere is not even identified."""
    outside = await send_request(asterisk_bed, "REGISTER", from_user=GATEWAY,
                                 local_ip=OUTSIDER)
    assert outside.status == 401, outside
    inside = await send_request(asterisk_bed, "REGISTER", from_user=GATEWAY)
    assert inside.status == 403, inside
    assert GATEWAY not in cli(asterisk_bed, "pjsip show contacts")


async def test_agent_cannot_register_with_another_agents_password(
    asterisk_bed: Settings, agent: str
) -> None:
    first, second = agent, asterisk_bed.asterisk.agent_extensions[1]
    theirs = phone_password(asterisk_bed, second)
    assert theirs != phone_password(asterisk_bed, first)

    with pytest.raises(RegistrationRefused) as refused:
        async with AgentPhone(asterisk_bed, first, password=theirs):
            pass
    assert refused.value.status in (401, 403)
    # Nor with the other agent's whole account (their name and password in the digest).
    answer = await send_request(asterisk_bed, "REGISTER", from_user=first,
                                credentials=(second, theirs))
    assert answer.challenged and answer.status in (401, 403), answer
    assert contacts(asterisk_bed, first) == []

    async with AgentPhone(asterisk_bed, first) as phone:
        assert contacts(asterisk_bed, first) == [f"sip:{first}@127.0.0.1:{phone.port}"]
    assert contacts(asterisk_bed, first) == []


async def test_phone_outside_the_permitted_networks_cannot_register(
    asterisk_bed: Settings, agent: str
) -> None:
    extension = agent
    own = (extension, phone_password(asterisk_bed, extension))
    answer = await send_request(asterisk_bed, "REGISTER", from_user=extension,
                                local_ip=OUTSIDER, credentials=own)
    assert answer.challenged and answer.status == 401, answer
    assert contacts(asterisk_bed, extension) == []


async def test_registration_cannot_point_calls_at_an_arbitrary_address(
    asterisk_bed: Settings, agent: str
) -> None:
    """The right password from the right address, but a Contact elsewhere (where Asterisk
    would send the agent's calls): refused by the contact ACL."""
    extension = agent
    own = (extension, phone_password(asterisk_bed, extension))
    for contact in (f"<sip:{extension}@192.0.2.10:5060>", f"<sip:{extension}@{OUTSIDER}:5060>"):
        answer = await send_request(asterisk_bed, "REGISTER", from_user=extension,
                                    contact=contact, credentials=own)
        assert answer.challenged and answer.status == 401, (contact, answer)
    assert contacts(asterisk_bed, extension) == []
    # The same request with the phone's own address as Contact is accepted.
    accepted = await send_request(asterisk_bed, "REGISTER", from_user=extension,
                                  credentials=own, expires=0)
    assert accepted.status == 200, accepted
