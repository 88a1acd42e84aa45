"""Wiring for retention (used by hotline.service and the CLI).

``run_purge`` is one purge for ``hotline retention purge [--dry-run]``; ``retention_loop``
runs a purge at start-up and then every ``retention.purge_interval_hours`` inside
``hotline serve`` (none when 0), stopped with the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from crm.audit.retention import Progress, PurgeReport, RetentionFiles, RetentionPolicy, purge
from crm.storage.db import DATABASE_DOWN, SessionFactory, open_database
from crm.storage.migrate import upgrade
from crm.storage.models import utcnow
from hotline.paths import recording_store, survey_comments_dir
from hotline.settings import Settings

log = logging.getLogger(__name__)


def retention_files(settings: Settings) -> RetentionFiles:
    """Where recordings and survey comments are, as this host reaches them."""
    return RetentionFiles(recording_store(settings), survey_comments_dir(settings))


async def run_purge(settings: Settings, *, dry_run: bool,
                    progress: Progress | None = None) -> PurgeReport:
    await upgrade(settings.database_url)
    database = open_database(settings.database_url, echo=settings.database.echo)
    try:
        return await purge(database.sessions,
                           RetentionPolicy.from_settings(settings.retention), utcnow(),
                           dry_run, files=retention_files(settings), progress=progress,
                           trigger="cli")
    finally:
        await database.close()


class RetentionSchedule:
    """Purges every ``interval`` seconds, the first at once; a failed pass is logged and the
    next one comes at its time. Tests wait for a pass with :meth:`wait_passes`."""

    def __init__(self, sessions: SessionFactory, policy: RetentionPolicy,
                 files: RetentionFiles, interval: float) -> None:
        self._sessions = sessions
        self._policy = policy
        self._files = files
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.passes = 0
        self.failures = 0
        self.last: PurgeReport | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention-purge")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> PurgeReport:
        return await purge(self._sessions, self._policy, utcnow(), False, files=self._files,
                           trigger="schedule", audit_when_empty=False)

    async def wait_passes(self, count: int, within: float) -> PurgeReport | None:
        """Wait until ``count`` passes (successful or not) are done; the last report."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: self.passes + self.failures >= count)
            return self.last

    async def _run(self) -> None:
        while True:
            try:
                self.last = await self.run_once()
                self.passes += 1
            except DATABASE_DOWN as exc:
                self.failures += 1
                log.warning("retention purge failed (database unavailable): %s; next in "
                            "%.1f h", exc, self._interval / 3600)
            except Exception:
                self.failures += 1
                log.exception("retention purge failed; next in %.1f h", self._interval / 3600)
            async with self._changed:
                self._changed.notify_all()
            await asyncio.sleep(self._interval)


@contextlib.asynccontextmanager
async def retention_loop(settings: Settings, sessions: SessionFactory,
                         files: RetentionFiles) -> AsyncIterator[RetentionSchedule | None]:
    """The schedule inside ``hotline serve`` (None when ``purge_interval_hours`` is 0)."""
    hours = settings.retention.purge_interval_hours
    if hours <= 0:
        yield None
        return
    schedule = RetentionSchedule(sessions, RetentionPolicy.from_settings(settings.retention),
                                 files, hours * 3600)
    schedule.start()
    log.info("retention: a purge now and every %g h (steps %s d, recordings %s d, survey "
             "comments %s d, audit %s d; 0 = kept)", hours, settings.retention.steps_days,
             settings.retention.recordings_days, settings.retention.survey_comments_days,
             settings.retention.audit_days)
    try:
        yield schedule
    finally:
        await schedule.close()
