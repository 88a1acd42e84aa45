"""The reminder timer's figures (crm/cases/reminder_timer.py): reminders sent, passes that
failed, and when the last pass ran; the last pass itself for the health report. Counts and
times only: no case number, no department."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from crm.cases.reminder_timer import ReminderRun


class ReminderFigures:
    """Fed by the timer's ``on_run``; registered on the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter("hotline_dispatch_reminders",
                            "Due-soon and overdue reminders the service's timer sent to "
                            "departments", registry=registry)
        self.failed = Counter("hotline_dispatch_reminder_passes_failed",
                              "Reminder passes that failed (the database down, ...)",
                              registry=registry)
        self.last_pass = Gauge("hotline_dispatch_reminders_last_pass_timestamp_seconds",
                               "When the last reminder pass ran (Unix time, the timer's clock)",
                               registry=registry)
        self.last: ReminderRun | None = None
        self._pass = asyncio.Event()

    def observe(self, run: ReminderRun) -> None:
        self.last = run
        self._pass.set()
        self._pass = asyncio.Event()
        self.sent.inc(run.sent)
        if run.error is not None:
            self.failed.inc()
        self.last_pass.set(run.at.timestamp())

    async def next_pass(self) -> ReminderRun:
        """The next pass, once it is done (callers bound the wait)."""
        await self._pass.wait()
        assert self.last is not None
        return self.last

    def health(self) -> dict[str, Any]:
        """The last pass for /healthz (empty before the first, or with no timer)."""
        return {} if self.last is None else {"last": self.last.to_json()}
