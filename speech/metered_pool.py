"""The recognition thread pool, metered: how many of its threads decode now and how many
thread-seconds they have spent decoding, so that a monitoring system can show the pool's busy
share (busy seconds per second, divided by the threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class MeteredThreadPool(ThreadPoolExecutor):
    def __init__(self, max_workers: int, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self.threads = max_workers
        self._lock = threading.Lock()
        self._running = 0
        self._busy_s = 0.0
        self._started: dict[int, float] = {}

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return super().submit(self._timed, fn, args, kwargs)

    def _timed(self, fn: Callable[..., T], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> T:
        ident = threading.get_ident()
        with self._lock:
            self._running += 1
            self._started[ident] = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._running -= 1
                self._busy_s += time.monotonic() - self._started.pop(ident)

    @property
    def running(self) -> int:
        """Threads decoding now."""
        return self._running

    def busy_seconds(self) -> float:
        """Thread-seconds spent in work so far, the work still running included."""
        now = time.monotonic()
        with self._lock:
            return self._busy_s + sum(now - t for t in self._started.values())
