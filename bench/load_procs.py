"""CPU and memory of the processes under load, sampled from /proc once a second.

Groups: ``asterisk`` (the daemon), ``hotline serve`` (with the children it has reaped, e.g.
espeak-ng), ``sipp`` (every SIPp the bench started: callers and agent phones; a caller's CPU
stays counted after it exits, through the bench's reaped-children times) and ``bench``
(this driver). CPU is in % of one core (200 % = both cores of a 2-core host).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.metrics import CLOCK_TICKS, host_busy_seconds

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
GROUPS = ("asterisk", "hotline serve", "serve web", "redis", "sipp", "bench")
"""``serve web`` and ``redis``: only when the service runs as two processes (then
``hotline serve`` is the core)."""


def _stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _cpu(fields: list[str], *, children: bool) -> float:
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime (reaped children)
    return ticks / CLOCK_TICKS


def _rss_mb(fields: list[str]) -> float:
    return int(fields[21]) * PAGE_MB


def _sipp_children(parent: int) -> list[list[str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if Path(entry, "comm").read_text().strip() != "sipp":
                continue
            fields = _stat(entry.name)
            if fields is not None and int(fields[1]) == parent:
                found.append(fields)
    return found


@dataclass
class Sample:
    at: float
    cpu: dict[str, float]
    """Cumulative CPU seconds per group."""
    rss: dict[str, float]
    host: float
    sipp_processes: int


@dataclass
class GroupUsage:
    cpu_mean: float
    cpu_peak: float
    rss_peak: float


@dataclass
class Usage:
    seconds: float
    groups: dict[str, GroupUsage] = field(default_factory=dict)
    host_mean: float = 0.0
    host_peak: float = 0.0
    sipp_processes_peak: int = 0


class ProcSampler:
    def __init__(self, pids: Callable[[], dict[str, int | None]], interval: float = 1.0):
        """``pids()`` gives the current pid of ``asterisk`` and ``hotline serve`` (and of
        ``serve web`` and ``redis`` when the service is split)."""
        self._pids = pids
        self.interval = interval
        self.samples: list[Sample] = []
        self._task: asyncio.Task[None] | None = None
        self._me = os.getpid()

    def sample(self) -> Sample:
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        for group, pid in self._pids().items():
            fields = _stat(pid) if pid else None
            if fields is not None:
                cpu[group] = _cpu(fields, children=True)
                rss[group] = _rss_mb(fields)
        sipps = _sipp_children(self._me)
        me = _stat(self._me)
        assert me is not None
        cpu["sipp"] = _cpu(me, children=True) - _cpu(me, children=False) + sum(
            _cpu(f, children=False) for f in sipps)
        rss["sipp"] = sum(_rss_mb(f) for f in sipps)
        cpu["bench"] = _cpu(me, children=False)
        rss["bench"] = _rss_mb(me)
        return Sample(time.monotonic(), cpu, rss, host_busy_seconds(), len(sipps))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="proc-sampler")

    async def _run(self) -> None:
        while True:
            self.samples.append(await asyncio.to_thread(self.sample))
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def mark(self) -> int:
        """An index into the samples, to summarise from here on (see :meth:`usage`)."""
        self.samples.append(self.sample())
        return len(self.samples) - 1

    def _intervals(self, window: list[Sample]) -> list[tuple[Sample, Sample]]:
        """Consecutive samples at least ~one interval apart (CPU times tick at 10 ms: a
        shorter interval would make a meaningless peak)."""
        pairs, start = [], window[0]
        for sample in window[1:]:
            if sample.at - start.at >= 0.9 * self.interval:
                pairs.append((start, sample))
                start = sample
        return pairs

    def usage(self, since: int) -> Usage:
        window = [*self.samples[since:], self.sample()]
        first, last = window[0], window[-1]
        wall = last.at - first.at
        usage = Usage(wall)
        if wall <= 0:
            return usage
        for group in GROUPS:
            if group not in first.cpu or group not in last.cpu:
                continue
            peaks = [100 * (b.cpu[group] - a.cpu[group]) / (b.at - a.at)
                     for a, b in self._intervals(window)
                     if group in a.cpu and group in b.cpu]
            usage.groups[group] = GroupUsage(
                cpu_mean=100 * (last.cpu[group] - first.cpu[group]) / wall,
                cpu_peak=max(peaks, default=0.0),
                rss_peak=max(s.rss.get(group, 0.0) for s in window))
        usage.host_mean = 100 * (last.host - first.host) / wall
        usage.host_peak = max((100 * (b.host - a.host) / (b.at - a.at)
                               for a, b in self._intervals(window)), default=0.0)
        usage.sipp_processes_peak = max(s.sipp_processes for s in window)
        return usage
