"""Telling the truth after a crash (issue 17): ``hotline serve`` killed with ``kill -9``.

- ``hotline up`` at once, while the killed service is a zombie nobody has reaped: a new
  service is started and ``up`` says "up" only once /healthz reports it healthy; it serves a
  real call; ``status`` and ``down`` say what is true.
- A call that ended while no service ran is closed at the next start from Asterisk's own
  channel event record: the real end time, who hung up, the agent's answer, marked
  reconciled, and the service-level figures count those times.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crm.consultations.recorder import list_consultations
from crm.demo_data import seed_demo
from crm.reports.service_levels.calls import classify
from crm.reports.service_levels.reading import load
from crm.storage.db import make_engine, make_session_factory
from hotline.liveness import fetch_health, process_info
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone
from hotline.tools.sipp import place_call
from ivr.ami.client import AmiClient, AmiEvent
from tests.integration.fault_tools import (
    HeldCaller,
    ServeProcess,
    asterisk_channels,
    fault_settings,
    no_bye_from_asterisk,
    serve_env,
    wait_until,
)
from tests.integration.service_fixtures import hang_up_leftover_calls

pytestmark = pytest.mark.asterisk

ZHANG_SAN = "13800138000"
ROOT = Path(__file__).resolve().parents[2]


TALK_S = 4.0
"""How long 张三 talks with the agent while the service is down."""
DOWN_S = 5.0
"""How long the service stays down after the caller hung up (an outage's length, not a wait
for anything)."""


def operator_env(settings: Settings) -> dict[str, str]:
    """The service's settings, with the test bed's Asterisk as the operator's own (external:
    ``hotline down`` must not stop it)."""
    return {**serve_env(settings), "HOTLINE_ASTERISK__MODE": "external"}


def hotline_cmd(settings: Settings, *args: str, timeout: float = 120) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "hotline.cli", *args],
                          env=operator_env(settings),
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def recorded_pid(settings: Settings) -> int:
    return int((settings.state_dir / "hotline.pid").read_text().split()[0])


async def test_up_after_kill_9_starts_a_service_that_serves(asterisk_bed: Settings,
                                                           tmp_path: Path) -> None:
    settings = fault_settings(asterisk_bed, tmp_path)
    await hang_up_leftover_calls(asterisk_bed)
    # `hotline up` run under a parent that adopts the detached service and never reaps it.
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.subreaper", sys.executable, "-m",
        "hotline.cli", "up", "--no-asterisk", env=operator_env(settings), cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    first_pid = second_pid = None
    try:
        assert holder.stdout is not None
        first_out = (await asyncio.wait_for(holder.stdout.readuntil(b"exit "), 120)).decode()
        assert "The hotline is up (service pid" in first_out and "health: ok" in first_out, \
            first_out
        first_pid = recorded_pid(settings)

        os.kill(first_pid, signal.SIGKILL)
        await wait_until(lambda: (info := process_info(first_pid)) is not None
                         and info.state == "Z", 10, "the killed service is a zombie")
        os.kill(first_pid, 0)  # the pid still "exists": what the old check trusted

        code, out = await asyncio.to_thread(hotline_cmd, settings, "status")
        assert code == 3 and f"pid {first_pid} has died (a zombie" in out, out

        started = time.monotonic()
        code, out = await asyncio.to_thread(hotline_cmd, settings, "up", "--no-asterisk")
        up_s = time.monotonic() - started
        assert code == 0, out
        assert "already running" not in out, out
        assert f"not running: pid {first_pid} has died (a zombie" in out, out
        second_pid = recorded_pid(settings)
        assert second_pid != first_pid
        assert f"The hotline is up (service pid {second_pid}, health: ok)" in out, out
        print(f"\nhotline up after kill -9: {up_s:.1f} s until healthy")

        health = await asyncio.to_thread(fetch_health, settings.web.host, settings.web.port)
        assert health is not None and health["ok"] is True
        assert health["ami"] == "logged_in" and health["audiosocket_port"]

        # It serves: a real call through the test Asterisk is answered by the IVR and
        # recorded by the new service.
        result = await place_call(settings, caller_number=ZHANG_SAN, caller_name="张三",
                                  hold_ms=3000)
        assert result.answered and no_bye_from_asterisk(result), result.events
        engine = make_engine(settings.database_url)
        sessions = make_session_factory(engine)

        async def recorded() -> bool:
            return any(c.caller_number == ZHANG_SAN and c.ended_at is not None
                       and any(s["kind"] == "ivr_connected" for s in c.steps)
                       for c in await list_consultations(sessions))
        try:
            await wait_until(recorded, 20, "the call recorded by the new service")
        finally:
            await engine.dispose()

        code, out = await asyncio.to_thread(hotline_cmd, settings, "status")
        assert code == 0 and f"pid {second_pid}, health ok" in out, out
        code, out = await asyncio.to_thread(hotline_cmd, settings, "down")
        assert code == 0 and f"hotline service stopped (pid {second_pid})" in out, out
        second_pid = None
        code, out = await asyncio.to_thread(hotline_cmd, settings, "status")
        assert code == 3 and "not running" in out, out
    finally:
        if second_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(second_pid, signal.SIGTERM)
        if holder.returncode is None:
            assert holder.stdin is not None
            holder.stdin.close()
            try:
                await asyncio.wait_for(holder.wait(), 30)
            except TimeoutError:
                holder.kill()
                await holder.wait()


@pytest.mark.parametrize("record", ["kept", "missing"])
async def test_a_call_that_ended_while_the_service_was_down_keeps_its_real_end(
        asterisk_bed: Settings, tmp_path: Path, record: str) -> None:
    """张三 is in the IVR when the service is killed; the dialplan queues the caller, agent1's
    phone answers, they talk, and the caller hangs up, all while no service runs. The next
    start closes the consultation from Asterisk's record: the caller's own hang-up time, the
    caller as the party, the agent's answer, marked reconciled; the figures see an answered
    call. ``missing``: without the record (an Asterisk configured without it) the AMI
    resynchronisation closes the call as before, at the time the service came back."""
    settings = fault_settings(asterisk_bed, tmp_path)
    restarted = settings.model_copy(deep=True)
    if record == "missing":
        restarted.asterisk.call_record_file = tmp_path / "no-record.json"
    await hang_up_leftover_calls(asterisk_bed)
    extension = settings.asterisk.agent_extensions[0]  # agent1's desk phone (demo data)
    queue = settings.asterisk.queue_name
    observer = AmiClient(settings.ami, name="crash-observer")
    joined: asyncio.Queue[AmiEvent] = asyncio.Queue()
    connected: asyncio.Queue[AmiEvent] = asyncio.Queue()
    observer.subscribe("QueueCallerJoin", joined.put_nowait)
    observer.subscribe("AgentConnect", connected.put_nowait)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    first = await ServeProcess.start(settings)
    second: ServeProcess | None = None
    member_added = False

    async def ivr_has_written() -> bool:
        found = await list_consultations(sessions)
        return bool(found) and len(found[0].steps) >= 2

    async def closed() -> bool:
        found = await list_consultations(sessions)
        return bool(found) and found[0].ended_at is not None

    try:
        await first.wait_line("hotline service up", 60)
        await seed_demo(settings.database_url)
        await observer.start()
        await observer.wait_ready(10)
        async with AgentPhone(settings, extension, ring_ms=200) as phone:
            added = await observer.action("QueueAdd", Queue=queue,
                                          Interface=f"PJSIP/{extension}", MemberName="agent1")
            assert added.get("Response") == "Success", added.headers
            member_added = True
            async with HeldCaller(settings, number=ZHANG_SAN, name="张三") as caller:
                await first.wait_line("AudioSocket connected", 20)
                await wait_until(ivr_has_written, 10, "the IVR's first steps written")
                first.kill()
                await first.stop()
                call_id = (await asyncio.wait_for(joined.get(), 20)).chan_variables()["CALL_ID"]
                await asyncio.wait_for(connected.get(), 20)
                await phone.wait_answered(10)
                await asyncio.sleep(TALK_S)  # the conversation
                hang_up_from = datetime.now(UTC)
                result = await caller.hang_up()
                hang_up_until = datetime.now(UTC)
            assert no_bye_from_asterisk(result), result.events

            async def no_channels() -> bool:
                return await asterisk_channels(asterisk_bed) == 0
            await wait_until(no_channels, 10, "Asterisk has no channel left")
            [before] = await list_consultations(sessions)
            assert before.call_id == call_id and before.ended_at is None
            await asyncio.sleep(DOWN_S)  # the rest of the outage

            restart_at = datetime.now(UTC)
            second = await ServeProcess.start(restarted)
            await second.wait_line("hotline service up", 60)
            back_at = datetime.now(UTC)
            await second.wait_line("-> logged_in", 20)
            await wait_until(closed, 20, "the consultation closed")
        [consultation] = await list_consultations(sessions)
        assert consultation.call_id == call_id
        assert consultation.started_at is not None and consultation.ended_at is not None
        ended = consultation.ended_at
        real_s = (ended - consultation.started_at).total_seconds()
        assert consultation.duration_s == pytest.approx(real_s, abs=0.01)
        kinds = [s["kind"] for s in consultation.steps]
        if record == "missing":
            assert consultation.hangup_cause == "resynchronised" and ended >= restart_at
            assert "reconciled" not in kinds and "agent_answered" not in kinds
            print(f"\nwithout Asterisk's record (the old close): lasted {real_s:.1f} s, ended "
                  f"{(ended - hang_up_from).total_seconds():+.1f} s from the caller's BYE, "
                  f"outcome {consultation.outcome}, party {consultation.hangup_party}")
            return
        assert hang_up_from - timedelta(seconds=1) <= ended <= hang_up_until + timedelta(
            seconds=1), (hang_up_from, ended, hang_up_until)
        assert consultation.hangup_party == "caller"
        assert consultation.hangup_cause == "16 Normal Clearing"
        assert consultation.outcome == "ivr_fallback"  # the IVR never chose a route
        for kind in ("queued", "agent_answered", "agent_completed", "reconciled"):
            assert kinds.count(kind) == 1, kinds
        answer = next(s for s in consultation.steps if s["kind"] == "agent_answered")
        assert answer["detail"]["agent"] == extension
        mark = next(s for s in consultation.steps if s["kind"] == "reconciled")
        assert mark["detail"] == {"source": "asterisk_cel", "ended_at": ended.isoformat()}

        rows = await load(sessions, consultation.started_at - timedelta(minutes=1),
                          back_at + timedelta(minutes=1))
        [facts] = [classify(row) for row in rows.calls]
        assert facts.disposition == "answered" and facts.queued
        assert facts.wait_s is not None and facts.handle_s is not None
        assert float(facts.handle_s) >= TALK_S - 0.5
        guessed_s = (restart_at - consultation.started_at).total_seconds()
        print(f"\nreconciled: lasted {real_s:.1f} s (ended "
              f"{(ended - hang_up_from).total_seconds():+.3f} s from the caller's BYE); closed "
              f"at the restart it would have lasted >= {guessed_s:.1f} s; queue wait "
              f"{float(facts.wait_s):.1f} s, talk {float(facts.handle_s):.1f} s")
    finally:
        if member_added:
            with contextlib.suppress(Exception):
                await observer.action("QueueRemove", Queue=queue,
                                      Interface=f"PJSIP/{extension}")
        for proc in (first, second):
            if proc is not None:
                await proc.stop()
        await observer.close()
        await engine.dispose()
