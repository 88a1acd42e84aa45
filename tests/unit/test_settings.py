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
