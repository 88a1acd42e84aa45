"""A caller is never dropped because our software failed: the IVR process is killed mid-call
and the dialplan still takes the caller to the agent queue."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

from hotline.settings import Settings
from hotline.sipp import place_call
from ivr.ami import AmiClient
from tests.integration.service_fixtures import service_settings

pytestmark = pytest.mark.asterisk


def service_env(settings: Settings) -> dict[str, str]:
    return {**os.environ,
            "HOTLINE_STATE_DIR": str(settings.state_dir),
            "HOTLINE_DATABASE__URL": settings.database_url,
            "HOTLINE_WEB__PORT": str(settings.web.port),
            "HOTLINE_AMI__PORT": str(settings.ami.port),
            "HOTLINE_AUDIOSOCKET__PORT": str(settings.audiosocket.port),
            "HOTLINE_ASTERISK__SIP_PORT": str(settings.asterisk.sip_port),
            "HOTLINE_SPEECH__PREWARM_PROMPTS": "false"}


async def wait_for_line(stream: asyncio.StreamReader, needle: str, within: float,
                        seen: list[str]) -> str:
    async with asyncio.timeout(within):
        while line := (await stream.readline()).decode(errors="replace"):
            seen.append(line)
            if needle in line:
                return line
    raise AssertionError(f"{needle!r} never logged; output:\n{''.join(seen)}")


async def test_ivr_killed_mid_call_sends_caller_to_queue(asterisk_bed: Settings,
                                                         tmp_path: Path) -> None:
    settings = service_settings(asterisk_bed, tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", "serve", env=service_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    ami = AmiClient(settings.ami, name="failover-test")
    joined = asyncio.Event()
    ami.subscribe("QueueCallerJoin", lambda _: joined.set())
    await ami.start()
    call = None
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        await wait_for_line(proc.stdout, "hotline service up", 60, seen)
        await ami.wait_ready(10)
        call = asyncio.create_task(place_call(settings, caller_number="13711112222",
                                              caller_name="赵六", hold_ms=60000))
        await wait_for_line(proc.stdout, "AudioSocket connected", 20, seen)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await asyncio.wait_for(joined.wait(), 20)
        assert not call.done(), "the caller was dropped"
    finally:
        if call is not None:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await ami.close()
