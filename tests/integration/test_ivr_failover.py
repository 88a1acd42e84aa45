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

from crm.consultations.recorder import list_consultations
from crm.storage.db import make_engine, make_session_factory
from hotline.settings import Settings
from hotline.tools.sipp import place_call
from ivr.ami.client import AmiClient
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


async def test_a_call_beyond_max_calls_waits_for_an_agent(asterisk_bed: Settings,
                                                          tmp_path: Path) -> None:
    """Overload: with the IVR serving audiosocket.max_calls calls, the next caller is handed
    back to the dialplan at once and queued for an agent, not dropped and not kept waiting
    for an IVR whose prompts come late."""
    settings = service_settings(asterisk_bed, tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", "serve",
        env={**service_env(settings), "HOTLINE_AUDIOSOCKET__MAX_CALLS": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    ami = AmiClient(settings.ami, name="overload-test")
    queued: dict[str, asyncio.Event] = {"13711112222": asyncio.Event(),
                                        "13733334444": asyncio.Event()}

    def on_join(event) -> None:  # type: ignore[no-untyped-def]
        if (number := event.get("CallerIDNum")) in queued:
            queued[number].set()
    ami.subscribe("QueueCallerJoin", on_join)
    await ami.start()
    calls: list[asyncio.Task] = []
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        await wait_for_line(proc.stdout, "hotline service up", 60, seen)
        await ami.wait_ready(10)
        calls.append(asyncio.create_task(place_call(
            settings, caller_number="13711112222", caller_name="赵六", hold_ms=60000)))
        await wait_for_line(proc.stdout, "AudioSocket connected", 20, seen)
        calls.append(asyncio.create_task(place_call(
            settings, caller_number="13733334444", caller_name="钱七", hold_ms=60000)))
        await wait_for_line(proc.stdout, "audiosocket.max_calls", 20, seen)
        await asyncio.wait_for(queued["13733334444"].wait(), 20)
        assert not queued["13711112222"].is_set()  # the first is still in the IVR
        assert not any(call.done() for call in calls), "a caller was dropped"
        proc.terminate()  # a clean stop writes what the recorder holds
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        engine = make_engine(settings.database_url)
        try:
            rows = await list_consultations(make_session_factory(engine))
        finally:
            await engine.dispose()
        steps = {c.caller_number: [s["kind"] for s in c.steps] for c in rows}
        assert "ivr_at_capacity" in steps["13733334444"]
        assert "ivr_at_capacity" not in steps["13711112222"]
    finally:
        for call in calls:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 15)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await ami.close()
