"""Private files: created owner-only whatever the umask, wider ones tightened (and logged),
journals private and emptied once written, SQLite's files private, retention settings
checked."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm.settings import RetentionSettings
from crm.storage.db import make_engine
from crm.storage.journal import EventJournal
from crm.storage.private_files import (
    PrivateTree,
    open_private,
    private_dir,
    tighten,
    umask,
    write_private,
)
from crm.telephony.events import CallStep
from crm.telephony.steps import KeysEntered, SpeechHeard
from hotline.settings import Settings, SettingsError, load_settings
from ivr.survey_call import write_wav


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The worst case: a process umask that lets everyone read and write."""
    with umask(0):
        yield


def test_new_files_and_directories_are_owner_only_whatever_the_umask(
        tmp_path: Path, open_umask: None) -> None:
    deep = private_dir(tmp_path / "a" / "b" / "c")
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", deep)] == [0o700] * 3
    with open_private(deep / "x.jsonl", "a", encoding="utf-8") as fh:
        fh.write("{}\n")
    write_private(deep / "x.ack", "7")
    assert mode(deep / "x.jsonl") == mode(deep / "x.ack") == 0o600
    assert (deep / "x.ack").read_text() == "7" and not (deep / ".x.ack.tmp").exists()
    with pytest.raises(ValueError, match="writes only"):
        open_private(deep / "x.jsonl", "r")


def test_existing_wider_files_are_tightened_never_widened(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d").chmod(0o755)
    (tmp_path / "d" / "e").chmod(0o775)
    wide = tmp_path / "d" / "e" / "wide.wav"
    wide.write_bytes(b"x")
    wide.chmod(0o666)
    narrow = tmp_path / "d" / "narrow"
    narrow.write_bytes(b"y")
    narrow.chmod(0o400)
    (tmp_path / "d" / "link").symlink_to("/etc/hostname")
    with caplog.at_level(logging.WARNING, logger="crm.storage.private_files"):
        changed = tighten(PrivateTree(tmp_path / "d"))
    assert {(c.path.name, c.before, c.after) for c in changed} == {
        ("d", 0o755, 0o700), ("e", 0o775, 0o700), ("wide.wav", 0o666, 0o600)}
    assert mode(narrow) == 0o400  # never widened
    assert mode(Path("/etc/hostname")) & 0o004  # a link is not followed
    assert sum("tightened" in r.message for r in caplog.records) == 3
    assert tighten(PrivateTree(tmp_path / "d")) == []
    # Group-readable trees (Asterisk's recordings) keep the group's read bit.
    wide.chmod(0o664)
    [change] = tighten(PrivateTree(tmp_path / "d", 0o640, 0o750))
    assert (change.before, change.after) == (0o664, 0o640)


def test_many_changes_are_summed_up_in_the_log(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    for i in range(25):
        (tmp_path / f"{i}.wav").write_bytes(b"x")
        (tmp_path / f"{i}.wav").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="crm.storage.private_files"):
        changed = tighten(PrivateTree(tmp_path, dir_mode=0o777))
    assert len(changed) == 25 and {mode(c.path) for c in changed} == {0o600}
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("tightened /") for m in messages) == 20
    assert f"tightened 25 entries under {tmp_path} in all" in messages[-1]


def test_open_private_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "old.log"
    path.write_text("before\n")
    path.chmod(0o644)
    with open_private(path, "a", encoding="utf-8") as fh:
        fh.write("after\n")
    assert mode(path) == 0o600 and path.read_text() == "before\nafter\n"


