"""Retention on SQLite and PostgreSQL: what expired goes (steps and transcripts, recordings,
spoken survey comments, audit entries), what did not stays, the consultation itself stays,
a dry run changes nothing, and the purge is audited. Through ``purge``, the real
``hotline retention purge`` command and the schedule ``hotline serve`` runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm.audit.log import entries
from crm.audit.retention import PurgeReport, RetentionFiles, RetentionPolicy, purge
from crm.settings import RetentionSettings
from crm.storage.db import SessionFactory
from crm.storage.models import AuditLog, Consultation, ConsultationStep
from crm.storage.recordings import RecordingStore
from crm.storage.survey_models import SurveyResult
from hotline.retention import RetentionSchedule, retention_loop
from hotline.settings import REPO_ROOT, Settings

ASTERISK_MONITOR = "/var/spool/asterisk/monitor"
DEFAULTS = RetentionPolicy.from_settings(RetentionSettings())
AGES = {"old": 400, "mid": 200, "new": 10}
"""Days before now each call happened: old is past every period, mid past the recordings'
and comments' (180 d) but not the steps' (365 d), new past none."""
STEP_KINDS = ["ivr_connected", "speech", "keys", "recording", "survey_comment_text"]


@dataclass
class Seeded:
    now: datetime
    monitor: Path
    comments: Path
    recordings: dict[str, Path]
    comment_files: dict[str, Path]
    orphan_recording: Path
    stranger_recording: Path
    orphan_comment: Path

    @property
    def files(self) -> RetentionFiles:
        return RetentionFiles(RecordingStore(self.monitor, ASTERISK_MONITOR), self.comments)


def _aged(path: Path, when: datetime, data: bytes = b"RIFF....WAVE") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


async def seed(sessions: SessionFactory, tmp_path: Path, now: datetime) -> Seeded:
    """Three calls (old, mid, new), each with steps (a transcript among them), a recording
    and a surveyed spoken comment; a recording and a comment whose links were never
    written; a stranger's old file; audit entries of 800 and 100 days ago."""
    monitor, comments = tmp_path / "monitor", tmp_path / "comments"
    monitor.mkdir()
    comments.mkdir()
    recordings, comment_files = {}, {}
    async with sessions() as session, session.begin():
        for name, days in AGES.items():
            at = now - timedelta(days=days)
            call_id = f"call-{name}"
            consultation = Consultation(call_id=call_id, caller_number="13800138000",
                                        caller_name="张三", started_at=at,
                                        ended_at=at + timedelta(minutes=3), duration_s=180.0,
                                        outcome="to_agent", ivr_route="agent")
            session.add(consultation)
            await session.flush()
            recordings[name] = _aged(monitor / f"{call_id}.wav", at + timedelta(minutes=3))
            comment_files[name] = _aged(
                comments / f"{at:%Y/%m/%d}" / f"survey-{name}.wav", at + timedelta(minutes=4))
            details: dict[str, dict[str, Any]] = {
                "ivr_connected": {"caller_known": True}, "speech": {"text": "查询我的工单"},
                "keys": {"keys": "1"}, "recording": {"file": f"{ASTERISK_MONITOR}/{call_id}.wav"},
                "survey_comment_text": {"survey_id": 0, "text": "路灯还是不亮"}}
            session.add_all(ConsultationStep(consultation_id=consultation.id,
                                             at=at + timedelta(seconds=i), kind=kind,
                                             detail=details[kind])
                            for i, kind in enumerate(STEP_KINDS))
            session.add(SurveyResult(kind="after_call", survey_call_id=f"survey-{name}",
                                     call_id=call_id, phone="13800138000", started_at=at,
                                     finished_at=at + timedelta(minutes=5), outcome="rated",
                                     score=4, rated_by="keys",
                                     comment_path=str(comment_files[name]),
                                     comment_seconds=3.5, comment_text="路灯还是不亮",
                                     consultation_id=consultation.id))
        orphan_at = now - timedelta(days=300)
        session.add(Consultation(call_id="call-orphan", caller_number="13900139000",
                                 started_at=orphan_at, outcome="to_agent"))
        for days, actor in ((800, "agent:agent1"), (100, "agent:agent2")):
            session.add(AuditLog(at=now - timedelta(days=days), actor=actor,
                                 action="resident.view", object_type="resident",
                                 object_id="1", detail={}))
    return Seeded(
        now, monitor, comments, recordings, comment_files,
        orphan_recording=_aged(monitor / "call-orphan.wav", orphan_at),
        stranger_recording=_aged(monitor / "not-a-call-of-ours.wav", orphan_at),
        orphan_comment=_aged(comments / f"{orphan_at:%Y/%m/%d}" / "lost-link.wav", orphan_at))


