"""Process measurements for the benchmarks: CPU per thread, RSS, event-loop lag, percentiles.

Linux only (reads /proc/self). CPU is split between the event-loop thread (asyncio, sockets,
call flow) and every other thread (the recognition thread pool, where vosk decodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    return _status_kb("VmHWM") / 1024


def thread_cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) of every thread of this process, by thread id."""
    cpu: dict[int, float] = {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):  # a thread may end while we read
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            cpu[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return cpu


def host_busy_seconds() -> float:
    """CPU seconds every process on the host has used since boot (all cores; /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass(frozen=True)
class CpuUsage:
    wall: float
    process: float
    """CPU seconds of the whole process."""
    loop_thread: float
    """CPU seconds of the thread running the event loop."""
    workers: float
    """CPU seconds of all other threads (the recognition thread pool)."""
    host: float
    """CPU seconds used by every process on the host (this one included)."""

    def percent(self, seconds: float) -> float:
        """CPU as % of one core (200 % = both cores of a 2-core machine)."""
        return 100 * seconds / self.wall if self.wall > 0 else float("nan")


class CpuMeter:
    """CPU used between ``start()`` and ``stop()``; call both from the event-loop thread."""

    def start(self) -> None:
        self._loop_tid = threading.get_native_id()
        self._wall = time.monotonic()
        self._process = time.process_time()
        self._threads = thread_cpu_seconds()
        self._host = host_busy_seconds()

    def stop(self) -> CpuUsage:
        threads = thread_cpu_seconds()
        delta = {tid: cpu - self._threads.get(tid, 0.0) for tid, cpu in threads.items()}
        loop = delta.pop(self._loop_tid, 0.0)
        return CpuUsage(
            wall=time.monotonic() - self._wall,
            process=time.process_time() - self._process,
            loop_thread=loop,
            workers=sum(delta.values()),
            host=host_busy_seconds() - self._host,
        )


class LoopLagMonitor:
    """How late the event loop wakes a task that sleeps ``interval`` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.lags = []
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, loop.time() - due))

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return self.lags


def machine_description() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"nproc {len(os.sched_getaffinity(0))}, {model}, {mem_gb:.1f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
