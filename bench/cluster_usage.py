"""What the cluster's parts used during ``bench.cluster``'s calls: CPU seconds and resident
memory per process group (/proc), Redis commands (INFO commandstats) and PostgreSQL writes
(pg_stat_database) of the cluster's own database, read before and after the calls."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
SAMPLE_S = 1.0
PG_WRITES = ("xact_commit", "tup_inserted", "tup_updated", "tup_deleted")


def _stat(entry: Path) -> list[str] | None:
    try:
        return (entry / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def group_cpu() -> dict[int, float]:
    """CPU seconds (user + system, reaped children included) per process group."""
    totals: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry)) is not None:
            ticks = sum(int(f) for f in fields[11:15])
            totals[int(fields[2])] = totals.get(int(fields[2]), 0.0) + ticks / CLOCK_TICKS
    return totals


def group_rss_kb() -> dict[int, int]:
    """Resident memory (kB) per process group: the sum of its processes' RSS."""
    totals: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry)) is not None:
            totals[int(fields[2])] = totals.get(int(fields[2]), 0) + int(fields[21]) * PAGE_KB
    return totals


def pgrp(pid: int) -> int | None:
    fields = _stat(Path(f"/proc/{pid}"))
    return int(fields[2]) if fields else None


@dataclass
class MemoryWatch:
    """Samples each watched group's RSS every SAMPLE_S while the calls run: the baseline
    (before), the peak (any sample) and the last sample."""

    groups: dict[str, int]
    baseline: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)

    def sample(self) -> None:
        rss = group_rss_kb()
        for name, group in self.groups.items():
            kb = rss.get(group, 0)
            self.baseline.setdefault(name, kb)
            self.peak[name] = max(self.peak.get(name, 0), kb)
            self.last[name] = kb

    async def run(self) -> None:
        """Until cancelled (the caller keeps the task and cancels it after the calls)."""
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_S)  # a sampling period, not a synchronisation


async def redis_commands(url: str) -> dict[str, int]:
    """Calls per Redis command since the server started (INFO commandstats)."""
    client = aioredis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items() if isinstance(value, dict)}


async def pg_writes(url: str) -> dict[str, int]:
    """Commits and rows written in the URL's database so far (pg_stat_database)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            row = (await conn.execute(text(
                f"SELECT {', '.join(PG_WRITES)} FROM pg_stat_database "
                "WHERE datname = current_database()"))).one()
    finally:
        await engine.dispose()
    return dict(zip(PG_WRITES, (int(v) for v in row), strict=True))


PG_IDLE_FLUSH_S = 11.0
"""A PostgreSQL (15+) backend flushes its statistics at a transaction's end at most once a
second, and an idle one after 10 s: counters still moving within this are not final."""


async def settled_pg_writes(url: str, within: float = 40.0) -> tuple[dict[str, int], bool]:
    """pg_writes once they stayed the same for PG_IDLE_FLUSH_S (read every second), or the
    last reading after ``within`` s; and whether they settled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = await pg_writes(url)
    since = loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(1.0)  # a reading period; the condition is the counters' stability
        now = await pg_writes(url)
        if now != last:
            last, since = now, loop.time()
        elif loop.time() - since >= PG_IDLE_FLUSH_S:
            return last, True
    return last, False


def difference(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after
            if after.get(k, 0) != before.get(k, 0)}
