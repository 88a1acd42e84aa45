"""``hotline backup`` and ``hotline restore`` on real databases: a populated installation
(demo data, a consultation with its call recording, a survey with its spoken comment) backed
up and restored into an empty one on each backend, and across them (SQLite -> PostgreSQL);
the restored one has the same consultations, cases, surveys and files. A restore refuses a
non-empty installation, and a corrupt or cut archive is named and changes nothing."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from crm.demo_data import seed_demo
from crm.storage import dump
from crm.storage.db import make_engine, make_session_factory
from crm.storage.migrate import upgrade
from crm.storage.models import Case, Consultation, ConsultationStep
from crm.storage.survey_models import SurveyResult
from hotline.backup.archive import MANIFEST, BackupError, verify
from hotline.backup.create import create_backup
from hotline.backup.restore import restore_backup
from hotline.settings import Settings
from tests.conftest import _postgres_url

RECORDING = b"RIFF" + bytes(range(256)) * 40
COMMENT = b"RIFF" + b"comment" * 300


async def _run_admin(statement: str) -> None:
    base = _postgres_url()
    assert base is not None
    engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def _admin(statement: str) -> None:
    """On a loop of its own (the fixture may be set up from inside a running test)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _run_admin(statement)).result()


@pytest.fixture
def second_postgres() -> Iterator[str]:
    """A second PostgreSQL database of this process's own, to restore into."""
    base = _postgres_url()
    if base is None:
        pytest.skip("PostgreSQL not prepared: run scripts/postgres-test.sh (make test does)")
    name = f"hotline_test_restore_{os.getpid()}"  # scripts/postgres-test.sh drops it if left
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _admin(f"CREATE DATABASE {name}")
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def empty_schema(url: str) -> None:
    engine = make_engine(url)
    try:
        if engine.dialect.name == "postgresql":
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


def installation(root: Path, url: str) -> Settings:
    settings = Settings(state_dir=root / "state", database={"url": url},
                        asterisk={"recordings_dir": root / "monitor"},
                        survey={"recordings_dir": root / "comments"})
    for folder in (settings.state_dir, root / "monitor", root / "comments"):
        folder.mkdir(parents=True, mode=0o700)
    return settings


async def populate(settings: Settings) -> None:
    url = settings.database_url
    await upgrade(url)
    await seed_demo(url, agent_password="demo-password")
    at = datetime(2026, 11, 30, 9, 15, 4, 250000, tzinfo=UTC)
    engine = make_engine(url)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            call = Consultation(call_id="call-recorded", caller_number="13800138000",
                                caller_name="张三", started_at=at,
                                ended_at=at + timedelta(seconds=95), duration_s=95.0,
                                outcome="to_agent", notes="路灯不亮，已登记")
            session.add(call)
            await session.flush()
            session.add(ConsultationStep(consultation_id=call.id, at=at, kind="recording",
                                         detail={"file": "call-recorded.wav"}))
            session.add(SurveyResult(kind="after_call", survey_call_id="survey-1",
                                     call_id="call-recorded", phone="13800138000",
                                     started_at=at + timedelta(seconds=96), outcome="rated",
                                     score=5, comment_path="2026/11/30/survey-1.wav",
                                     consultation_id=call.id))
    finally:
        await engine.dispose()
    (settings.asterisk.recordings_dir / "call-recorded.wav").write_bytes(RECORDING)
    (settings.asterisk.recordings_dir / "notes.txt").write_text("not a recording")
    comment = settings.survey.recordings_dir / "2026/11/30/survey-1.wav"
    comment.parent.mkdir(parents=True)
    comment.write_bytes(COMMENT)


