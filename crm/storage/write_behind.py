"""Writing behind: whoever hands an item over never waits; one task writes the items in the
order they came, many at a time, retrying while the database is down.

The consultation recorder (call events), the desk hub (pop views for the audit log, and the
events it applies to the desks), the wallboard (the events it applies) and the survey write
queue (answers the database refused during a call) all work this way. Each supplies
``write_batch``, which writes a batch all or nothing (one transaction); this module does the
rest:

- order: one writer task takes the items in arrival order, up to ``batch_max`` of what has
  queued up while it was writing, so commits do not grow with the arrival rate;
- retries: a batch that fails is written one item at a time, so one bad item never sinks
  the others; an item that fails with one of ``retry_on`` is retried, ``backoff`` seconds
  apart, until it is written (the database is down), any other error drops it (logged);
- durability: with an :class:`~crm.storage.journal.EventJournal`, each item is appended to it
  before :meth:`WriteBehind.put` returns, acknowledged once written, and the items a previous
  run journaled but never wrote go first, marked ``replayed`` (a write whose acknowledgement
  was lost may be there already);
- progress: :meth:`WriteBehind.drain` waits for the items handed over before it was called,
  not for those that arrive meanwhile; ``pending``, ``written`` and ``dropped`` feed the health
  report; :meth:`WriteBehind.close` writes what is queued within a bound and stops, what is
  left stays in the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from crm.storage.journal import EventJournal

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_MAX = 200
STOP_RETRY_S = 1.0
"""Seconds ``close`` waits for the writer to stop before telling it again (a stop can be
swallowed: Python 3.11's ``asyncio.wait_for`` drops a cancellation that arrives in the step
its inner wait completes; the project's code uses ``asyncio.timeout`` for that reason)."""
"""Items written in one batch at most: under load the writer takes what has queued up while it
was writing, so commits (an fsync each on SQLite) do not grow with the arrival rate."""


@dataclass(frozen=True, slots=True)
class Queued(Generic[T]):
    """An item waiting to be written."""

    item: T
    seq: int | None = None
    """Its number in the journal (None: not journaled)."""
    replayed: bool = False
    """Read back from the journal at start: a previous run may have written it already."""


@dataclass(frozen=True)
class Backoff:
    """Seconds between attempts at an item that keeps failing: ``first``, twice that, three
    times... at most ``most``."""

    first: float = 1.0
    most: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.first * attempt, self.most)


DATABASE_BACKOFF = Backoff()
"""1 s, 2 s, 3 s... at most 30 s apart: soon after a database comes back, without hammering it
while it is down."""

WriteBatch = Callable[[Sequence[Queued[T]]], Awaitable[None]]


def _type_name(item: object) -> str:
    return type(item).__name__


