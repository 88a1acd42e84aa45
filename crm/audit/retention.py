"""Retention: residents' data is removed once it has been kept as long as the settings say.

What expires, each after its own period (``RetentionPolicy``; days from the call's start,
the survey's start, the audit entry's time):

- a consultation's steps (IVR path, keys, transcripts of what the caller said); the
  consultation row itself (number, times, outcome, route, agent) stays as statistics and
  gets one ``steps_removed`` step saying how many were removed;
- call recordings: the file in Asterisk's monitor directory and its ``recording`` step (a
  link kept until the file is gone, also when the steps expire first); files there named
  after an expired consultation's call id are removed even without a link;
- spoken survey comments: the wav file, its path and transcript on the survey (the score
  stays) and the ``survey_comment_text`` steps; day directories of comments
  (``YYYY/MM/DD``) wholly before the cut-off are emptied of wav files and removed;
- audit log entries.

:func:`purge` removes them (or, with ``dry_run``, only counts them) in small batches, each
its own transaction, deleting a file before the row that links it, so an interrupted purge
resumes where it stopped. It writes one audit entry (actor ``retention``) with the counts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from crm.audit import log as audit
from crm.settings import RetentionSettings
from crm.storage.db import SessionFactory
from crm.storage.models import AuditLog, Consultation, ConsultationStep
from crm.storage.recordings import CONTENT_TYPES, RecordingStore, survey_comment_file
from crm.storage.survey_models import SurveyResult

log = logging.getLogger(__name__)

ACTOR = "retention"
STEPS_REMOVED = "steps_removed"
"""The step left on a consultation whose steps expired (detail: how many were removed)."""
RECORDING = "recording"
COMMENT_TEXT = "survey_comment_text"
KEPT_KINDS = (RECORDING, STEPS_REMOVED)
"""Steps the steps purge leaves: recording links expire with the recordings."""
BATCH = 500
AUDIT_BATCH = 5000
MAX_SWEEP_FILES = 2_000_000
"""A bound on the files one purge looks at in a recordings or comments directory."""
_DAY_DIR = re.compile(r"\d{4}/\d{2}/\d{2}")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of data is kept; None keeps it for ever."""

    steps: timedelta | None = timedelta(days=365)
    recordings: timedelta | None = timedelta(days=180)
    survey_comments: timedelta | None = timedelta(days=180)
    audit: timedelta | None = timedelta(days=730)

    @classmethod
    def from_settings(cls, retention: RetentionSettings) -> RetentionPolicy:
        def days(n: int) -> timedelta | None:
            return timedelta(days=n) if n > 0 else None

        return cls(days(retention.steps_days), days(retention.recordings_days),
                   days(retention.survey_comments_days), days(retention.audit_days))

    def cutoffs(self, now: datetime) -> dict[str, datetime | None]:
        return {name: None if kept is None else now - kept
                for name, kept in (("steps", self.steps), ("recordings", self.recordings),
                                   ("survey_comments", self.survey_comments),
                                   ("audit", self.audit))}


@dataclass(frozen=True)
class RetentionFiles:
    """Where the files are, as this host reaches them (None: not reachable here; their
    links are then kept too, so nothing is lost track of)."""

    recordings: RecordingStore | None = None
    survey_comments: Path | None = None