async def snapshot(url: str) -> dict[str, object]:
    """What a restore must bring back, as comparable values."""
    engine = make_engine(url)
    try:
        async with make_session_factory(engine)() as session:
            calls = (await session.execute(
                select(Consultation.call_id, Consultation.caller_name,
                       Consultation.started_at, Consultation.duration_s, Consultation.notes)
                .order_by(Consultation.call_id))).all()
            cases = (await session.execute(
                select(Case.number, Case.stage, Case.description, Case.deadline, Case.created_at)
                .order_by(Case.number))).all()
            surveys = (await session.execute(
                select(SurveyResult.survey_call_id, SurveyResult.score,
                       SurveyResult.comment_path))).all()
            steps = await session.scalar(select(func.count()).select_from(ConsultationStep))
    finally:
        await engine.dispose()
    return {"calls": calls, "cases": cases, "surveys": surveys, "steps": steps}


def lines() -> tuple[list[str], object]:
    seen: list[str] = []
    return seen, seen.append


@pytest.mark.parametrize("target_kind", ["same backend", "postgres"])
async def test_backup_restores_into_an_empty_installation(
        db_url: str, tmp_path: Path, target_kind: str, request: pytest.FixtureRequest) -> None:
    if target_kind == "postgres" and not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL -> PostgreSQL is the same-backend case")
    await empty_schema(db_url)
    source = installation(tmp_path / "source", db_url)
    await populate(source)
    before = await snapshot(db_url)
    assert before["calls"] and before["cases"] and before["surveys"]
    archive = tmp_path / "hotline.tar.gz"
    progress, say = lines()
    manifest = await create_backup(source, archive, config_file=None, progress=say)
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    assert "recordings/call-recorded.wav" in manifest["files"]
    assert "recordings/notes.txt" not in manifest["files"], "only audio is a recording"
    assert "survey-comments/2026/11/30/survey-1.wav" in manifest["files"]
    assert any(line.startswith("table consultations:") for line in progress)

    if db_url.startswith("sqlite") and target_kind == "same backend":
        target_url = f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}"
    else:
        target_url = request.getfixturevalue("second_postgres")
    target = installation(tmp_path / "target", target_url)
    progress.clear()
    await restore_backup(target, archive, progress=say)
    assert any("migrated" in line for line in progress)

    assert await snapshot(target_url) == before
    assert (target.asterisk.recordings_dir / "call-recorded.wav").read_bytes() == RECORDING
    comment = target.survey.recordings_dir / "2026/11/30/survey-1.wav"
    assert comment.read_bytes() == COMMENT
    assert oct(comment.stat().st_mode & 0o777) == "0o600"
    # New rows continue after the restored ids (PostgreSQL's sequences were moved on).
    engine = make_engine(target_url)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            session.add(Consultation(call_id="call-after-restore"))
    finally:
        await engine.dispose()

    # A second restore finds the installation in use and refuses; --force replaces it.
    with pytest.raises(BackupError, match=r"already holds .* rows.*--force.*nothing was changed"):
        await restore_backup(target, archive, progress=say)
    await restore_backup(target, archive, force=True, progress=say)
    assert await snapshot(target_url) == before


def rewrite_member(source: Path, target: Path, name: str, data: bytes) -> None:
    """The archive with one member's content replaced (its manifest entry kept)."""
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for member in old:
            stream = old.extractfile(member)
            assert stream is not None
            content = data if member.name == name else stream.read()
            member.size = len(content)
            new.addfile(member, io.BytesIO(content))