async def snapshot(sessions: SessionFactory, seeded: Seeded) -> dict[str, Any]:
    async with sessions() as session:
        consultations = sorted((c.call_id, c.caller_number, c.started_at, c.ended_at,
                                c.outcome, c.duration_s)
                               for c in await session.scalars(select(Consultation)))
        steps = sorted((s.consultation_id, s.kind, s.detail.get("text"))
                       for s in await session.scalars(select(ConsultationStep)))
        surveys = sorted((s.survey_call_id, s.score, s.comment_path, s.comment_text,
                          s.comment_seconds)
                         for s in await session.scalars(select(SurveyResult)))
        audit_rows = sorted((a.actor, a.at) for a in await session.scalars(select(AuditLog)))
    files = sorted(str(p.relative_to(seeded.monitor.parent))
                   for root in (seeded.monitor, seeded.comments) for p in root.rglob("*"))
    return {"consultations": consultations, "steps": steps, "surveys": surveys,
            "audit": audit_rows, "files": files}


async def steps_of(sessions: SessionFactory, call_id: str) -> list[tuple[str, dict]]:
    async with sessions() as session:
        rows = await session.execute(
            select(ConsultationStep.kind, ConsultationStep.detail)
            .join(Consultation).where(Consultation.call_id == call_id)
            .order_by(ConsultationStep.id))
    return [(kind, detail) for kind, detail in rows]


EXPECTED = {"steps": 3, "consultations_trimmed": 1, "recordings": 3, "recording_links": 2,
            "survey_comments": 3, "survey_comment_links": 2, "comment_transcript_steps": 2,
            "audit_rows": 1}
"""Steps: the old call's three (its recording link and comment transcript go with the
recording and the comment). Recordings: old and mid by link, the orphan by its call id.
Comments: old and mid by link, the lost one from its expired day directory."""


@pytest.fixture
async def seeded(sessions: SessionFactory, tmp_path: Path) -> Seeded:
    return await seed(sessions, tmp_path, datetime.now(UTC))


async def test_a_dry_run_changes_nothing_and_counts_what_would_go(
        sessions: SessionFactory, seeded: Seeded) -> None:
    before = await snapshot(sessions, seeded)
    lines: list[str] = []
    report = await purge(sessions, DEFAULTS, seeded.now, True, files=seeded.files,
                         progress=lines.append)
    assert report.counts() == EXPECTED
    assert await snapshot(sessions, seeded) == before  # not a row, not a file
    assert any(f"{seeded.stranger_recording.parent}" in n and "left alone" in n
               for n in report.notes), report.notes
    text = "\n".join(report.lines())
    assert "would remove 3 step(s) of 1 consultation(s)" in text
    assert "would remove 3 file(s), 2 link(s)" in text and "would remove 1 entry" in text
    assert lines, "no progress reported"