@dataclass
class PurgeReport:
    now: datetime
    dry_run: bool
    cutoffs: dict[str, datetime | None]
    steps: int = 0
    """Consultation steps removed (transcripts, keys, IVR path)."""
    consultations_trimmed: int = 0
    recordings: int = 0
    """Recording files removed."""
    recording_links: int = 0
    survey_comments: int = 0
    """Spoken comment files removed."""
    survey_comment_links: int = 0
    """Surveys whose comment path and transcript were cleared."""
    comment_transcript_steps: int = 0
    audit_rows: int = 0
    notes: list[str] = field(default_factory=list)
    """Parts skipped and files that could not be removed."""

    def counts(self) -> dict[str, int]:
        return {"steps": self.steps, "consultations_trimmed": self.consultations_trimmed,
                "recordings": self.recordings, "recording_links": self.recording_links,
                "survey_comments": self.survey_comments,
                "survey_comment_links": self.survey_comment_links,
                "comment_transcript_steps": self.comment_transcript_steps,
                "audit_rows": self.audit_rows}

    @property
    def total(self) -> int:
        return sum(self.counts().values())

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [f"retention purge ({'dry run' if self.dry_run else 'done'}) at "
               f"{self.now:%Y-%m-%d %H:%M} UTC:"]
        kept = [f"{name} kept for ever" for name, cutoff in self.cutoffs.items()
                if cutoff is None]
        out.append(f"  consultation steps before {_day(self.cutoffs['steps'])}: {verb} "
                   f"{self.steps} step(s) of {self.consultations_trimmed} consultation(s)")
        out.append(f"  call recordings before {_day(self.cutoffs['recordings'])}: {verb} "
                   f"{self.recordings} file(s), {self.recording_links} link(s)")
        out.append(f"  survey comments before {_day(self.cutoffs['survey_comments'])}: "
                   f"{verb} {self.survey_comments} file(s), {self.survey_comment_links} "
                   f"link(s) and transcript(s), {self.comment_transcript_steps} "
                   "transcript step(s)")
        out.append(f"  audit log before {_day(self.cutoffs['audit'])}: {verb} "
                   f"{self.audit_rows} entr{'y' if self.audit_rows == 1 else 'ies'}")
        out += [f"  ({k})" for k in kept]
        out += [f"  note: {n}" for n in self.notes]
        return out

    def audit_detail(self) -> dict[str, Any]:
        return {**self.counts(),
                "cutoffs": {k: v.isoformat() if v else None for k, v in self.cutoffs.items()},
                "notes": self.notes[:20]}


def _day(cutoff: datetime | None) -> str:
    return "(never)" if cutoff is None else f"{cutoff:%Y-%m-%d %H:%M}"