async def test_corrupt_archive_is_named_and_changes_nothing(tmp_path: Path) -> None:
    source = installation(tmp_path / "source", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    await populate(source)
    archive = tmp_path / "good.tar.gz"
    await create_backup(source, archive, config_file=None, progress=lambda line: None)
    assert MANIFEST not in verify(archive)["files"]

    tampered = tmp_path / "tampered.tar.gz"
    rewrite_member(archive, tampered, "recordings/call-recorded.wav", RECORDING[:-1] + b"X")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    target_db = tmp_path / "target.db"
    target = installation(tmp_path / "target", f"sqlite+aiosqlite:///{target_db}")
    for bad, message in ((tampered, "call-recorded.wav does not match its checksum"),
                         (cut, "not a readable backup archive")):
        with pytest.raises(BackupError, match=message) as caught:
            await restore_backup(target, bad, progress=lambda line: None)
        assert "nothing was changed" in str(caught.value)
        assert not target_db.exists()
        assert list(target.asterisk.recordings_dir.iterdir()) == []
        assert list(target.survey.recordings_dir.iterdir()) == []


async def test_settings_without_secrets_unless_asked(tmp_path: Path) -> None:
    settings = installation(tmp_path / "source", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    await populate(settings)
    config = tmp_path / "hotline.toml"
    config.write_text('log_level = "INFO"\n[ami]\nsecret = "s3cret-ami"\nport = 5039\n'
                      '[database]\nurl = "postgresql+asyncpg://hotline:pw-db@db/hotline"\n')
    (settings.state_dir / "secrets.toml").write_text('[web]\nsession_secret = "kept"\n')
    plain = tmp_path / "plain.tar.gz"
    manifest = await create_backup(settings, plain, config_file=config,
                                   progress=lambda line: None)
    assert "settings/secrets.toml" not in manifest["files"]
    with tarfile.open(plain, "r:gz") as tar:
        stream = tar.extractfile("settings/hotline.toml")
        assert stream is not None
        kept = stream.read().decode()
    assert "port = 5039" in kept and "s3cret-ami" not in kept and "pw-db" not in kept
    full = tmp_path / "full.tar.gz"
    manifest = await create_backup(settings, full, config_file=config, with_secrets=True,
                                   progress=lambda line: None)
    assert {"settings/secrets.toml", "settings/hotline.toml"} <= set(manifest["files"])


def hotline_command(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env |= {"HOTLINE_STATE_DIR": str(settings.state_dir),
            "HOTLINE_DATABASE__URL": settings.database_url,
            "HOTLINE_ASTERISK__RECORDINGS_DIR": str(settings.asterisk.recordings_dir),
            "HOTLINE_SURVEY__RECORDINGS_DIR": str(settings.survey.recordings_dir)}
    return subprocess.run([sys.executable, "-m", "hotline.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


async def test_commands(tmp_path: Path) -> None:
    """`hotline backup` and `hotline restore` as an operator runs them: progress on stderr,
    a clear refusal and exit status 1 when the archive is damaged."""
    source = installation(tmp_path / "source", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    await populate(source)
    archive = tmp_path / "backup.tar.gz"
    made = await asyncio.to_thread(hotline_command, source, "backup", str(archive))
    assert made.returncode == 0, made.stderr
    assert "... table consultations:" in made.stderr
    assert "backup written to" in made.stdout and "(no secrets)" in made.stdout

    target = installation(tmp_path / "target", f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:-100])
    refused = await asyncio.to_thread(hotline_command, target, "restore", str(cut))
    assert refused.returncode == 1
    assert "nothing was changed" in refused.stderr and "Traceback" not in refused.stderr
    done = await asyncio.to_thread(hotline_command, target, "restore", str(archive))
    assert done.returncode == 0, done.stderr
    assert "restored the backup of" in done.stdout
    assert await snapshot(target.database_url) == await snapshot(source.database_url)


async def test_dump_reads_one_state_while_the_service_writes(db_url: str) -> None:
    """A backup taken while calls are recorded holds the database as it was at one moment:
    a row committed halfway through is in no table of it."""
    await empty_schema(db_url)
    await upgrade(db_url)
    reader, writer = make_engine(db_url), make_engine(db_url)
    try:
        async with dump.snapshot(reader) as conn:
            consultations = {t.name: t for t in await dump.tables(conn)}["consultations"]
            before = [line async for line in dump.export_rows(conn, consultations)]
            async with make_session_factory(writer)() as session, session.begin():
                session.add(Consultation(call_id="call-during-backup"))
            during = [line async for line in dump.export_rows(conn, consultations)]
        async with dump.snapshot(reader) as conn:
            after = [line async for line in dump.export_rows(conn, consultations)]
    finally:
        await reader.dispose()
        await writer.dispose()
    assert before == during == []
    assert len(after) == 1 and "call-during-backup" in after[0]
