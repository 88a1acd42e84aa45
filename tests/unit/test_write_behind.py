"""The write-behind worker on its own: order, batches, retries, the journal's replay after a
crash, drain, close. (Against real databases: tests/storage/test_write_behind.py.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from crm.storage.journal import EventJournal, json_journal
from crm.storage.write_behind import Backoff, Queued, WriteBehind

QUICK = Backoff(first=0.001, most=0.01)


class Writer:
    """Records the batches it writes. ``down[item]``: times the item fails as if the
    database were down; ``bad``: items that fail for good; ``gate`` holds every attempt
    until a permit is released."""

    def __init__(self, gate: asyncio.Semaphore | None = None) -> None:
        self.batches: list[list[str]] = []
        self.replayed: dict[str, bool] = {}
        self.down: dict[str, int] = {}
        self.bad: set[str] = set()
        self.gate = gate
        self.at_gate = asyncio.Event()
        self.failed = asyncio.Event()

    async def __call__(self, batch: Sequence[Queued[str]]) -> None:
        if self.gate is not None:
            self.at_gate.set()
            await self.gate.acquire()
        for queued in batch:
            if self.down.get(queued.item, 0) > 0:
                self.down[queued.item] -= 1
                self.failed.set()
                raise ConnectionRefusedError("database is down")
            if queued.item in self.bad:
                raise ValueError(f"{queued.item} is not a valid item")
        self.batches.append([q.item for q in batch])
        self.replayed.update({q.item: q.replayed for q in batch})


def worker(writer: Writer, journal: EventJournal | None = None, **options: object
           ) -> WriteBehind[str]:
    return WriteBehind("test items", writer, journal=journal, backoff=QUICK, describe=str,
                       **options)  # type: ignore[arg-type]


def test_backoff_grows_to_its_bound() -> None:
    assert [Backoff(1.0, 3.0).delay(n) for n in range(1, 6)] == [1.0, 2.0, 3.0, 3.0, 3.0]


async def test_items_are_written_in_order_in_batches_of_what_queued_up() -> None:
    gate = asyncio.Semaphore(0)
    writer = Writer(gate)
    items = worker(writer, batch_max=3)
    for item in "abcde":  # queued before the writer runs
        items.put(item)
    items.start()
    try:
        await writer.at_gate.wait()  # the first batch is taken and held
        for item in "fg":  # arrive while the first batch is being written
            items.put(item)
        for _ in range(3):
            gate.release()
        await asyncio.wait_for(items.drain(), 5)
    finally:
        await items.close()
    assert writer.batches == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert (items.received, items.written, items.dropped, items.pending) == (7, 7, 0, 0)


async def test_a_write_that_fails_is_retried_and_keeps_its_place(
        caplog: pytest.LogCaptureFixture) -> None:
    writer = Writer()
    writer.down["b"] = 3  # the batch fails on it, then two more attempts at it alone
    items = worker(writer)
    for item in "abc":
        items.put(item)
    items.start()
    try:
        await asyncio.wait_for(items.drain(), 5)
    finally:
        await items.close()
    assert writer.batches == [["a"], ["b"], ["c"]]  # one by one after the batch failed
    assert (items.written, items.dropped, writer.down["b"]) == (3, 0, 0)
    retries = [r for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert [r.levelno for r in retries] == [logging.ERROR] * 2
    assert "test items: b failed (attempt 2)" in retries[-1].getMessage()


async def test_an_item_that_cannot_be_retried_is_dropped_and_the_others_written(
        tmp_path: Path) -> None:
    journal = json_journal(tmp_path, "items")
    writer = Writer()
    writer.bad.add("b")
    items = worker(writer, journal, retry_on=(ConnectionRefusedError,))
    for item in "abc":
        items.put(item)
    items.start()
    try:
        await asyncio.wait_for(items.drain(), 5)
    finally:
        await items.close()
    assert writer.batches == [["a"], ["c"]]
    assert (items.written, items.dropped, items.pending) == (2, 1, 0)
    assert journal.pending() == []  # a dropped item is not replayed either
    journal.close()


async def test_what_a_crash_left_in_the_journal_is_written_first_at_the_next_start(
        tmp_path: Path) -> None:
    journal = json_journal(tmp_path, "items")
    gate = asyncio.Semaphore(1)  # "a" is written, "b" is held
    first = worker(Writer(gate), journal)
    first.start()
    first.put("a")
    await asyncio.wait_for(first.drain(), 5)
    first.put("b")
    await first.close(timeout=0)  # the process stops with "b" in the middle of its write
    assert (first.written, first.pending) == (1, 1)
    journal.close()
    # As if it also died between writing "a" and acknowledging it: "a" comes back too,
    # flagged, so a writer can tell it may be there already.
    (tmp_path / "items.ack").write_text("0")

    journal = json_journal(tmp_path, "items")
    writer = Writer()
    second = worker(writer, journal)
    second.put("c")  # handed over before the start: after what is replayed
    second.start()
    try:
        await asyncio.wait_for(second.drain(), 5)
    finally:
        await second.close()
    assert [item for batch in writer.batches for item in batch] == ["a", "b", "c"]
    assert writer.replayed == {"a": True, "b": True, "c": False}
    assert journal.pending() == []
    journal.close()


async def test_drain_waits_for_earlier_items_only() -> None:
    gate = asyncio.Semaphore(0)
    writer = Writer(gate)
    items = worker(writer)
    items.start()
    try:
        await asyncio.wait_for(items.drain(), 1)  # nothing handed over: done at once
        items.put("first")
        await writer.at_gate.wait()  # the writer took it alone and is held
        settled = asyncio.ensure_future(items.drain())
        items.put("second")  # arrives while the first is being written
        gate.release()  # the first item's write only
        await asyncio.wait_for(settled, 5)
        assert writer.batches == [["first"]] and items.pending == 1
        gate.release()
        await asyncio.wait_for(items.drain(), 5)
        assert writer.batches == [["first"], ["second"]]
    finally:
        await items.close()


async def test_close_keeps_what_is_unwritten_in_the_journal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = json_journal(tmp_path, "items")
    writer = Writer()
    writer.down["a"] = 10**6  # the database stays down
    items = worker(writer, journal)
    items.start()
    items.put("a")
    items.put("b")
    await asyncio.wait_for(writer.failed.wait(), 5)
    waiting = asyncio.ensure_future(items.drain())
    await items.close(timeout=0.05)
    await asyncio.wait_for(waiting, 1)  # given up by close: nobody waits forever
    assert (items.written, items.pending) == (0, 2)
    assert "test items: 2 left at stop, kept in the journal" in caplog.text
    journal.close()
    assert [item for _, item in json_journal(tmp_path, "items").pending()] == ["a", "b"]


async def test_without_a_journal_what_is_left_at_stop_is_reported_lost(
        caplog: pytest.LogCaptureFixture) -> None:
    writer = Writer()
    writer.down["a"] = 10**6
    items = worker(writer)
    items.start()
    items.put("a")
    await asyncio.wait_for(writer.failed.wait(), 5)
    await items.close(timeout=0)
    assert "test items: 1 left at stop, lost" in caplog.text


async def test_an_item_the_journal_cannot_take_is_still_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = json_journal(tmp_path, "items")

    def disk_full(item: object) -> int:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(journal, "append", disk_full)
    writer = Writer()
    items = worker(writer, journal)
    items.start()
    try:
        items.put("a")
        await asyncio.wait_for(items.drain(), 5)
    finally:
        await items.close()
    assert writer.batches == [["a"]] and writer.replayed == {"a": False}
    journal.close()
