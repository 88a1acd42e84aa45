"""Where the console finds Asterisk's call recordings: an external Asterisk's directory."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hotline.paths import recording_store
from hotline.settings import SettingsError, load_settings


def settings_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str):
    cfg = tmp_path / "hotline.toml"
    cfg.write_text(toml)
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path / "state"))
    return load_settings(cfg)


def test_an_external_asterisks_recordings_are_read_from_the_configured_mount(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mount = tmp_path / "pbx-monitor"
    (mount / "2026").mkdir(parents=True)
    wav = mount / "2026" / "call-7.wav"
    wav.write_bytes(b"RIFF")
    settings = settings_with(tmp_path, monkeypatch, f'''[asterisk]
mode = "external"
recordings_dir = "{mount}"
recordings_asterisk_dir = "/srv/pbx/monitor"
''')
    store = recording_store(settings)
    assert store is not None
    # Asterisk announces its own path; the console maps it onto the mount.
    assert store.locate("call-7", "/srv/pbx/monitor/2026/call-7.wav") == wav
    assert store.locate("call-7", "/srv/pbx/monitor/../secrets.wav") is None
    assert store.locate("call-7", "/etc/passwd") is None


def test_a_configured_directory_that_is_missing_is_said_and_plays_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_with(tmp_path, monkeypatch,
                             f'[asterisk]\nrecordings_dir = "{tmp_path / "nowhere"}"\n')
    with caplog.at_level(logging.WARNING, "hotline.paths"):
        assert recording_store(settings) is None
    assert "asterisk.recordings_dir" in caplog.text and "nowhere" in caplog.text


def test_the_asterisk_side_path_must_be_absolute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="recordings_asterisk_dir"):
        settings_with(tmp_path, monkeypatch,
                      '[asterisk]\nrecordings_asterisk_dir = "monitor"\n')
