"""The write-behind worker against real databases (SQLite and PostgreSQL): a batch is one
transaction that a bad item rolls back without sinking the others, and items kept while the
database is down are written, in order, by the next run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from crm.audit import log as audit
from crm.storage.db import DATABASE_DOWN, SessionFactory, make_engine, make_session_factory
from crm.storage.journal import json_journal
from crm.storage.write_behind import Backoff, Queued, WriteBehind
from hotline.tools.bed import free_tcp_port

QUICK = Backoff(first=0.01, most=0.05)


class AuditWriter:
    """Writes each batch of entries into the audit log in one transaction."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions
        self.transactions = 0

    async def __call__(self, batch: Sequence[Queued[dict[str, Any]]]) -> None:
        self.transactions += 1
        async with self.sessions() as session, session.begin():
            for queued in batch:
                audit.record(session, **queued.item)


def entry(n: int, actor: str | None = "agent:agent1") -> dict[str, Any]:
    return {"actor": actor, "action": "test.write", "object_type": "item", "object_id": n}


async def stored(sessions: SessionFactory) -> list[str | None]:
    return [e.object_id for e in reversed(await audit.entries(sessions, object_type="item"))]


async def test_a_bad_item_rolls_its_batch_back_and_the_others_are_written_one_by_one(
        sessions: SessionFactory) -> None:
    writer = AuditWriter(sessions)
    items = WriteBehind("audit entries", writer, backoff=QUICK, retry_on=(OSError,))
    for n in range(5):
        items.put(entry(n, actor=None if n == 2 else "agent:agent1"))  # 2: NOT NULL violated
    items.start()
    try:
        await asyncio.wait_for(items.drain(), 20)
    finally:
        await items.close()
    assert await stored(sessions) == ["0", "1", "3", "4"]
    assert (items.written, items.dropped) == (4, 1)
    assert writer.transactions == 6  # the batch, rolled back; then each item alone


async def test_items_kept_while_the_database_is_down_are_written_by_the_next_run(
        sessions: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = make_engine(f"postgresql+asyncpg://nobody:x@127.0.0.1:{free_tcp_port()}/none")
    journal = json_journal(tmp_path, "audit-entries")
    down = WriteBehind("audit entries", AuditWriter(make_session_factory(dead)),
                       journal=journal, backoff=QUICK, retry_on=DATABASE_DOWN)
    retried = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "failed (attempt 2)" in record.getMessage():
                retried.set()
    watch = Watch()
    logging.getLogger("crm.storage.write_behind").addHandler(watch)
    down.start()
    for n in range(3):
        down.put(entry(n))
    try:
        await asyncio.wait_for(retried.wait(), 20)
    finally:
        logging.getLogger("crm.storage.write_behind").removeHandler(watch)
        await down.close(timeout=0)  # the process stops while the database is still down
        journal.close()
        await dead.dispose()
    assert (down.written, down.pending) == (0, 3)
    failures = [r for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert failures and all(r.levelno == logging.ERROR for r in failures)

    journal = json_journal(tmp_path, "audit-entries")
    writer = AuditWriter(sessions)
    up = WriteBehind("audit entries", writer, journal=journal, backoff=QUICK,
                     retry_on=DATABASE_DOWN)
    up.put(entry(3))  # a new one, after those replayed
    up.start()
    try:
        await asyncio.wait_for(up.drain(), 20)
    finally:
        await up.close()
    assert await stored(sessions) == ["0", "1", "2", "3"]
    assert writer.transactions == 1  # replayed and new ones in one batch
    assert journal.pending() == []
    journal.close()
