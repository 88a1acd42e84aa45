"""Issue 17, the real network: the carrier trunk, NAT and TLS as rendered (no Asterisk)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from hotline.asterisk.render import ConfigRenderError, render_config
from hotline.settings import Settings, SipTransportSettings, TrunkSettings, load_settings
from tests.unit.test_asterisk_render import section

PASSWORDS = {"3001": "agent-3001-pw", "3002": "agent-3002-pw"}


def make_settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        asterisk={"softphone_password": "soft-pw", "agent_passwords": PASSWORDS,
                  "agent_extensions": ["3001", "3002"]},
        ami={"secret": "ami-secret"},
        **extra,
    )


def test_without_trunk_nat_or_tls_nothing_of_them_is_rendered(tmp_path: Path) -> None:
    config = render_config(make_settings(tmp_path))
    pjsip = config["pjsip.conf"]
    assert section(pjsip, "transport-udp").strip().splitlines() == [
        "type = transport", "protocol = udp", "bind = 127.0.0.1:5060"]
    for word in ("carrier", "trunk", "external_", "local_net", "tls", "media_encryption",
                 "trust_id_inbound = yes", "registration"):
        assert word not in pjsip, word
    assert "srtp" not in config["modules.conf"]
    assert "outbound_registration" not in config["modules.conf"]


def test_trunk_by_address_trusts_the_carriers_identity_and_prefers_alaw(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, trunk={"addresses": ["203.0.113.5", "198.51.100.0/28"]})
    pjsip = render_config(settings)["pjsip.conf"]
    trunk = section(pjsip, "carrier-trunk")
    assert "context = hotline-inbound" in trunk
    assert "identify_by = ip" in trunk
    assert "allow = !all,alaw,ulaw" in trunk
    assert "dtmf_mode = auto" in trunk
    assert "trust_id_inbound = yes" in trunk
    assert not re.search(r"^(auth|outbound_auth|aors)\s*=", trunk, re.M)
    assert re.findall(r"^match = (\S+)$", section(pjsip, "carrier-trunk-identify"), re.M) == [
        "203.0.113.5", "198.51.100.0/28"]
    # The carrier's identity is trusted from the trunk only: never from phones or gateway.
    trusted = [m.start() for m in re.finditer(r"^trust_id_inbound = yes$", pjsip, re.M)]
    assert len(trusted) == 1 and pjsip.rfind("\n[", 0, trusted[0]) == pjsip.index(
        "\n[carrier-trunk](endpoint-common)")
    assert "trust_id_inbound = no" in section(pjsip, "pstn-gateway")
    assert "registration" not in pjsip


def test_trunk_by_registration_takes_its_secret_from_secrets_toml(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "secrets.toml").write_text('[trunk]\nsecret = "carrier-pw-1"\n')
    config_file = tmp_path / "hotline.toml"
    config_file.write_text(
        f'state_dir = "{state}"\n[asterisk]\nagent_extensions = ["3001"]\n'
        '[trunk]\nserver = "sip.carrier.example:5062"\nusername = "0105551234"\n'
        'dtmf_mode = "inband"\n')
    settings = load_settings(config_file)
    config = render_config(settings)
    pjsip = config["pjsip.conf"]
    assert "password = carrier-pw-1" in section(pjsip, "carrier-trunk-auth")
    registration = section(pjsip, "carrier-trunk-registration")
    assert "server_uri = sip:sip.carrier.example:5062" in registration
    assert "client_uri = sip:0105551234@sip.carrier.example:5062" in registration
    assert "outbound_auth = carrier-trunk-auth" in registration
    assert "endpoint = carrier-trunk" in registration and "line = yes" in registration
    assert "dtmf_mode = inband" in section(pjsip, "carrier-trunk")
    assert "match = sip.carrier.example" in section(pjsip, "carrier-trunk-identify")
    assert "load = res_pjsip_outbound_registration.so" in config["modules.conf"]
    # The secret stays where secrets are: not in hotline.toml, only in pjsip.conf.
    assert [n for n, t in config.items() if "carrier-pw-1" in t] == ["pjsip.conf"]


def test_registration_without_a_secret_says_where_to_put_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, trunk={"server": "sip.carrier.example",
                                              "username": "0105551234"})
    with pytest.raises(ConfigRenderError, match=r"secrets\.toml as \[trunk\] secret"):
        render_config(settings)
    settings.trunk.secret = "pw;with-comment"  # type: ignore[union-attr]
    with pytest.raises(ConfigRenderError, match=r"trunk\.secret contains"):
        render_config(settings)


@pytest.mark.parametrize(("values", "message"), [
    ({}, "addresses, a registration server, or both"),
    ({"server": "sip.carrier.example"}, "needs a username"),
    ({"addresses": ["0.0.0.0/0"]}, "not every address"),
    ({"addresses": ["not-an-address"]}, "addresses"),
])
def test_bad_trunk_settings_are_named(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrunkSettings(**values)  # type: ignore[arg-type]


def test_nat_addresses_go_on_the_transports_only_when_set(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sip_transport={
        "external_signaling_address": "198.51.100.7", "external_media_address": "198.51.100.8",
        "local_net": ["10.0.0.0/8", "192.168.1.0/24"]})
    transport = section(render_config(settings)["pjsip.conf"], "transport-udp")
    assert "external_signaling_address = 198.51.100.7" in transport
    assert "external_media_address = 198.51.100.8" in transport
    assert re.findall(r"^local_net = (\S+)$", transport, re.M) == [
        "10.0.0.0/8", "192.168.1.0/24"]


def test_tls_and_srtp_for_agent_phones_when_a_certificate_is_set(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sip_transport={
        "tls_cert_file": "/etc/asterisk/keys/hotline.crt",
        "tls_key_file": "/etc/asterisk/keys/hotline.key", "tls_port": 5071})
    config = render_config(settings)
    pjsip = config["pjsip.conf"]
    tls = section(pjsip, "transport-tls")
    assert "protocol = tls" in tls and "bind = 127.0.0.1:5071" in tls
    assert "cert_file = /etc/asterisk/keys/hotline.crt" in tls
    assert "priv_key_file = /etc/asterisk/keys/hotline.key" in tls
    for extension in ("3001", "3002"):
        agent = section(pjsip, extension)
        assert "transport = transport-tls" in agent and "media_encryption = sdes" in agent
    assert "media_encryption" not in section(pjsip, "1001")  # the local softphone stays UDP
    assert "load = res_srtp.so" in config["modules.conf"]
    with pytest.raises(ValidationError, match="go together"):
        SipTransportSettings(tls_cert_file="/etc/asterisk/keys/hotline.crt")


def test_a_trunk_address_cannot_also_be_the_gateways(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, trunk={"addresses": ["127.0.0.0/29"]})
    with pytest.raises(ConfigRenderError, match=r"127\.0\.0\.0/29 overlaps .*127\.0\.0\.1"):
        render_config(settings)
