"""``hotline doctor`` against the real Asterisk test bed and a real database (both
backends): a sound installation passes; each part broken on purpose (a wrong AMI secret, a
database one migration behind, a secrets file readable by everyone, a language whose model
directory is missing) is named, with what to change, and the exit status is 1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from crm.storage.db import make_engine
from crm.storage.migrate import alembic_config, upgrade
from hotline.asterisk.layout import INSTANCE_FILE
from hotline.doctor import Finding, examine, exit_status, table
from hotline.settings import Settings
from hotline.tools.bed import free_tcp_port
from tests.integration.fault_tools import ServeProcess

pytestmark = pytest.mark.asterisk


async def fresh_schema(url: str, revision: str = "head") -> None:
    engine = make_engine(url)
    try:
        if engine.dialect.name == "postgresql":
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()
    await upgrade(url, revision)


def previous_revision(url: str) -> str:
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_revision(script.get_current_head())
    assert isinstance(head.down_revision, str)
    return head.down_revision


def installation(bed: Settings, tmp_path: Path, db_url: str) -> Settings:
    """The bed's Asterisk with a state directory of the test's own (the bed's Asterisk
    recorded in it, as `hotline asterisk up` does), a database and a free web port."""
    settings = bed.model_copy(deep=True)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / INSTANCE_FILE).parent.mkdir(mode=0o700)
    (state / INSTANCE_FILE).write_bytes((bed.state_dir / INSTANCE_FILE).read_bytes())
    secrets = state / "secrets.toml"
    secrets.write_text(f'[ami]\nsecret = "{bed.ami.secret}"\n')
    secrets.chmod(0o600)
    settings.state_dir = state
    settings.database.url = db_url
    settings.web.port = free_tcp_port()
    return settings


def line(findings: list[Finding], check: str) -> Finding:
    matching = [f for f in findings if f.check == check]
    assert matching, f"no {check!r} line in\n{table(findings)}"
    return matching[0]


def failed(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status == "FAIL"]


async def test_sound_installation_passes(asterisk_bed: Settings, db_url: str,
                                         tmp_path: Path) -> None:
    await fresh_schema(db_url)
    settings = installation(asterisk_bed, tmp_path, db_url)
    findings = await examine(settings)
    report = table(findings)
    assert failed(findings) == [], report
    assert exit_status(findings) == 0
    for check in ("AMI login", "AMI privileges", "AMI events", "AMI ACL", "Asterisk modules",
                  "clock", "database", "database schema", "permissions", "ownership",
                  "web port",
                  "AudioSocket port", "queue sounds"):
        assert line(findings, check).status == "ok", report
    assert "res_audiosocket" in line(findings, "Asterisk modules").detail
    # Korean has a packaged model; Mandarin and English are keypad only here, and say so.
    assert line(findings, "speech ko").status == "ok", report
    assert "keypad only" in line(findings, "speech en").detail


def wrong_ami_secret(settings: Settings, tmp_path: Path) -> None:
    settings.ami.secret = "not-the-secret"


def asterisk_elsewhere(settings: Settings, tmp_path: Path) -> None:
    settings.ami.port = free_tcp_port()


def database_down(settings: Settings, tmp_path: Path) -> None:
    settings.database.url = f"postgresql+asyncpg://hotline:pw@127.0.0.1:{free_tcp_port()}/x"


def web_port_taken(settings: Settings, tmp_path: Path) -> socket.socket:
    squatter = socket.create_server((settings.web.host, settings.web.port))
    return squatter


def world_readable_secrets(settings: Settings, tmp_path: Path) -> None:
    (settings.state_dir / "secrets.toml").chmod(0o644)


def secrets_of_another_user(settings: Settings, tmp_path: Path) -> None:
    os.chown(settings.state_dir / "secrets.toml", 4242, 4242)


def missing_model_dir(settings: Settings, tmp_path: Path) -> None:
    settings.speech.models["en"] = tmp_path / "models" / "vosk-model-small-en-us-0.15"


BREAKAGES: dict[str, tuple[Callable[[Settings, Path], object], str, str, str]] = {
    "wrong AMI secret": (wrong_ami_secret, "AMI login", "rejected login", "ami.secret"),
    "AMI port without Asterisk": (asterisk_elsewhere, "Asterisk reachable", "not reachable",
                                  "ami.port"),
    "database down": (database_down, "database", "cannot connect", "database.url"),
    "web port taken": (web_port_taken, "web port", "in use by python", "web.port"),
    "secrets file 0644": (world_readable_secrets, "permissions", "secrets.toml is 0644",
                          "chmod 600"),
    "secrets of another user": (secrets_of_another_user, "ownership",
                                "secrets.toml belongs to uid 4242", "chown -R"),
    "missing model dir": (missing_model_dir, "speech en", "vosk-model-small-en-us-0.15",
                          "speech.models.en"),
}


@pytest.mark.parametrize("broken", sorted(BREAKAGES))
async def test_broken_part_is_named(broken: str, asterisk_bed: Settings, tmp_path: Path
                                    ) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    await fresh_schema(url)
    settings = installation(asterisk_bed, tmp_path, url)
    breaker, check, found, fix = BREAKAGES[broken]
    kept = breaker(settings, tmp_path)
    try:
        findings = await examine(settings)
    finally:
        if isinstance(kept, socket.socket):
            kept.close()
    assert [f.check for f in failed(findings)] == [check], table(findings)
    assert found in line(findings, check).detail
    assert fix in line(findings, check).fix
    assert exit_status(findings) == 1


async def test_unmigrated_database_is_named(asterisk_bed: Settings, db_url: str,
                                            tmp_path: Path) -> None:
    previous = previous_revision(db_url)
    await fresh_schema(db_url, previous)
    findings = await examine(installation(asterisk_bed, tmp_path, db_url))
    assert [f.check for f in failed(findings)] == ["database schema"], table(findings)
    assert previous in line(findings, "database schema").detail
    assert "hotline db upgrade" in line(findings, "database schema").fix


def test_command_prints_the_table_and_exits_non_zero(asterisk_bed: Settings,
                                                     tmp_path: Path) -> None:
    """The real command, configured by a settings file as the systemd unit does."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    import asyncio

    asyncio.run(fresh_schema(url))
    settings = installation(asterisk_bed, tmp_path, url)
    config = tmp_path / "hotline.toml"
    values = {"state_dir": str(settings.state_dir),
              "asterisk": {"root_dir": str(settings.asterisk.root_dir)},
              "ami": {"port": settings.ami.port},
              "audiosocket": {"port": settings.audiosocket.port},
              "web": {"port": settings.web.port}, "database": {"url": url}}
    config.write_text("".join(_toml(values)))
    config.chmod(0o640)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    command = [sys.executable, "-m", "hotline.cli", "--config", str(config), "doctor"]
    good = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    print(good.stdout)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "0 FAIL" in good.stdout and "settings file" in good.stdout
    (settings.state_dir / "secrets.toml").write_text('[ami]\nsecret = "wrong"\n')
    bad = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert any(row.startswith("FAIL  AMI login") for row in bad.stdout.splitlines()), bad.stdout


def _toml(values: dict[str, object], prefix: str = "") -> list[str]:
    plain = [f"{k} = {json.dumps(v)}\n" for k, v in values.items() if not isinstance(v, dict)]
    tables = [part for k, v in values.items() if isinstance(v, dict)
              for part in [f"[{prefix}{k}]\n", *_toml(v, f"{prefix}{k}.")]]
    return plain + tables


async def test_running_service_holds_its_ports(asterisk_bed: Settings, tmp_path: Path) -> None:
    """On a live installation the service's own ports are not a fault, and the speech lines
    say what the running service really loaded (its /healthz)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    await fresh_schema(url)
    settings = installation(asterisk_bed, tmp_path, url)
    settings.speech.prompt_cache_dir = (asterisk_bed.speech.prompt_cache_dir
                                        or asterisk_bed.state_dir / "prompt-cache")
    serve = await ServeProcess.start(settings)
    try:
        await serve.wait_line("hotline service up", 90)
        findings = await examine(settings)
    finally:
        await serve.stop()
    report = table(findings)
    assert failed(findings) == [], report
    for check in ("web port", "AudioSocket port"):
        assert "held by the hotline service" in line(findings, check).detail, report
    assert "loaded by the running service" in line(findings, "speech ko").detail, report
