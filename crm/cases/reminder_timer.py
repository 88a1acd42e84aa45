"""Reminders on a timer inside the service: every ``[dispatch] remind_every_s`` seconds a pass
of :func:`crm.cases.dispatch.send_reminders` (each case is reminded once per deadline, so a
pass finds only what turned due soon or overdue since the last one).

One process of a hotline runs it (the shell starts it with the control part: ``serve`` with
the role ``all``, ``core`` or ``control``). A pass that fails -- the database down or
unreachable, or anything else -- is logged on one line and the next pass comes at its time;
the timer never stops the service. The clock is handed in, so tests run it on a fixed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crm.cases.dispatch import DUE_SOON, send_reminders
from crm.settings import DispatchSettings
from crm.storage.db import DATABASE_DOWN, SessionFactory
from crm.storage.models import utcnow

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
PASS_TIMEOUT = 60.0
"""Seconds a pass may take (at least; longer when the interval is longer): one that hangs on
a database that stopped answering is abandoned and counted as failed, and the timer goes
on."""


@dataclass(frozen=True)
class ReminderRun:
    """One pass: when (by the timer's clock), how many reminders it sent, what went wrong."""

    at: datetime
    sent: int
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "sent": self.sent, "error": self.error}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class ReminderTimer:
    """Sends the due reminders every ``every`` seconds, the first pass at once.

    ``on_run`` hears of every pass (the service's metrics); tests wait for passes with
    :meth:`wait_runs`."""

    def __init__(self, sessions: SessionFactory, every: float, *, clock: Clock = utcnow,
                 within: timedelta = DUE_SOON,
                 on_run: Callable[[ReminderRun], None] | None = None) -> None:
        if every <= 0:
            raise ValueError("the reminder interval must be positive (0 means no timer)")
        self._sessions = sessions
        self.every = every
        self._clock = clock
        self._within = within
        self._on_run = on_run
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.runs = 0
        self.failures = 0
        self.sent = 0
        self.last: ReminderRun | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dispatch-reminders")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> ReminderRun:
        """One pass; a failure is returned (with its error), never raised."""
        at = self._clock()
        try:
            async with asyncio.timeout(max(PASS_TIMEOUT, self.every)):
                made = await send_reminders(self._sessions, now=at, within=self._within)
        except TimeoutError:  # before DATABASE_DOWN: TimeoutError is an OSError
            error = f"no answer within {max(PASS_TIMEOUT, self.every):g} s"
            log.warning("dispatch reminders not sent (%s); next try in %g s", error, self.every)
        except DATABASE_DOWN as exc:
            error = f"database unavailable: {_one_line(exc)}"
            log.warning("dispatch reminders not sent (%s); next try in %g s", error, self.every)
        except Exception as exc:  # any other fault: logged in full, the timer goes on
            error = _one_line(exc)
            log.exception("dispatch reminders failed; next try in %g s", self.every)
        else:
            return self._record(ReminderRun(at, len(made)))
        return self._record(ReminderRun(at, 0, error))

    def _record(self, run: ReminderRun) -> ReminderRun:
        self.last = run
        self.runs += 1
        if run.error is None:
            self.sent += run.sent
        else:
            self.failures += 1
        if self._on_run is not None:
            try:
                self._on_run(run)
            except Exception:
                log.exception("the reminder pass's listener failed")
        return run

    async def wait_runs(self, count: int, within: float) -> ReminderRun:
        """Wait (at most ``within`` seconds) until ``count`` passes are done; the last one."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: self.runs >= count)
        assert self.last is not None
        return self.last

    async def _run(self) -> None:
        while True:
            await self.run_once()
            async with self._changed:
                self._changed.notify_all()
            await asyncio.sleep(self.every)


@contextlib.asynccontextmanager
async def reminder_timer(sessions: SessionFactory, settings: DispatchSettings, *,
                         clock: Clock = utcnow,
                         on_run: Callable[[ReminderRun], None] | None = None
                         ) -> AsyncIterator[ReminderTimer | None]:
    """The timer of a running service (None when ``remind_every_s`` is 0), closed on exit."""
    if settings.remind_every_s <= 0:
        log.info("dispatch reminders: no timer (remind_every_s = 0)")
        yield None
        return
    timer = ReminderTimer(sessions, settings.remind_every_s, clock=clock, on_run=on_run)
    timer.start()
    log.info("dispatch reminders: a pass now and every %g s", settings.remind_every_s)
    try:
        yield timer
    finally:
        await timer.close()