class WriteBehind(Generic[T]):
    def __init__(self, name: str, write_batch: WriteBatch[T], *,
                 journal: EventJournal | None = None, batch_max: int = BATCH_MAX,
                 backoff: Backoff = DATABASE_BACKOFF,
                 retry_on: tuple[type[Exception], ...] = (Exception,),
                 describe: Callable[[T], str] = _type_name,
                 logger: logging.Logger = log) -> None:
        """``name`` says what the items are in log lines ("call events"); ``describe`` names
        one item in them (with its call id where it has one); ``logger`` is the user's, so its
        lines stay under its module's name. ``retry_on=()`` retries nothing: a failing item is
        dropped at once."""
        self.name = name
        self._write_batch = write_batch
        self._journal = journal
        self._batch_max = batch_max
        self._backoff = backoff
        self._retry_on = retry_on
        self._describe = describe
        self._log = logger
        self._queue: asyncio.Queue[Queued[T]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self._closed = False
        self.received = 0
        self.written = 0
        self.dropped = 0
        if journal is not None:
            self._replay(journal)

    def _replay(self, journal: EventJournal) -> None:
        """Queue first what a previous run journaled but never wrote (read here, not at
        start, so that items handed over before the start come after them, once)."""
        left = journal.pending()
        if left:
            self._log.warning("%s: replaying %d not written before the last stop",
                              self.name, len(left))
        for seq, item in left:
            self.received += 1
            self._queue.put_nowait(Queued(item, seq, replayed=True))

    @property
    def pending(self) -> int:
        """Items handed over and neither written nor dropped yet (queued, or being written)."""
        return self.received - self.written - self.dropped

    def put(self, item: T) -> None:
        """Hand an item over: journaled (when there is a journal) before this returns, written
        later. An item the journal cannot take is still written, from memory (logged)."""
        seq = None
        if self._journal is not None:
            try:
                seq = self._journal.append(item)
            except OSError:
                self._log.exception("%s: %s could not be journaled; kept in memory",
                                    self.name, self._describe(item))
        self.received += 1
        self._queue.put_nowait(Queued(item, seq))

    def start(self) -> None:
        """Start writing; what a previous run journaled but never wrote goes first."""
        self._closed = False
        self._task = asyncio.create_task(self._run(), name=f"write-behind: {self.name}")

    def drain(self) -> Awaitable[None]:
        """Wait until every item handed over before this call is written (or dropped, or
        given up by :meth:`close`); not for those handed over meanwhile, so a caller waiting
        for its own items is not held up by a busy hotline's later ones. (A plain function:
        the items counted are those before the call, not before the first await.)"""
        return self._done_with(self.received)

    async def _done_with(self, target: int) -> None:
        async with self._progress:
            await self._progress.wait_for(
                lambda: self._closed or self.written + self.dropped >= target)

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, for at most ``timeout`` seconds, then stop; what is left
        stays in the journal for the next start (without a journal it is lost: logged)."""
        if self._task is None:
            return
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.drain()
        while not self._task.done():  # once more if a stop was swallowed on the way
            self._task.cancel()
            await asyncio.wait([self._task], timeout=STOP_RETRY_S)
        self._task = None
        async with self._progress:
            self._closed = True
            self._progress.notify_all()
        if self.pending:
            self._log.warning("%s: %d left at stop, %s", self.name, self.pending,
                              "kept in the journal" if self._journal is not None else "lost")

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if len(batch) > 1:
                try:
                    await self._write_batch(batch)
                except Exception as exc:
                    self._log.warning("%s: %d at once failed (%s); one by one",
                                      self.name, len(batch), exc)
                else:
                    await self._settled(batch, written=True)
                    continue
            for queued in batch:
                await self._write_one(queued)

    async def _write_one(self, queued: Queued[T]) -> None:
        attempt = 0
        while True:
            try:
                await self._write_batch([queued])
            except self._retry_on as exc:
                attempt += 1
                delay = self._backoff.delay(attempt)
                self._log.error("%s: %s failed (attempt %d), retrying in %.2g s: %s",
                                self.name, self._describe(queued.item), attempt, delay, exc,
                                exc_info=attempt == 1)
                await asyncio.sleep(delay)
                continue
            except Exception:
                self._log.exception("%s: %s failed and cannot be retried; dropped",
                                    self.name, self._describe(queued.item))
                await self._settled([queued], written=False)
                return
            await self._settled([queued], written=True)
            return

    async def _settled(self, batch: Sequence[Queued[T]], *, written: bool) -> None:
        """Count the batch, acknowledge it in the journal and wake the drains it completes."""
        if written:
            self.written += len(batch)
        else:
            self.dropped += len(batch)
        seqs = [q.seq for q in batch if q.seq is not None]
        if seqs and self._journal is not None:
            try:
                self._journal.ack(max(seqs))
            except OSError:  # written all the same; the next start replays it, flagged
                self._log.exception("%s: acknowledging %d in the journal failed",
                                    self.name, len(seqs))
        async with self._progress:
            self._progress.notify_all()
