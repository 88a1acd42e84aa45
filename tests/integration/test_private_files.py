"""Issue 14 §6 on the real stack: ``hotline serve`` (a real process) on a fresh state
directory left with files an earlier version made readable by everyone; a real SIPp call is
answered by an agent phone (recorded by Asterisk's MixMonitor) and leaves a spoken survey
comment. Every file and directory holding residents' data is then readable by the service's
user only (Asterisk's recordings by its group too), the start-up tightened and logged each
older one, and the retention schedule in serve purged an expired call at start."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sqlite3
import stat
import struct
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from crm.demo_data import seed_demo
from crm.storage.db import make_engine, make_session_factory
from crm.storage.migrate import upgrade
from crm.storage.models import AuditLog, Consultation, ConsultationStep
from hotline.asterisk import cli
from hotline.asterisk.layout import Installation
from hotline.asterisk.process import daemon_pid
from hotline.paths import recording_store
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone
from hotline.tools.sipp import place_call
from tests.integration.fault_tools import ServeProcess, fault_settings, wait_until
from tests.integration.service_fixtures import hang_up_leftover_calls

pytestmark = pytest.mark.asterisk


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def loud_tone(path: Path, seconds: float) -> Path:
    """A tone loud enough to count as speech for the survey comment."""
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000)))
                      for i in range(int(8000 * seconds)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)
    return path


def earlier_version_files(state: Path) -> list[Path]:
    """What an earlier version left under a 0022 umask: readable by every user."""
    made = []
    for rel, data in (("journal/call-events.jsonl", b""), ("log/hotline.log", b"old log\n"),
                      ("survey-comments/2026/01/02/old.wav", b"RIFF"),
                      ("prompt-cache/cmn/old.pcm", b"\0\0")):
        path = state / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        made.append(path)
    for path in [state, *(p for p in state.rglob("*"))]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return made


async def seed_expired_call(url: str) -> None:
    """A call of 400 days ago with a transcript step: the schedule removes the step."""
    engine = make_engine(url)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            at = datetime.now(UTC) - timedelta(days=400)
            call = Consultation(call_id="call-expired", caller_number="13900139000",
                                started_at=at, ended_at=at + timedelta(minutes=2),
                                outcome="ivr_completed")
            session.add(call)
            await session.flush()
            session.add(ConsultationStep(consultation_id=call.id, at=at, kind="speech",
                                         detail={"text": "我家的地址是..."}))
    finally:
        await engine.dispose()


def asterisk_umask(bed: Settings) -> str:
    installation = Installation.load(bed.state_dir)
    pid = daemon_pid(installation) if installation is not None else None
    if pid is None:
        return "(not running)"
    status = Path(f"/proc/{pid}/status").read_text()
    return next((line.split()[1] for line in status.splitlines()
                 if line.startswith("Umask:")), "(unknown)")


async def test_personal_data_on_disk_is_for_the_service_user_only(
        asterisk_bed: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = fault_settings(asterisk_bed, tmp_path)
    state = settings.state_dir
    state.mkdir()
    settings.database.url = f"sqlite+aiosqlite:///{state / 'hotline.db'}"
    settings.speech.prompt_cache_dir = state / "prompt-cache"
    store = recording_store(asterisk_bed)
    assert store is not None, "the bed's monitor directory is not reachable"
    wide = earlier_version_files(state)
    # The database too, as SQLite makes it under a 0022 umask.
    sqlite3.connect(state / "hotline.db").close()
    (state / "hotline.db").chmod(0o644)
    await upgrade(settings.database_url)
    await seed_demo(settings.database_url)
    await seed_expired_call(settings.database_url)
    for key, value in {"HOTLINE_ASTERISK__RECORDINGS_DIR": str(store.host_dir),
                       "HOTLINE_ASTERISK__RECORDINGS_ASTERISK_DIR": store.asterisk_dir,
                       "HOTLINE_SURVEY__COMMENT_MAX_SECONDS": "2",
                       "HOTLINE_SURVEY__COMMENT_SILENCE_SECONDS": "1"}.items():
        monkeypatch.setenv(key, value)
    await hang_up_leftover_calls(asterisk_bed)

    serve = await ServeProcess.start(settings)
    call_id = None
    try:
        await serve.wait_line("hotline service up", 90)
        # Start-up tightened what the earlier version left, and said so.
        for path in [state, *wide, *(p.parent for p in wide)]:
            await serve.wait_line(f"tightened {path} ", 1)
        # The schedule's first purge ran at start: the expired call lost its transcript.
        await serve.wait_line("retention purge: steps 1,", 30)

        extension = settings.asterisk.agent_extensions[0]
        async with AgentPhone(settings, extension, ring_ms=200, hold_ms=1500) as phone:
            cli(asterisk_bed, f"queue add member PJSIP/{extension} to "
                              f"{settings.asterisk.queue_name}")
            try:
                # '#' at the greeting (no case number): on to an agent at once; the agent
                # hangs up after 1.5 s; the survey takes the rating (keys 4) and then the
                # tone as a spoken comment (2 s at most).
                call = asyncio.ensure_future(place_call(
                    settings, caller_number="13800138000", caller_name="张三",
                    keys="#" + "," * 9 + "4" + ",,,4,,,4,,,4",
                    audio=loud_tone(tmp_path / "tone.wav", 40), hold_ms=45_000,
                    wait_for_bye=True))
                try:
                    await phone.wait_answered(30)
                    await serve.wait_line("comment of", 60)
                    result = await asyncio.wait_for(call, 30)
                finally:
                    call.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await call
            finally:
                cli(asterisk_bed, f"queue remove member PJSIP/{extension} from "
                                  f"{settings.asterisk.queue_name}")
        assert result.answered

        engine = make_engine(settings.database_url)
        sessions = make_session_factory(engine)
        try:
            async def recorded() -> bool:
                async with sessions() as session:
                    return bool(await session.scalar(
                        select(ConsultationStep.id).join(Consultation)
                        .where(Consultation.call_id != "call-expired",
                               Consultation.ended_at.is_not(None),
                               ConsultationStep.kind == "recording")))

            await wait_until(recorded, 20, "the call ended with its recording linked")
            async with sessions() as session:
                call_id = await session.scalar(select(Consultation.call_id).where(
                    Consultation.call_id != "call-expired"))
                expired_steps = list(await session.scalars(
                    select(ConsultationStep.kind).join(Consultation)
                    .where(Consultation.call_id == "call-expired")))
                [purge_entry] = await session.scalars(
                    select(AuditLog).where(AuditLog.action == "retention.purge"))
        finally:
            await engine.dispose()
        assert expired_steps == ["steps_removed"]
        assert (purge_entry.actor, purge_entry.object_id) == ("retention", "schedule")
    finally:
        await serve.stop()

    # Every file and directory the service keeps: owner only.
    entries = [state, *state.rglob("*")]
    kinds = {p.relative_to(state).parts[0] for p in entries if p != state}
    assert {"hotline.db", "secrets.toml", "journal", "log", "survey-comments",
            "prompt-cache"} <= kinds, kinds
    wider = {str(p): oct(mode(p)) for p in entries
             if mode(p) != (0o700 if p.is_dir() else 0o600)}
    assert wider == {}
    comments = [p for p in (state / "survey-comments").rglob("*.wav") if p.name != "old.wav"]
    assert len(comments) == 1, "the spoken comment was not written"
    assert len(list((state / "journal").glob("*.jsonl"))) >= 2
    assert len(list((state / "prompt-cache").rglob("*"))) > 2, "no prompt was cached"

    # Asterisk's recording of the call: Asterisk's user writes, its group (the hotline)
    # reads, nobody else; the monitor directory likewise.
    assert call_id is not None
    recording = store.locate(call_id, None)
    assert recording is not None, f"no recording of {call_id} in {store.host_dir}"
    why = (f"Asterisk runs with umask {asterisk_umask(asterisk_bed)}; it must be started "
           "with crm.storage.private_files.ASTERISK_UMASK (0027)")
    assert mode(recording) & 0o137 == 0, f"recording {oct(mode(recording))}: {why}"
    assert mode(store.host_dir) & 0o027 == 0, oct(mode(store.host_dir))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(recording)
