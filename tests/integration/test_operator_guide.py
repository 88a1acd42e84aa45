"""docs/operating.md followed step by step, as an operator would on a fresh server: the wheel
in a fresh virtual environment, the example settings file edited, the database migrated, the
rendered Asterisk configuration installed into the test Asterisk (standing in for the
operator's, external mode), an agent account, the service started as the systemd unit starts
it, `hotline doctor` passing, a call answered by the IVR and its consultation listed; then
one part broken on purpose (the AMI secret) and doctor naming it.

Every command run here is a line of the guide (the test asserts it is there, word for word)
with only these substitutions: the server's paths are under a temporary root, the hotline
user is the test's own (root), the Asterisk-side lines run inside the test Asterisk's root
(``chroot``), and the database is the suite's PostgreSQL (its URL in hotline.env, as the
guide says for a database with a password)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from crm.storage.db import make_engine
from hotline.asterisk.layout import chroot_installation
from hotline.asterisk.process import run_cli
from hotline.settings import Settings
from hotline.tools.bed import free_tcp_port
from hotline.tools.sipp import place_call
from tests.integration.service_fixtures import hang_up_leftover_calls
from tests.integration.wheel_fixtures import (
    CHECKOUT,
    InstalledHotline,
    ServiceOutput,
    installed,
    wheelhouse,
)

__all__ = ["installed", "wheelhouse"]  # fixtures

pytestmark = pytest.mark.asterisk

GUIDE = CHECKOUT / "docs" / "operating.md"
UNIT = CHECKOUT / "deploy" / "systemd" / "hotline.service"
HL = ("sudo -u hotline sh -c 'set -a; . /etc/hotline/hotline.env; "
      "exec /opt/hotline/venv/bin/hotline \"$@\"' hl")
"""The guide's `hl`: a hotline command as the hotline user, with hotline.env loaded."""
RENDERED = "/tmp/hotline-asterisk"
COMMAND_TIMEOUT = 60.0


