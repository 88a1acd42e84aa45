"""Database errors, counted where SQLAlchemy sees them: every error the driver raises on a
connection or a statement of one engine (its ``handle_error`` event), whoever ran it."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class DatabaseErrors:
    """Counts the errors of the engines it watches; ``count`` is read at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def watch(self, engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine, "handle_error", self._on_error)

    def _on_error(self, context: Any) -> None:
        with self._lock:
            self.count += 1
