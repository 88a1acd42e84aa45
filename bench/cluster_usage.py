"""What the cluster's parts used during ``bench.cluster``'s calls: CPU seconds and resident
memory per process group (/proc) and Redis commands (INFO commandstats), read before and after
the calls (PostgreSQL's writes: bench/pg_writes.py)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
SAMPLE_S = 1.0


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


def difference(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after
            if after.get(k, 0) != before.get(k, 0)}
