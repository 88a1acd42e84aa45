"""The recognition thread pool, metered and with an urgent lane.

Metered: how many of its threads decode now and how many thread-seconds they have spent
decoding, so that a monitoring system can show the pool's busy share (busy seconds per second,
divided by the threads).

Urgent lane: ``submit_urgent`` work runs before any ordinary work still waiting. A caller who
stopped speaking waits for one decode (the end of the utterance) while the other calls' 60 ms
chunks, submitted before it, can wait a little longer: with 20 calls speaking at once on two
threads, that queue is what made the end of one call's speech wait for another's backlog.
Each submission hands the executor a trampoline that runs whichever waiting work is most
urgent when a thread takes it, so the pool stays an ordinary ThreadPoolExecutor underneath.

The waiting work is bounded by the calls, not by the pool: a recognizer awaits each decode
before it submits its next one, so at most one per call in flight waits here
(``audiosocket.max_calls``); ``waiting`` is on /metrics as hotline_recognizer_waiting.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, TypeVar

T = TypeVar("T")

URGENT: Final = 0
ORDINARY: Final = 1

URGENT_BUCKETS: Final = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0)
"""Upper bounds (seconds) of the urgent work's latency histogram: from submission to result,
what a caller who stopped speaking waits for the decode."""

_Work = tuple[int, int, "Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any], float]


class MeteredThreadPool(ThreadPoolExecutor):
    def __init__(self, max_workers: int, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self.threads = max_workers
        self._lock = threading.Lock()
        self._running = 0
        self._busy_s = 0.0
        self._started: dict[int, float] = {}
        self._waiting: list[_Work] = []
        self._order = itertools.count()
        self._urgent_counts = [0] * (len(URGENT_BUCKETS) + 1)
        self._urgent_sum = 0.0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._submit(ORDINARY, fn, args, kwargs)

    def submit_urgent(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Like ``submit``, but runs before every ordinary submission still waiting."""
        return self._submit(URGENT, fn, args, kwargs)

    def _submit(self, lane: int, fn: Callable[..., T], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            heapq.heappush(self._waiting, (lane, next(self._order), future, fn, args, kwargs,
                                           time.monotonic()))
        try:
            super().submit(self._run_next)
        except RuntimeError:  # shut down: take the work back, the caller gets the error
            with self._lock:
                self._waiting = [w for w in self._waiting if w[2] is not future]
                heapq.heapify(self._waiting)
            raise
        return future

    def _count_urgent(self, seconds: float) -> None:
        index = next((i for i, bound in enumerate(URGENT_BUCKETS) if seconds <= bound),
                     len(URGENT_BUCKETS))
        with self._lock:
            self._urgent_counts[index] += 1
            self._urgent_sum += seconds

    def urgent_latency(self) -> tuple[list[tuple[float, int]], int, float]:
        """The urgent work's latencies so far (the work that ran, failed or not): cumulative
        counts per upper bound of URGENT_BUCKETS, the count of all and their sum (s)."""
        with self._lock:
            counts, total = list(self._urgent_counts), self._urgent_sum
        cumulative = list(itertools.accumulate(counts))
        return list(zip(URGENT_BUCKETS, cumulative, strict=False)), cumulative[-1], total

    def _run_next(self) -> None:
        """A thread's turn: run the most urgent work waiting (each submission adds one turn)."""
        with self._lock:
            if not self._waiting:
                return
            lane, _, future, fn, args, kwargs, submitted = heapq.heappop(self._waiting)
        if not future.set_running_or_notify_cancel():
            return
        ident = threading.get_ident()
        with self._lock:
            self._running += 1
            self._started[ident] = time.monotonic()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # handed to whoever waits on the future
            self._finished(ident, lane, submitted)
            future.set_exception(exc)
        else:
            self._finished(ident, lane, submitted)
            future.set_result(result)

    def _finished(self, ident: int, lane: int, submitted: float) -> None:
        """Account for work done, before its submitter hears of it."""
        now = time.monotonic()
        with self._lock:
            self._running -= 1
            self._busy_s += now - self._started.pop(ident)
        if lane == URGENT:
            self._count_urgent(now - submitted)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            with self._lock:
                waiting, self._waiting = self._waiting, []
            for work in waiting:
                work[2].cancel()
        super().shutdown(wait=wait, cancel_futures=cancel_futures)

    @property
    def waiting(self) -> int:
        """Work submitted and not yet started."""
        with self._lock:
            return len(self._waiting)

    @property
    def running(self) -> int:
        """Threads decoding now."""
        return self._running

    def busy_seconds(self) -> float:
        """Thread-seconds spent in work so far, the work still running included."""
        now = time.monotonic()
        with self._lock:
            return self._busy_s + sum(now - t for t in self._started.values())