async def purge(sessions: SessionFactory, policy: RetentionPolicy, now: datetime,
                dry_run: bool = False, *, files: RetentionFiles | None = None,
                progress: Progress | None = None, trigger: str = "cli",
                audit_when_empty: bool = True) -> PurgeReport:
    """Remove (``dry_run``: count) what has expired at ``now``; see the module's doc.

    ``progress`` receives a line per batch of long work. The purge is audited (unless a
    dry run; with ``audit_when_empty`` false, only when it removed something)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    files = files or RetentionFiles()
    report = PurgeReport(now.astimezone(UTC), dry_run, policy.cutoffs(now.astimezone(UTC)))
    say = progress or (lambda line: None)
    cutoffs = report.cutoffs
    if cutoffs["recordings"] is not None:
        await _purge_recordings(sessions, cutoffs["recordings"], files.recordings, report, say)
    if cutoffs["survey_comments"] is not None:
        await _purge_comments(sessions, cutoffs["survey_comments"], files.survey_comments,
                              report, say)
    if cutoffs["steps"] is not None:
        await _purge_steps(sessions, cutoffs["steps"], cutoffs["survey_comments"], report, say)
    if cutoffs["audit"] is not None:
        await _purge_audit(sessions, cutoffs["audit"], report, say)
    for note in report.notes:
        log.warning("retention: %s", note)
    if not dry_run and (audit_when_empty or report.total):
        await audit.write(sessions, actor=ACTOR, action="retention.purge",
                          object_type="retention", object_id=trigger,
                          detail=report.audit_detail())
    log.info("retention purge%s: %s", " (dry run)" if dry_run else "",
             ", ".join(f"{k} {v}" for k, v in report.counts().items()))
    return report


def _expired(cutoff: datetime) -> ColumnElement[bool]:
    """Consultations that started before ``cutoff`` (or, never started, ended before it)."""
    return or_(Consultation.started_at < cutoff,
               and_(Consultation.started_at.is_(None), Consultation.ended_at < cutoff))


# -- steps ----------------------------------------------------------------------------------
def _purgeable_step(cutoff: datetime, comment_cutoff: datetime | None) -> ColumnElement[bool]:
    """Steps the steps purge removes; comment transcripts the comment purge removes (before
    it, or not at all in a dry run) are not counted twice."""
    purgeable = and_(ConsultationStep.kind.not_in(KEPT_KINDS),
                     ConsultationStep.consultation_id.in_(
                         select(Consultation.id).where(_expired(cutoff))))
    if comment_cutoff is None:
        return purgeable
    return and_(purgeable, ~and_(ConsultationStep.kind == COMMENT_TEXT,
                                 ConsultationStep.consultation_id.in_(
                                     select(Consultation.id).where(_expired(comment_cutoff)))))


async def _purge_steps(sessions: SessionFactory, cutoff: datetime,
                       comment_cutoff: datetime | None, report: PurgeReport,
                       say: Progress) -> None:
    async with sessions() as session:
        steps, consultations = (await session.execute(
            select(func.count(ConsultationStep.id),
                   func.count(func.distinct(ConsultationStep.consultation_id)))
            .where(_purgeable_step(cutoff, comment_cutoff)))).one()
    if report.dry_run or not steps:
        report.steps, report.consultations_trimmed = steps, consultations
        return
    batches = consultations // BATCH + 2  # bounded; a few more if calls are still arriving
    for _ in range(batches):
        async with sessions() as session, session.begin():
            ids = list(await session.scalars(
                select(Consultation.id).where(_expired(cutoff), exists().where(
                    ConsultationStep.consultation_id == Consultation.id,
                    ConsultationStep.kind.not_in(KEPT_KINDS)))
                .order_by(Consultation.id).limit(BATCH)))
            if not ids:
                break
            per_call = dict((await session.execute(
                select(ConsultationStep.consultation_id, func.count(ConsultationStep.id))
                .where(ConsultationStep.consultation_id.in_(ids),
                       ConsultationStep.kind.not_in(KEPT_KINDS))
                .group_by(ConsultationStep.consultation_id))).all())
            await session.execute(
                delete(ConsultationStep).where(ConsultationStep.consultation_id.in_(ids),
                                               ConsultationStep.kind.not_in(KEPT_KINDS))
                .execution_options(synchronize_session=False))
            session.add_all(ConsultationStep(consultation_id=cid, at=report.now,
                                             kind=STEPS_REMOVED,
                                             detail={"removed": n, "by": ACTOR})
                            for cid, n in per_call.items())
        report.steps += sum(per_call.values())
        report.consultations_trimmed += len(per_call)
        say(f"consultation steps: {report.consultations_trimmed}/{consultations} "
            "consultations")


# -- recordings -----------------------------------------------------------------------------
async def _purge_recordings(sessions: SessionFactory, cutoff: datetime,
                            store: RecordingStore | None, report: PurgeReport,
                            say: Progress) -> None:
    if store is None:
        report.notes.append("call recordings are not reachable from this host: recordings "
                            "and their links kept")
        return
    linked = (select(ConsultationStep.id, ConsultationStep.detail, Consultation.call_id)
              .join(Consultation, Consultation.id == ConsultationStep.consultation_id)
              .where(ConsultationStep.kind == RECORDING, _expired(cutoff))
              .order_by(ConsultationStep.id))
    async with sessions() as session:
        total = await session.scalar(select(func.count()).select_from(linked.subquery()))
    counted: set[Path] = set()
    after = 0
    for _ in range((total or 0) // BATCH + 2):
        async with sessions() as session:
            rows = (await session.execute(
                linked.where(ConsultationStep.id > after).limit(BATCH))).all()
        if not rows:
            break
        after = rows[-1][0]
        done: list[int] = []
        for step_id, detail, call_id in rows:
            announced = detail.get("file") if isinstance(detail, dict) else None
            path = await asyncio.to_thread(
                store.locate, call_id, announced if isinstance(announced, str) else None)
            if path is not None and path not in counted:
                counted.add(path)
                if not report.dry_run and not await _remove(path, report):
                    continue  # keep the link: the next purge tries again
                report.recordings += 1
            done.append(step_id)
        report.recording_links += len(done)
        if not report.dry_run and done:
            async with sessions() as session, session.begin():
                await session.execute(delete(ConsultationStep)
                                      .where(ConsultationStep.id.in_(done))
                                      .execution_options(synchronize_session=False))
        say(f"call recordings: {report.recording_links}/{total} links")
    await _sweep_recordings(sessions, cutoff, store, counted, report, say)


async def _sweep_recordings(sessions: SessionFactory, cutoff: datetime, store: RecordingStore,
                            counted: set[Path], report: PurgeReport, say: Progress) -> None:
    """Files in the monitor directory older than the cut-off named after the call id of a
    consultation that expired (recordings whose link was never written)."""
    old = await asyncio.to_thread(_old_recording_files, store.host_dir, cutoff, counted)
    by_call: dict[str, list[Path]] = {}
    for path in old:
        by_call.setdefault(path.name.split(".", 1)[0], []).append(path)
    names = sorted(by_call)
    unknown = 0
    for start in range(0, len(names), BATCH):
        chunk = names[start:start + BATCH]
        async with sessions() as session:
            expired = set(await session.scalars(select(Consultation.call_id).where(
                Consultation.call_id.in_(chunk), _expired(cutoff))))
        for name in chunk:
            if name not in expired:
                unknown += len(by_call[name])
                continue
            for path in by_call[name]:
                if report.dry_run or await _remove(path, report):
                    report.recordings += 1
        say(f"call recordings without a link: {min(start + BATCH, len(names))}/{len(names)}")
    if unknown:
        report.notes.append(f"{unknown} recording file(s) older than the cut-off in "
                            f"{store.host_dir} belong to no consultation here: left alone")


def _old_recording_files(directory: Path, cutoff: datetime, counted: set[Path]) -> list[Path]:
    limit = cutoff.timestamp()
    found = []
    for path in _files(directory):
        if path.suffix.lower() not in CONTENT_TYPES or path in counted:
            continue
        try:
            if path.stat().st_mtime < limit:
                found.append(path)
        except FileNotFoundError:
            continue
    return found


# -- survey comments ------------------------------------------------------------------------
async def _purge_comments(sessions: SessionFactory, cutoff: datetime, directory: Path | None,
                          report: PurgeReport, say: Progress) -> None:
    if directory is None:
        report.notes.append("the survey comment directory is not known here: comment files "
                            "and their links kept, transcripts removed")
        has_comment = SurveyResult.comment_text.is_not(None)
    else:
        has_comment = or_(SurveyResult.comment_path.is_not(None),
                          SurveyResult.comment_text.is_not(None))
    query = (select(SurveyResult.id, SurveyResult.comment_path)
             .where(SurveyResult.started_at < cutoff, has_comment)
             .order_by(SurveyResult.id))
    async with sessions() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery()))
    counted: set[Path] = set()
    after = 0
    missing = 0
    for _ in range((total or 0) // BATCH + 2):
        async with sessions() as session:
            rows = (await session.execute(query.where(SurveyResult.id > after)
                                          .limit(BATCH))).all()
        if not rows:
            break
        after = rows[-1][0]
        done: list[int] = []
        for survey_id, stored in rows:
            if directory is None:  # files not reachable: only the transcript goes
                done.append(survey_id)
                continue
            path = await asyncio.to_thread(survey_comment_file, directory, stored)
            if path is not None:
                counted.add(path)
                if not report.dry_run and not await _remove(path, report):
                    continue
                report.survey_comments += 1
            elif stored:
                missing += 1
            done.append(survey_id)
        report.survey_comment_links += len(done)
        cleared = {"comment_text": None} if directory is None else {"comment_path": None,
                                                                   "comment_text": None}
        if not report.dry_run and done:
            async with sessions() as session, session.begin():
                await session.execute(update(SurveyResult).where(SurveyResult.id.in_(done))
                                      .values(**cleared)
                                      .execution_options(synchronize_session=False))
        say(f"survey comments: {report.survey_comment_links}/{total} surveys")
    if missing:
        report.notes.append(f"{missing} survey comment file(s) were not found in "
                            f"{directory or 'the comment directory'} (links cleared)")
    transcripts = ConsultationStep.kind == COMMENT_TEXT
    in_expired = ConsultationStep.consultation_id.in_(
        select(Consultation.id).where(_expired(cutoff)))
    async with sessions() as session, session.begin():
        if report.dry_run:
            report.comment_transcript_steps = await session.scalar(
                select(func.count(ConsultationStep.id)).where(transcripts, in_expired)) or 0
        else:
            result = await session.execute(delete(ConsultationStep)
                                           .where(transcripts, in_expired)
                                           .execution_options(synchronize_session=False))
            report.comment_transcript_steps = result.rowcount or 0  # type: ignore[attr-defined]
    if directory is not None:
        swept = await asyncio.to_thread(_sweep_comment_days, directory, cutoff, counted,
                                        report.dry_run)
        report.survey_comments += swept


def _sweep_comment_days(directory: Path, cutoff: datetime, counted: set[Path],
                        dry_run: bool) -> int:
    """Wav files in day directories (YYYY/MM/DD) that ended before the cut-off (comments
    whose link was never written); empty day, month and year directories are removed."""
    last_day = cutoff.date() - timedelta(days=1)
    removed = 0
    for day_dir, day in _day_dirs(directory):
        if day > last_day:
            continue
        for path in sorted(day_dir.glob("*.wav")):
            if path in counted:
                continue
            if not dry_run:
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    log.warning("cannot remove expired survey comment %s: %s", path, exc)
                    continue
            removed += 1
        if not dry_run:
            for empty in (day_dir, day_dir.parent, day_dir.parent.parent):
                try:
                    empty.rmdir()
                except OSError:
                    break  # not empty (other files, other days)
    return removed


def _day_dirs(directory: Path) -> Iterator[tuple[Path, date]]:
    for day_dir in sorted(directory.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]")):
        relative = day_dir.relative_to(directory).as_posix()
        if not _DAY_DIR.fullmatch(relative) or not day_dir.is_dir():
            continue
        try:
            yield day_dir, date(*map(int, relative.split("/")))
        except ValueError:
            continue


# -- audit ----------------------------------------------------------------------------------
async def _purge_audit(sessions: SessionFactory, cutoff: datetime, report: PurgeReport,
                       say: Progress) -> None:
    async with sessions() as session:
        total = await session.scalar(select(func.count(AuditLog.id))
                                     .where(AuditLog.at < cutoff)) or 0
    if report.dry_run or not total:
        report.audit_rows = total
        return
    for _ in range(total // AUDIT_BATCH + 2):
        async with sessions() as session, session.begin():
            ids = list(await session.scalars(select(AuditLog.id).where(AuditLog.at < cutoff)
                                             .order_by(AuditLog.id).limit(AUDIT_BATCH)))
            if not ids:
                break
            await session.execute(delete(AuditLog).where(AuditLog.id.in_(ids))
                                  .execution_options(synchronize_session=False))
        report.audit_rows += len(ids)
        say(f"audit log: {report.audit_rows}/{total} entries")


# -- files ----------------------------------------------------------------------------------
async def _remove(path: Path, report: PurgeReport) -> bool:
    """Remove ``path``; True when it is gone (also if it already was)."""
    try:
        await asyncio.to_thread(path.unlink, missing_ok=True)
    except OSError as exc:
        report.notes.append(f"cannot remove {path}: {exc.strerror}")
        log.warning("retention: cannot remove %s: %s", path, exc)
        return False
    return True


def _files(directory: Path) -> Iterator[Path]:
    seen = 0
    for root, _dirs, names in os.walk(directory, followlinks=False):
        for name in names:
            seen += 1
            if seen > MAX_SWEEP_FILES:
                log.warning("%s holds more than %d files; the rest waits for the next purge",
                            directory, MAX_SWEEP_FILES)
                return
            yield Path(root, name)