def test_journals_are_private_and_emptied_once_written(tmp_path: Path,
                                                       open_umask: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    journal = EventJournal(tmp_path / "journal")
    seq = journal.append(CallStep("c1", SpeechHeard("张三的工单")))
    journal.ack(seq)
    files = sorted((tmp_path / "journal").iterdir())
    assert [p.name for p in files] == ["call-events.ack", "call-events.jsonl"]
    assert mode(tmp_path / "journal") == 0o700 and {mode(p) for p in files} == {0o600}
    # Written entries do not linger: emptied when they are old enough...
    monkeypatch.setattr("crm.storage.journal.COMPACT_AGE", 0.0)
    seq = journal.append(CallStep("c1", KeysEntered("1")))
    assert "keys" in (tmp_path / "journal" / "call-events.jsonl").read_text()
    journal.ack(seq)
    assert (tmp_path / "journal" / "call-events.jsonl").read_text() == ""
    # ... and when the journal closes with everything written; never with something pending.
    monkeypatch.setattr("crm.storage.journal.COMPACT_AGE", 3600.0)
    journal.ack(journal.append(CallStep("c1", KeysEntered("2"))))
    pending = journal.append(CallStep("c2", KeysEntered("3")))
    journal.close()
    reopened = EventJournal(tmp_path / "journal")
    assert [s for s, _ in reopened.pending()] == [pending]
    reopened.ack(pending)
    reopened.close()
    assert (tmp_path / "journal" / "call-events.jsonl").read_text() == ""
    assert mode(tmp_path / "journal" / "call-events.jsonl") == 0o600
    again = EventJournal(tmp_path / "journal")
    assert again.append(CallStep("c3", KeysEntered("4"))) == pending + 1


def test_survey_comments_are_private(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "comments" / "2026" / "11" / "22" / "s-1.wav"
    write_wav(path, b"\x00\x01" * 800)
    assert mode(path) == 0o600
    assert [mode(p) for p in (path.parent, path.parent.parent, path.parents[2],
                              tmp_path / "comments")] == [0o700] * 4


async def test_sqlite_database_and_its_wal_are_private(tmp_path: Path,
                                                       open_umask: None) -> None:
    db = tmp_path / "state" / "hotline.db"
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
            await conn.exec_driver_sql("INSERT INTO t VALUES ('13800138000')")
            wal = [p for p in db.parent.iterdir() if p.name != "hotline.db"]
            assert {p.name for p in wal} >= {"hotline.db-wal"}
            assert {p.name: mode(p) for p in wal} == {p.name: 0o600 for p in wal}
    finally:
        await engine.dispose()
    assert mode(db) == 0o600 and mode(db.parent) == 0o700


def test_a_database_left_readable_by_an_earlier_version_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "hotline.db"
    with umask(0o022):
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        assert mode(db) == 0o644 and mode(tmp_path / "hotline.db-wal") == 0o644
        make_engine(f"sqlite+aiosqlite:///{db}")
        assert mode(db) == mode(tmp_path / "hotline.db-wal") == 0o600
        conn.close()


def test_retention_settings_defaults_and_checks(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    r = Settings(state_dir=tmp_path).retention
    assert (r.steps_days, r.recordings_days, r.survey_comments_days, r.audit_days,
            r.purge_interval_hours) == (365, 180, 180, 730, 24.0)
    assert RetentionSettings(audit_days=0).audit_days == 0  # kept for ever
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HOTLINE_RETENTION__AUDIT_DAYS", "90")
    monkeypatch.setenv("HOTLINE_RETENTION__STEPS_DAYS", "-1")
    with pytest.raises(SettingsError) as failed:
        load_settings(fill_secrets=False)
    assert "retention.steps_days" in str(failed.value)
    monkeypatch.setenv("HOTLINE_RETENTION__STEPS_DAYS", "30")
    with pytest.raises(SettingsError, match="at least 180"):
        load_settings(fill_secrets=False)


def test_umask_is_restored(tmp_path: Path) -> None:
    before = os.umask(0o022)
    try:
        with umask(0o077):
            (tmp_path / "f").write_text("x")
        (tmp_path / "g").write_text("x")
        assert (mode(tmp_path / "f"), mode(tmp_path / "g")) == (0o600, 0o644)
    finally:
        os.umask(before)