def guide_lines() -> list[str]:
    """The command lines of the guide's ``sh`` blocks, without trailing comments."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S):
        for raw in block.splitlines():
            line = re.split(r"\s+#\s", raw, maxsplit=1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


class Server:
    """The operator's server: paths under ``root``, the wheel in ``installed``'s venv, the
    test Asterisk in ``asterisk_root``."""

    def __init__(self, root: Path, hotline: InstalledHotline, bed: Settings) -> None:
        self.root = root
        self.hotline = hotline
        self.asterisk_root = bed.asterisk.root_dir
        self.lines = guide_lines()
        self.path_dir = root / "usr" / "local" / "bin"
        self.path_dir.mkdir(parents=True)
        # `asterisk` on PATH, as on the operator's server: the test Asterisk's binary.
        wrapper = self.path_dir / "asterisk"
        wrapper.write_text("#!/bin/sh\nexec chroot "
                           f"{shlex.quote(str(self.asterisk_root))} /usr/sbin/asterisk \"$@\"\n")
        wrapper.chmod(0o755)

    def step(self, line: str) -> str:
        assert line in self.lines, f"not a command line of {GUIDE.name}: {line}"
        return line

    def host_path(self, line: str) -> str:
        """``line`` with the server's paths replaced by this test's."""
        for server, here in (("/opt/hotline/venv", self.hotline.venv),
                             ("/etc/hotline", self.root / "etc" / "hotline"),
                             ("/var/lib/hotline", self.root / "var" / "lib" / "hotline"),
                             ("/var/backups/hotline", self.root / "var" / "backups" / "hotline"),
                             ("deploy/", CHECKOUT / "deploy"),
                             (RENDERED, self.asterisk_root / RENDERED.lstrip("/"))):
            line = line.replace(server, str(here) + ("/" if server.endswith("/") else ""))
        return line

    def env(self, **extra: str | Path) -> dict[str, str]:
        env = self.hotline.env(**{
            "HOTLINE_CONFIG": self.root / "etc" / "hotline" / "hotline.toml", **extra})
        env["PATH"] = f"{self.path_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def on_host(self, line: str, *, stdin: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """A guide line on the server, as root (the test's user stands in for hotline)."""
        return self._run(self.step(line), stdin, check)

    def hl(self, args: str, extra: str = "", stdin: str | None = None
           ) -> subprocess.CompletedProcess[str]:
        """The guide's ``hl ARGS`` (its definition is in the guide too), with ``extra``
        options the test adds."""
        assert HL in GUIDE.read_text(encoding="utf-8"), f"{GUIDE.name} defines hl otherwise"
        self.step(f"hl {args}")
        return self._run(f"{HL} {args} {extra}".rstrip(), stdin, check=True)

    def _run(self, line: str, stdin: str | None, check: bool
             ) -> subprocess.CompletedProcess[str]:
        command = self.host_path(line).replace("sudo -u hotline ", "").replace("sudo ", "")
        command = re.sub(r"-([og]) hotline\b", r"-\1 root", command)
        done = subprocess.run(["sh", "-c", command], cwd=self.hotline.workdir,
                              env=self.env(), input=stdin, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, check=False)
        if check:
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        return done

    def in_asterisk_root(self, line: str) -> str:
        """A guide line for the Asterisk host, run inside the test Asterisk's root."""
        done = subprocess.run(["chroot", str(self.asterisk_root), "sh", "-c", self.step(line)],
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              check=False)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture
def asterisk_config_restored(asterisk_bed: Settings) -> Iterator[None]:
    """The test Asterisk's /etc/asterisk as it was, after the test installed the guide's."""
    root = asterisk_bed.asterisk.root_dir
    kept = root / "etc" / "asterisk.before-hotline"
    shutil.rmtree(kept, ignore_errors=True)  # a run killed half-way left it
    try:
        yield
    finally:
        if kept.is_dir():
            shutil.rmtree(root / "etc" / "asterisk")
            kept.rename(root / "etc" / "asterisk")
            run_cli(chroot_installation(root), "core reload")


async def empty_database(url: str) -> None:
    """What `createdb` gives: a database without tables."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


def edit_settings(path: Path, values: dict[str, dict[str, object] | object]) -> None:
    """The operator's editor: the example's keys set to this server's values, the example's
    comments and other keys kept."""
    text_ = path.read_text(encoding="utf-8")
    section = ""
    out = []
    pending = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    for line in text_.splitlines():
        if header := re.match(r"^\[(\w+)\]\s*$", line):
            out += _leftover(pending, section)
            section = header.group(1)
        elif match := re.match(r"^(\w+)\s*=", line):
            key = match.group(1)
            table = pending.get(section) if section else pending
            if isinstance(table, dict) and key in table:
                line = f"{key} = {json.dumps(table.pop(key), ensure_ascii=False)}"
        out.append(line)
    out += _leftover(pending, section)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    tomllib.loads(path.read_text(encoding="utf-8"))  # still valid TOML


def _leftover(pending: dict[str, object], section: str) -> list[str]:
    table = pending.get(section) if section else None
    if not isinstance(table, dict):
        return []
    lines = [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in table.items()]
    table.clear()
    return lines


def unit_service(unit: Path) -> tuple[dict[str, str], list[str], str]:
    """Environment=, EnvironmentFile= (without its '-') and ExecStart= of a unit file."""
    env, files, start = {}, [], ""
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            name, _, setting = value.partition("=")
            env[name] = setting
        elif key == "EnvironmentFile":
            files.append(value.lstrip("-"))
        elif key == "ExecStart":
            start = value
    return env, files, start


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


async def test_the_operator_guide_ends_with_a_served_call(
        installed: InstalledHotline, asterisk_bed: Settings, postgres_database: str,
        asterisk_config_restored: None, tmp_path: Path) -> None:
    server = Server(tmp_path / "server", installed, asterisk_bed)
    root = server.root

    # 1. Directories as tmpfiles.d makes them (the test's user owns them).
    server.step("systemd-tmpfiles --create /usr/lib/tmpfiles.d/hotline.conf")
    for line in (CHECKOUT / "deploy" / "tmpfiles.d" / "hotline.conf").read_text().splitlines():
        if line.startswith("d "):
            _, path, mode, *_ = line.split()
            directory = root / path.lstrip("/")
            directory.mkdir(parents=True)
            directory.chmod(int(mode, 8))

    # 2. The wheel in a fresh virtual environment: the `installed` fixture, offline.
    server.step("python3 -m venv /opt/hotline/venv")
    server.step("/opt/hotline/venv/bin/pip install community_hotline-0.1.0-py3-none-any.whl")

    # 3. Settings and secrets.
    server.on_host("install -o root -g hotline -m 0640 deploy/hotline.toml "
                   "/etc/hotline/hotline.toml")
    config = root / "etc" / "hotline" / "hotline.toml"
    web_port = free_tcp_port()
    bed = asterisk_bed
    edit_settings(config, {
        "state_dir": str(root / "var" / "lib" / "hotline"),
        "asterisk": {"sip_port": bed.asterisk.sip_port, "metrics_port": bed.asterisk.metrics_port,
                     "recordings_dir": str(server.asterisk_root / "var/spool/asterisk/monitor")},
        "ami": {"port": bed.ami.port},
        "audiosocket": {"port": bed.audiosocket.port},
        "web": {"port": web_port},
    })
    server.on_host("install -o hotline -g hotline -m 0600 deploy/hotline.env "
                   "/etc/hotline/hotline.env")
    secrets_env = root / "etc" / "hotline" / "hotline.env"
    with secrets_env.open("a") as fh:  # a database with a password: its URL goes here
        fh.write(f"HOTLINE_DATABASE__URL={postgres_database}\n")

    # 4. PostgreSQL: a database of its own (createuser/createdb), then the schema.
    server.step("sudo -u postgres createdb --owner hotline hotline")
    await empty_database(postgres_database)
    server.hl("db upgrade")
    assert (root / "var/lib/hotline/secrets.toml").is_file()

    # 5. The Asterisk configuration, rendered and installed into the test Asterisk.
    server.hl(f"asterisk render {RENDERED}")
    for line in server.lines[server.lines.index(f"hl asterisk render {RENDERED}") + 1:]:
        if line.startswith("hl "):
            break
        server.in_asterisk_root(line)
    assert not (server.asterisk_root / RENDERED.lstrip("/")).exists()
    await hang_up_leftover_calls(bed)

    # 6. Speech models: none to install here (no model archives offline); Korean is packaged.
    status = server.hl("speech status").stdout
    assert "ko: speech recognition" in status, status

    # 7. Accounts.
    for args in ("agents create lihua --name 李华 --role supervisor --extension 2001",
                 "agents create wangfang --name 王芳 --extension 2002"):
        server.hl(args, "--password-stdin", "correct horse battery\n")
    server.hl("agents set-languages wangfang cmn,en")

    # 8. Start: the unit's command with the unit's environment.
    unit_env, unit_files, exec_start = unit_service(UNIT)
    server.step("systemctl enable --now hotline")
    env = server.env(**{k: server.host_path(v) for k, v in unit_env.items()})
    for name in unit_files:
        env |= env_file(Path(server.host_path(name)))
    proc = await asyncio.create_subprocess_exec(
        *shlex.split(server.host_path(exec_start)), cwd=installed.workdir, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    output = ServiceOutput(proc.stdout)
    doctor = ("sudo sh -c 'set -a; . /etc/hotline/hotline.env; "
              "exec /opt/hotline/venv/bin/hotline doctor'")
    try:
        await output.wait_for("hotline service up", 60)
        await output.wait_for(r"AMI \S+ \(\S+\): \S+ -> logged_in", 20)

        # 9. Check it.
        good = await asyncio.to_thread(server.on_host, doctor, check=False)
        print(good.stdout)
        assert good.returncode == 0, good.stdout + good.stderr
        assert re.search(r"^ok\s+AMI login", good.stdout, re.M), good.stdout
        assert re.search(r"^ok\s+Asterisk modules", good.stdout, re.M), good.stdout

        # A call, answered by the IVR.
        result = await place_call(bed, caller_number="13800138000", caller_name="张三",
                                  keys="5", hold_ms=2500)
        assert result.answered, result.stderr
        started = await output.wait_for(r"call (\S+): started from 138", 10)  # masked
        call_id = started.group(1)
        await output.wait_for(rf"call {re.escape(call_id)}: ended", 20)
        proc.terminate()  # systemctl stop
        assert await asyncio.wait_for(proc.wait(), 30) == 0, "".join(output.lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await output.close()

    listed = server.hl("consultations list --json").stdout
    rows = json.loads(listed)
    assert [(r["call_id"], r["caller_number"]) for r in rows] == [(call_id, "13800138000")]

    # One part broken on purpose: an AMI secret in hotline.env that Asterisk does not know.
    with secrets_env.open("a") as fh:
        fh.write("HOTLINE_AMI__SECRET=not-the-secret\n")
    bad = await asyncio.to_thread(server.on_host, doctor, check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    failing = [row for row in bad.stdout.splitlines() if row.startswith("FAIL")]
    assert len(failing) == 1 and "AMI login" in failing[0], bad.stdout
    assert "ami.secret" in bad.stdout, bad.stdout
    assert os.stat(config).st_mode & 0o777 == 0o640