async def test_purge_removes_exactly_what_expired_keeps_the_calls_and_audits_itself(
        sessions: SessionFactory, seeded: Seeded) -> None:
    before = await snapshot(sessions, seeded)
    report = await purge(sessions, DEFAULTS, seeded.now, files=seeded.files)
    assert report.counts() == EXPECTED and not report.dry_run

    after = await snapshot(sessions, seeded)
    # Every consultation stays, with its number, times and outcome (statistics).
    assert after["consultations"] == before["consultations"]
    # Old call: nothing but the note of what retention removed.
    assert await steps_of(sessions, "call-old") == [
        ("steps_removed", {"removed": 3, "by": "retention"})]
    # Mid call: its steps stay, the recording link and the comment transcript are gone.
    assert [k for k, _ in await steps_of(sessions, "call-mid")] == ["ivr_connected", "speech",
                                                                    "keys"]
    assert [k for k, _ in await steps_of(sessions, "call-new")] == STEP_KINDS

    # Files: the expired ones only; empty day directories go with them.
    gone = [seeded.recordings["old"], seeded.recordings["mid"], seeded.orphan_recording,
            seeded.comment_files["old"], seeded.comment_files["mid"], seeded.orphan_comment]
    assert [p for p in gone if p.exists()] == []
    kept = [seeded.recordings["new"], seeded.comment_files["new"], seeded.stranger_recording]
    assert all(p.exists() for p in kept)
    assert not seeded.orphan_comment.parent.exists()
    assert not seeded.comment_files["old"].parent.exists()

    # Surveys keep their score; the expired comments' path and transcript are cleared.
    async with sessions() as session:
        surveys = {s.survey_call_id: s for s in await session.scalars(select(SurveyResult))}
    for name in ("old", "mid"):
        s = surveys[f"survey-{name}"]
        assert (s.score, s.outcome, s.comment_path, s.comment_text) == (4, "rated", None, None)
    assert surveys["survey-new"].comment_text == "路灯还是不亮"
    assert surveys["survey-new"].comment_path == str(seeded.comment_files["new"])

    # Audit: the 800-day-old entry is gone, the 100-day-old stays, and the purge is there.
    [purged] = await entries(sessions, object_type="retention")
    assert (purged.actor, purged.action, purged.object_id) == ("retention", "retention.purge",
                                                               "cli")
    assert {k: purged.detail[k] for k in EXPECTED} == EXPECTED
    assert purged.detail["cutoffs"]["audit"] == (seeded.now - timedelta(days=730)).isoformat()
    assert [a for a, _ in after["audit"]] == ["agent:agent2", "retention"]

    # Nothing is left to remove: a second purge finds nothing and changes nothing.
    again_before = await snapshot(sessions, seeded)
    again = await purge(sessions, DEFAULTS, seeded.now, files=seeded.files)
    assert again.total == 0
    snap = await snapshot(sessions, seeded)
    assert snap["steps"] == again_before["steps"] and snap["files"] == again_before["files"]


async def test_periods_of_zero_keep_everything(sessions: SessionFactory,
                                               seeded: Seeded) -> None:
    keep_all = RetentionPolicy.from_settings(RetentionSettings(
        steps_days=0, recordings_days=0, survey_comments_days=0, audit_days=0))
    before = await snapshot(sessions, seeded)
    report = await purge(sessions, keep_all, seeded.now, files=seeded.files)
    assert report.total == 0 and set(report.cutoffs.values()) == {None}
    after = await snapshot(sessions, seeded)
    assert {k: v for k, v in after.items() if k != "audit"} == {
        k: v for k, v in before.items() if k != "audit"}
    assert "(never)" in "\n".join(report.lines())


