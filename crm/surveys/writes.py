"""Survey answers the database refused during a call, kept and written later.

A survey runs while the resident is on the line; if the database is down the call goes on
(see ``ivr.survey_call``) and what could not be stored — the rating, the comment's file, its
transcript, the survey's end — is handed to a :class:`SurveyWriteQueue`. Each write is
appended to a durable journal (``<state_dir>/journal/survey-writes.jsonl``) first, then
applied in order by one task that retries while the database stays down, and acknowledged
once stored; writes left by a crash are applied at the next start. A write the database
rejects for good (the survey no longer exists, a bad score) is logged and dropped, so one bad
entry never blocks the others. Writes keep the time they happened (``now``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from crm.storage.db import DATABASE_DOWN, SessionFactory
from crm.storage.journal import EventJournal
from crm.storage.models import utcnow
from crm.surveys import service as surveys
from crm.surveys.return_visits import RetryPolicy

log = logging.getLogger(__name__)

OPERATIONS = ("rating", "comment", "transcript", "finish")
MAX_RETRY_DELAY = 30.0


async def apply_survey_write(sessions: SessionFactory, op: str, survey_id: int, *,
                             policy: RetryPolicy, at: datetime | None = None,
                             **fields: Any) -> surveys.SurveyView:
    """One survey write by name, with the fields a deferred entry keeps: the survey call
    stores through this at once, the queue later (``at``: when it happened)."""
    if op == "rating":
        return await surveys.record_rating(sessions, survey_id, int(fields["score"]),
                                           by=str(fields["by"]), now=at)
    if op == "comment":
        return await surveys.record_comment(sessions, survey_id, path=str(fields["path"]),
                                            seconds=float(fields["seconds"]))
    if op == "transcript":
        return await surveys.record_transcript(sessions, survey_id, str(fields["text"]))
    if op == "finish":
        return await surveys.finish_survey(sessions, survey_id, policy=policy, now=at)
    raise ValueError(f"unknown survey write {op!r}: expected one of {OPERATIONS}")


class SurveyWriteQueue:
    def __init__(self, sessions: SessionFactory, journal: EventJournal, *,
                 policy: RetryPolicy | None = None, retry_delay: float = 1.0) -> None:
        self._sessions = sessions
        self._journal = journal
        self._policy = policy or RetryPolicy()
        self._retry_delay = retry_delay
        self._queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0

    def defer(self, op: str, survey_id: int, **fields: Any) -> None:
        """Keep a write for later: journaled at once, applied in order when the database is
        back. ``fields`` are the write's arguments (JSON values)."""
        if op not in OPERATIONS:
            raise ValueError(f"unknown survey write {op!r}: expected one of {OPERATIONS}")
        entry = {"op": op, "survey_id": survey_id, "at": utcnow().isoformat(), **fields}
        seq = self._journal.append(entry)
        self._queue.put_nowait((seq, entry))
        log.warning("survey %d: %s kept to write when the database is back", survey_id, op)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        left = self._journal.pending()
        if left:
            log.warning("%d survey write(s) from before the restart to apply", len(left))
        for item in left:
            self._queue.put_nowait(item)
        self._task = asyncio.create_task(self._run(), name="survey-writes")

    async def drain(self) -> None:
        await self._queue.join()

    async def close(self) -> None:
        """Stop; what is not written stays in the journal for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            seq, entry = await self._queue.get()
            try:
                await self._write(entry)
                self._journal.ack(seq)
            finally:
                self._queue.task_done()

    async def _write(self, entry: dict[str, Any]) -> None:
        attempt = 0
        while True:
            try:
                await self._apply(entry)
                self.written += 1
                log.info("survey %d: deferred %s written", entry["survey_id"], entry["op"])
                return
            except DATABASE_DOWN as exc:
                attempt += 1
                log.warning("survey %d: deferred %s not written yet (attempt %d): %s",
                            entry["survey_id"], entry["op"], attempt, exc)
                await asyncio.sleep(min(self._retry_delay * attempt, MAX_RETRY_DELAY))
            except Exception:
                self.dropped += 1
                log.exception("survey %s: deferred write %r rejected; dropped",
                              entry.get("survey_id"), entry)
                return

    async def _apply(self, entry: dict[str, Any]) -> None:
        fields = {k: v for k, v in entry.items() if k not in ("op", "survey_id", "at")}
        await apply_survey_write(self._sessions, entry["op"], int(entry["survey_id"]),
                                 policy=self._policy, at=datetime.fromisoformat(entry["at"]),
                                 **fields)
