"""deploy/: the systemd units pass ``systemd-analyze verify`` without a warning and keep a
low exposure score, the sysusers.d file makes the hotline's system user, and the example
/etc/hotline/hotline.toml is valid settings that put state where the unit says."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hotline.settings import INSTALLED_STATE_DIR, SYSTEM_CONFIG, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = ("hotline.service", "hotline@.service", "hotline-backup.service")
TIMER = "hotline-backup.timer"
INSTALLED_BINARY = "/opt/hotline/venv/bin/hotline"
MAX_EXPOSURE = 3.0
"""systemd-analyze security: 0 is fully confined, 10 not at all; under 3 it says "OK"."""


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here (apt-get install systemd)")
    return tool


def installed_units(tmp_path: Path) -> Path:
    """The units as installed, with ExecStart pointing at this environment's ``hotline``
    (verify checks that the command exists and is executable)."""
    here = Path(sys.executable).parent / "hotline"
    assert here.is_file(), f"{here} missing: pip install -e . first"
    for name in UNITS:
        text = (DEPLOY / "systemd" / name).read_text(encoding="utf-8")
        assert INSTALLED_BINARY in text
        (tmp_path / name).write_text(text.replace(INSTALLED_BINARY, str(here)))
    shutil.copy(DEPLOY / "systemd" / TIMER, tmp_path / TIMER)
    return tmp_path


def unit_service(name: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (systemd repeats keys, so configparser will not do)."""
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / name).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize("name", ["hotline.service", "hotline@main.service",
                                  "hotline-backup.service", TIMER])
def test_units_verify_without_warnings(name: str, tmp_path: Path) -> None:
    tool = analyze()
    units = installed_units(tmp_path)
    if "@" in name:
        shutil.copy(units / "hotline@.service", units / name)
    result = subprocess.run([tool, "verify", str(units / name)], capture_output=True,
                            text=True, timeout=60, check=False)
    # verify exits 0 on an unknown key but says so: both must be clean.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("name", UNITS)
def test_units_are_confined(name: str, tmp_path: Path) -> None:
    tool = analyze()
    units = installed_units(tmp_path)
    result = subprocess.run([tool, "security", "--offline=true", str(units / name)],
                            capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    print(f"{name}: exposure {match.group(1)}")
    assert float(match.group(1)) < MAX_EXPOSURE, result.stdout
    service = unit_service(name)
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("PrivateTmp", "yes"), ("User", "hotline"), ("UMask", "0077"),
                       ("Environment", "HOTLINE_CONFIG=/etc/hotline/%i.toml" if "@" in name
                        else f"HOTLINE_CONFIG={SYSTEM_CONFIG}")):
        assert value in service[key], key


def test_unit_reads_the_installed_settings() -> None:
    service = unit_service("hotline.service")
    env = dict(item.split("=", 1) for item in service["Environment"])
    assert env["HOTLINE_CONFIG"] == str(SYSTEM_CONFIG)
    assert env["HOTLINE_STATE_DIR"] == str(INSTALLED_STATE_DIR)
    assert str(INSTALLED_STATE_DIR) in service["ReadWritePaths"][0].split()
    assert service["StateDirectory"] == ["hotline"]


def test_example_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("HOTLINE_")]:
        monkeypatch.delenv(key)
    settings = load_settings(DEPLOY / "hotline.toml", fill_secrets=False)
    assert settings.state_dir == INSTALLED_STATE_DIR
    assert settings.asterisk.mode == "external"
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.ami.secret == "", "no secret in the settings file"


def test_sysusers_and_tmpfiles_make_user_and_directories(tmp_path: Path) -> None:
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        pytest.skip("systemd-sysusers is not installed here")
    (tmp_path / "etc").mkdir()
    (tmp_path / "usr/lib/sysusers.d").mkdir(parents=True)
    shutil.copy(DEPLOY / "sysusers.d" / "hotline.conf", tmp_path / "usr/lib/sysusers.d")
    subprocess.run([tool, f"--root={tmp_path}"], capture_output=True, text=True, timeout=60,
                   check=True)
    users = {line.split(":")[0]: line.split(":")
             for line in (tmp_path / "etc/passwd").read_text().splitlines()}
    assert users["hotline"][5:] == [str(INSTALLED_STATE_DIR), "/usr/sbin/nologin"]
    groups = {line.split(":")[0]: line.split(":")[3]
              for line in (tmp_path / "etc/group").read_text().splitlines()}
    assert "hotline" in groups["asterisk"].split(","), "reads Asterisk's recordings"
    uid = int(users["hotline"][2])

    tmpfiles = shutil.which("systemd-tmpfiles")
    if tmpfiles is None:
        pytest.skip("systemd-tmpfiles is not installed here")
    (tmp_path / "usr/lib/tmpfiles.d").mkdir(parents=True)
    shutil.copy(DEPLOY / "tmpfiles.d" / "hotline.conf", tmp_path / "usr/lib/tmpfiles.d")
    subprocess.run([tmpfiles, f"--root={tmp_path}", "--create"], capture_output=True,
                   text=True, timeout=60, check=True)
    for inner, owner, mode in (("etc/hotline", 0, 0o750),
                               (str(INSTALLED_STATE_DIR).lstrip("/"), uid, 0o700),
                               ("var/backups/hotline", uid, 0o700)):
        made = (tmp_path / inner).stat()
        assert (made.st_uid, made.st_mode & 0o777) == (owner, mode), inner


def test_installed_hotline_reads_etc_hotline(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    """From a wheel, with no --config and no HOTLINE_CONFIG, /etc/hotline/hotline.toml is
    the settings file (an operator's `sudo -u hotline hotline ...` needs nothing more); a
    checkout never reads it, and --config or HOTLINE_CONFIG win over it."""
    import hotline.settings as settings_module

    for key in [k for k in os.environ if k.startswith("HOTLINE_")]:
        monkeypatch.delenv(key)
    system = tmp_path / "hotline.toml"
    system.write_text(f'state_dir = "{tmp_path / "state"}"\nlog_level = "WARNING"\n')
    monkeypatch.setattr(settings_module, "SYSTEM_CONFIG", system)
    assert settings_module.settings_file() is None, "a checkout ignores /etc/hotline"
    monkeypatch.setattr(settings_module, "checkout_root", lambda: None)
    assert settings_module.settings_file() == system
    assert load_settings(fill_secrets=False).log_level == "WARNING"
    other = tmp_path / "other.toml"
    other.write_text('log_level = "ERROR"\n')
    assert settings_module.settings_file(other) == other
    monkeypatch.setenv("HOTLINE_CONFIG", str(other))
    assert load_settings(fill_secrets=False).log_level == "ERROR"