async def test_files_not_reachable_here_keep_their_links(sessions: SessionFactory,
                                                         seeded: Seeded) -> None:
    report = await purge(sessions, DEFAULTS, seeded.now, files=RetentionFiles())
    assert (report.recordings, report.recording_links, report.survey_comments) == (0, 0, 0)
    assert len(report.notes) == 2
    old = dict(await steps_of(sessions, "call-old"))
    assert "recording" in old, "a recording link went while its file could not be removed"
    async with sessions() as session:
        s = await session.scalar(select(SurveyResult)
                                 .where(SurveyResult.survey_call_id == "survey-old"))
    # The file is kept track of; only its transcript (text in the database) went.
    assert s.comment_path == str(seeded.comment_files["old"]) and s.comment_text is None
    assert seeded.recordings["old"].exists() and seeded.comment_files["old"].exists()


# -- the command --------------------------------------------------------------------------
def retention_cli(db_url: str, seeded: Seeded, tmp_path: Path,
                  *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOTLINE_STATE_DIR": str(tmp_path / "state"),
           "HOTLINE_DATABASE__URL": db_url,
           "HOTLINE_ASTERISK__RECORDINGS_DIR": str(seeded.monitor),
           "HOTLINE_SURVEY__RECORDINGS_DIR": str(seeded.comments)}
    return subprocess.run([sys.executable, "-m", "hotline.cli", "retention", "purge", *args],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


async def test_the_retention_command_reports_then_purges(
        sessions: SessionFactory, seeded: Seeded, db_url: str, tmp_path: Path) -> None:
    before = await snapshot(sessions, seeded)
    dry = await asyncio.to_thread(retention_cli, db_url, seeded, tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 3 step(s) of 1 consultation(s)" in dry.stdout
    assert "would remove 3 file(s), 2 link(s)" in dry.stdout
    assert "dry run: nothing was removed" in dry.stderr
    assert await snapshot(sessions, seeded) == before

    done = await asyncio.to_thread(retention_cli, db_url, seeded, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "removed 3 step(s) of 1 consultation(s)" in done.stdout
    assert "removed 1 entry" in done.stdout
    assert "... consultation steps: 1/1 consultations" in done.stderr  # progress
    assert not seeded.recordings["old"].exists() and seeded.recordings["new"].exists()
    [purged] = await entries(sessions, object_type="retention")
    assert purged.actor == "retention" and purged.detail["recordings"] == 3


async def test_the_retention_command_refuses_bad_settings(tmp_path: Path) -> None:
    env = {**os.environ, "HOTLINE_STATE_DIR": str(tmp_path),
           "HOTLINE_RETENTION__AUDIT_DAYS": "30"}
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "hotline.cli", "retention", "purge"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "retention" in out.stderr and "at least 180" in out.stderr


# -- the schedule in serve ----------------------------------------------------------------
async def test_the_schedule_purges_at_start_and_again_each_interval(
        sessions: SessionFactory, seeded: Seeded) -> None:
    schedule = RetentionSchedule(sessions, DEFAULTS, seeded.files, interval=0.05)
    schedule.start()
    try:
        first = await schedule.wait_passes(1, within=30)
        assert first is not None and first.counts() == EXPECTED
        last = await schedule.wait_passes(3, within=30)
    finally:
        await schedule.close()
    assert schedule.failures == 0 and schedule.passes >= 3
    assert isinstance(last, PurgeReport) and last.total == 0
    assert not seeded.recordings["old"].exists()
    # Audited once: the passes that found nothing leave no entry.
    [purged] = await entries(sessions, object_type="retention")
    assert purged.object_id == "schedule" and purged.detail["steps"] == 3


async def test_serve_runs_the_schedule_only_when_an_interval_is_set(
        sessions: SessionFactory, tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, retention={"purge_interval_hours": 0})
    async with retention_loop(settings, sessions, RetentionFiles()) as schedule:
        assert schedule is None
    settings.retention.purge_interval_hours = 24
    async with retention_loop(settings, sessions, RetentionFiles()) as schedule:
        assert schedule is not None
        report = await schedule.wait_passes(1, within=30)  # the first pass runs at start
        assert report is not None and report.total == 0
        task = schedule._task
    assert task is not None and task.cancelled()  # stopped with the service
