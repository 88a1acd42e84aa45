"""Installable as a wheel: the wheel built from the sdist carries every data file; installed
into a fresh virtual environment outside the checkout it runs from there, renders the same
Asterisk configuration as the checkout, serves a call on the test Asterisk and keeps all its
state in the state directory it is given, writing nothing next to its code.

Offline on purpose: the wheel is built with ``python -m build --no-isolation`` (build and
setuptools are test extras), and the new environment installs only the wheel itself
(``--no-deps --no-index``). Its dependencies (vosk, the Korean model, SQLAlchemy, ...) are
the test environment's own, made visible by a .pth file holding that site-packages
directory, added after the install so pip never sees the checkout's editable install. A .pth
path line puts the folder on sys.path without running the .pth files inside it (the
editable install's finder), and after the new environment's own site-packages, so
``import hotline`` finds the installed wheel. The tests assert that it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from hotline.assets import ALL_ASSETS
from hotline.settings import INSTALLED_STATE_DIR, Settings
from hotline.tools.sipp import place_call
from tests.integration.service_fixtures import hang_up_leftover_calls, service_settings
from tests.integration.wheel_fixtures import (
    CHECKOUT,
    InstalledHotline,
    ServiceOutput,
    Wheelhouse,
    installed,
    run,
    wheelhouse,
)

__all__ = ["installed", "wheelhouse"]  # fixtures

def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_carries_every_data_file(wheelhouse: Wheelhouse) -> None:
    with zipfile.ZipFile(wheelhouse.wheel) as whl:
        shipped = set(whl.namelist())
    for asset in ALL_ASSETS:
        package_path = f"{asset.package.replace('.', '/')}/{asset.path}"
        source = CHECKOUT / (asset.checkout or package_path)
        files = _files_under(source)
        assert files, f"no files in {source}"
        missing = sorted(f for f in files if f"{package_path}/{f}" not in shipped)
        assert not missing, f"{asset}: not in the wheel: {missing}"
    # The top-level template folders are in the wheel only inside the package.
    assert not [name for name in shipped if name.startswith(("asterisk-config/", "dialplans/"))]


def test_the_installed_wheel_runs_from_its_environment(installed: InstalledHotline) -> None:
    probe = """
import json, sys
import crm, hotline, ivr, speech
from hotline.assets import ALL_ASSETS, asset_dir, checkout_root
from hotline.settings import Settings
print(json.dumps({
    "modules": [m.__file__ for m in (crm, hotline, ivr, speech)],
    "assets": [str(asset_dir(a)) for a in ALL_ASSETS],
    "checkout": str(checkout_root()),
    "state_dir": str(Settings().state_dir),
    "sys_path": sys.path,
}))
"""
    seen = json.loads(run([installed.python, "-c", probe], cwd=installed.workdir,
                          env=installed.env()))
    for path in [*seen["modules"], *seen["assets"]]:
        assert Path(path).is_relative_to(installed.site_packages), path
    assert CHECKOUT not in {Path(p or installed.workdir).resolve() for p in seen["sys_path"]}
    assert seen["checkout"] == "None"
    assert seen["state_dir"] == str(INSTALLED_STATE_DIR)

    state = installed.workdir / "chosen-state"
    chosen = run([installed.python, "-c", probe], cwd=installed.workdir,
                 env=installed.env(HOTLINE_STATE_DIR=state))
    assert json.loads(chosen)["state_dir"] == str(state)


@contextlib.contextmanager
def unchanged(folder: Path) -> Iterator[None]:
    """Assert that nothing under ``folder`` is added, removed or rewritten."""
    def snapshot() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in folder.rglob("*") if p.is_file()}

    before = snapshot()
    yield
    after = snapshot()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"written under {folder}: {changed[:20]}"


@pytest.mark.asterisk
async def test_installed_hotline_renders_config_and_serves_a_call(
        installed: InstalledHotline, asterisk_bed: Settings, tmp_path: Path) -> None:
    settings = service_settings(asterisk_bed, tmp_path)
    state = tmp_path / "state"
    env = installed.env(
        HOTLINE_STATE_DIR=state,
        HOTLINE_ASTERISK__MODE="external",  # the test bed's Asterisk is run by the fixture
        HOTLINE_ASTERISK__SIP_PORT=settings.asterisk.sip_port,
        HOTLINE_AMI__PORT=settings.ami.port,
        HOTLINE_AMI__SECRET=settings.ami.secret,
        HOTLINE_AUDIOSOCKET__PORT=settings.audiosocket.port,
        HOTLINE_WEB__PORT=settings.web.port,
        HOTLINE_SPEECH__PREWARM_PROMPTS="false",
    )
    with unchanged(installed.venv):  # nothing is written next to the code
        # The installed templates render exactly what the checkout's render.
        rendered, expected = tmp_path / "rendered", tmp_path / "from-checkout"
        await asyncio.to_thread(run, [installed.hotline, "asterisk", "render", rendered],
                                cwd=installed.workdir, env=env)
        await asyncio.to_thread(run, [sys.executable, "-m", "hotline.cli", "asterisk",
                                      "render", expected], cwd=CHECKOUT, env=env)
        names = sorted(p.name for p in rendered.iterdir() if p.is_file())
        assert {"extensions.conf", "hotline.conf", "pjsip.conf", "manager.conf"} <= set(names)
        assert names == sorted(p.name for p in expected.iterdir() if p.is_file())
        assert (rendered / "sounds" / "cmn" / "hotline" / "queue-thereare.ulaw").is_file()
        for name in names:
            assert (rendered / name).read_bytes() == (expected / name).read_bytes(), name

        await hang_up_leftover_calls(asterisk_bed)
        proc = await asyncio.create_subprocess_exec(
            installed.hotline, "serve", cwd=installed.workdir, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        output = ServiceOutput(proc.stdout)
        try:
            await output.wait_for("hotline service up", 90)
            await output.wait_for(r"AMI \S+ \(\S+\): \S+ -> logged_in", 20)
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{settings.web.port}/healthz") as response:
                health = await response.json()
                assert response.status == 200, health
            assert health["ok"] and health["ami"] == "logged_in"

            result = await place_call(settings, caller_number="13800138000",
                                      caller_name="张三", keys="5", hold_ms=2500)
            assert result.answered, result.stderr
            started = await output.wait_for(r"call (\S+): started from 138", 10)  # masked
            call_id = started.group(1)
            await output.wait_for(rf"call {re.escape(call_id)}: ended", 20)
            proc.terminate()  # a clean stop writes what the recorder still holds
            assert await asyncio.wait_for(proc.wait(), 30) == 0, "".join(output.lines)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await output.close()

        listed = await asyncio.to_thread(
            run, [installed.hotline, "consultations", "list", "--json"],
            cwd=installed.workdir, env=env)
    rows = json.loads(listed)
    assert [(r["call_id"], r["caller_number"], r["caller_name"]) for r in rows] == [
        (call_id, "13800138000", "张三")]
    # Its state went where it was told: the database, journals and secrets are in there.
    assert (state / "hotline.db").is_file() and (state / "secrets.toml").is_file()
    assert (state / "journal").is_dir()
