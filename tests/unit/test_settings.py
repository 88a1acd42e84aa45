from pathlib import Path

import pytest

from hotline.settings import SettingsError, load_settings


def test_defaults_work_and_generate_private_secrets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    first = load_settings()
    assert first.ami.host == "127.0.0.1" and first.asterisk.hotline_number == "12345"
    assert len(first.ami.secret) >= 20
    assert (tmp_path / "secrets.toml").stat().st_mode & 0o777 == 0o600
    assert load_settings().ami.secret == first.ami.secret  # reused, not regenerated
    assert first.database_url == f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"


def test_environment_overrides_file(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "hotline.toml"
    cfg.write_text('[ami]\nport = 6000\nusername = "ivr"\n')
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HOTLINE_AMI__PORT", "7000")
    s = load_settings(cfg)
    assert (s.ami.port, s.ami.username) == (7000, "ivr")


def test_errors_name_every_bad_key(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[ami]\nport = "abc"\n[web]\nbogus = 1\n'
                   '[asterisk]\nrtp_start = 20000\nrtp_end = 10000\n')
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    with pytest.raises(SettingsError) as err:
        load_settings(cfg)
    text = str(err.value)
    assert "ami.port" in text and "web.bogus" in text and "rtp_end must be greater" in text


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[ami\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(broken)


# --- the SIP edge: per-agent passwords, gateway addresses, ACL networks ---------------------


def test_each_agent_phone_gets_its_own_password_kept_in_secrets(tmp_path: Path,
                                                                monkeypatch) -> None:
    import tomllib

    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    first = load_settings()
    passwords = first.asterisk.agent_passwords
    assert sorted(passwords) == first.asterisk.agent_extensions == ["2001", "2002", "2003", "2004"]
    assert len(set(passwords.values())) == 4 and all(len(p) >= 20 for p in passwords.values())
    stored = tomllib.loads((tmp_path / "secrets.toml").read_text())
    assert stored["asterisk"]["agent_passwords"] == passwords
    assert "agent_password" not in stored["asterisk"]
    assert stored["ami"]["secret"] == first.ami.secret  # the other secrets are still there
    assert load_settings().asterisk.agent_passwords == passwords  # reused, not regenerated

    # A configured password wins and is not stored; a new extension gets a new one.
    monkeypatch.setenv("HOTLINE_ASTERISK__AGENT_EXTENSIONS", '["2001", "2002", "2005"]')
    monkeypatch.setenv("HOTLINE_ASTERISK__AGENT_PASSWORDS", '{"2002": "set-by-operator"}')
    again = load_settings()
    assert again.asterisk.agent_passwords["2001"] == passwords["2001"]
    assert again.asterisk.agent_passwords["2002"] == "set-by-operator"
    assert again.asterisk.agent_passwords["2005"] not in passwords.values()
    stored = tomllib.loads((tmp_path / "secrets.toml").read_text())
    assert "set-by-operator" not in stored["asterisk"]["agent_passwords"].values()


def test_old_shared_agent_password_is_refused_with_a_clear_message(tmp_path: Path,
                                                                    monkeypatch) -> None:
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    cfg = tmp_path / "hotline.toml"
    cfg.write_text('[asterisk]\nagent_password = "old-pw-123"\n'
                   'softphone_password = "soft-pw-456"\n')
    with pytest.raises(SettingsError, match=r"agent_password .*no longer supported.*"
                                            r"agent_passwords") as err:
        load_settings(cfg)
    assert "old-pw-123" not in str(err.value) and "soft-pw-456" not in str(err.value)
    monkeypatch.setenv("HOTLINE_ASTERISK__AGENT_PASSWORD", "shared")
    with pytest.raises(SettingsError, match="agent_passwords"):
        load_settings()


def test_a_stored_shared_agent_password_is_replaced_by_per_agent_ones(tmp_path: Path,
                                                                       monkeypatch) -> None:
    import tomllib

    (tmp_path / "secrets.toml").write_text(
        '[ami]\nsecret = "kept-ami-secret"\n\n[asterisk]\nagent_password = "old-shared"\n')
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.ami.secret == "kept-ami-secret"
    assert "old-shared" not in settings.asterisk.agent_passwords.values()
    stored = tomllib.loads((tmp_path / "secrets.toml").read_text())
    assert "agent_password" not in stored["asterisk"]
    assert stored["asterisk"]["agent_passwords"] == settings.asterisk.agent_passwords


def test_gateway_addresses_and_sip_networks_are_validated(tmp_path: Path,
                                                          monkeypatch) -> None:
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    defaults = load_settings().asterisk
    assert defaults.gateway_addresses == ["127.0.0.1"]
    assert defaults.sip_permit == ["127.0.0.0/8"] and defaults.sip_contact_permit is None

    cfg = tmp_path / "hotline.toml"
    cfg.write_text('[asterisk]\ngateway_addresses = [" 203.0.113.5/32", "2001:db8::/64"]\n'
                   'sip_permit = ["10.0.0.0/8"]\n')
    a = load_settings(cfg).asterisk
    assert a.gateway_addresses == ["203.0.113.5", "2001:db8::/64"]
    assert a.sip_permit == ["10.0.0.0/8"]

    for body, message in [
        ('gateway_addresses = ["gw.example.org"]', r"asterisk\.gateway_addresses\.0: .*"
                                                   r"not an IP address or a network"),
        ('gateway_addresses = ["10.0.0.5/24"]', "host bits set"),
        ('gateway_addresses = []', r"asterisk\.gateway_addresses"),
        ('gateway_addresses = ["0.0.0.0/0"]', "every address as the PSTN gateway"),
        ('sip_permit = ["10.0.0.256"]', r"asterisk\.sip_permit\.0"),
        ('sip_contact_permit = ["nowhere"]', r"asterisk\.sip_contact_permit\.0"),
        ('agent_passwords = { "9999" = "x" }', r"not in agent_extensions: \['9999'\]"),
    ]:
        cfg.write_text(f"[asterisk]\n{body}\n")
        with pytest.raises(SettingsError, match=message):
            load_settings(cfg)
