"""Survey answers the database refused during a call, kept and written later.

A survey runs while the resident is on the line; if the database is down the call goes on
(see ``ivr.survey_call``) and what could not be stored — the rating, the comment's file, its
transcript, the survey's end — is handed to a :class:`SurveyWriteQueue`. Each write is
appended to a durable journal (``<state_dir>/journal/survey-writes.jsonl``) first, then
applied in order by one task that retries while the database stays down, and acknowledged
once stored; writes left by a crash are applied at the next start (:mod:`crm.storage.write_behind`).
A write the database rejects for good (the survey no longer exists, a bad score) is logged and
dropped, so one bad entry never blocks the others. Writes keep the time they happened (``now``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any

from crm.storage.db import DATABASE_DOWN, SessionFactory
from crm.storage.journal import EventJournal
from crm.storage.models import utcnow
from crm.storage.write_behind import Backoff, Queued, WriteBehind
from crm.surveys import service as surveys
from crm.surveys.return_visits import RetryPolicy

log = logging.getLogger(__name__)

OPERATIONS = ("rating", "comment", "transcript", "finish")


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
        self._policy = policy or RetryPolicy()
        self._writes: WriteBehind[dict[str, Any]] = WriteBehind(
            "survey writes", self._write, journal=journal, batch_max=1,
            backoff=Backoff(first=retry_delay), retry_on=DATABASE_DOWN, describe=_describe,
            logger=log)

    def defer(self, op: str, survey_id: int, **fields: Any) -> None:
        """Keep a write for later: journaled at once, applied in order when the database is
        back. ``fields`` are the write's arguments (JSON values)."""
        if op not in OPERATIONS:
            raise ValueError(f"unknown survey write {op!r}: expected one of {OPERATIONS}")
        entry = {"op": op, "survey_id": survey_id, "at": utcnow().isoformat(), **fields}
        self._writes.put(entry)
        log.warning("survey %d: %s kept to write when the database is back", survey_id, op)

    @property
    def pending(self) -> int:
        """Writes kept and not stored yet (waiting, or being retried)."""
        return self._writes.pending

    @property
    def written(self) -> int:
        return self._writes.written

    @property
    def dropped(self) -> int:
        """Writes the database rejected for good."""
        return self._writes.dropped

    def start(self) -> None:
        """Start writing; writes a previous run kept but never stored go first."""
        self._writes.start()

    def drain(self) -> Awaitable[None]:
        """Wait until the writes kept before this call are stored (or dropped)."""
        return self._writes.drain()

    async def close(self, timeout: float = 0.0) -> None:
        """Stop (after storing what is kept, for at most ``timeout`` seconds); what is not
        stored stays in the journal for the next start."""
        await self._writes.close(timeout)

    async def _write(self, batch: Sequence[Queued[dict[str, Any]]]) -> None:
        for queued in batch:  # one at a time (batch_max=1): each write is its own transaction
            entry = queued.item
            fields = {k: v for k, v in entry.items() if k not in ("op", "survey_id", "at")}
            await apply_survey_write(self._sessions, entry["op"], int(entry["survey_id"]),
                                     policy=self._policy,
                                     at=datetime.fromisoformat(entry["at"]), **fields)
            log.info("survey %d: deferred %s written", entry["survey_id"], entry["op"])


def _describe(entry: dict[str, Any]) -> str:
    return f"survey {entry.get('survey_id')}: deferred {entry.get('op')}"
