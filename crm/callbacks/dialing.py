"""Calling missed callers back: a scheduler that hands due requests to the callback dialer.

The dialer (crm.telephony.callbacks.CallbackDialer, implemented over AMI by
ivr.asterisk.callback_dialer) puts each callback into the queue at the place its caller's
arrival gives it, so an agent gets it in turn. Here: which requests are due (pending, their
time come, inside the calling hours, in arrival order), at most ``max_concurrent`` at once,
each claimed before it is dialled (compare-and-set) and its outcome recorded. A request
closed or cancelled while its callback waits in the queue is withdrawn (:meth:`withdraw`).

A request assigned to an agent waits in the assigned-callbacks queue for that agent alone
(``CallbackJob.penalty``: the agent's id), at most ``assigned_wait`` seconds; then the
assignment lapses and it is placed in the general queue at once. Reassigning (or
unassigning) a callback that waits in a queue moves it: withdrawn and placed again for the
new agent, no attempt counted (:meth:`reassign`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from crm.callbacks import service
from crm.callbacks.service import CallbackView, RetryRules
from crm.errors import HotlineError
from crm.settings import CallbackSettings, assigned_queue
from crm.storage.db import SessionFactory
from crm.storage.models import utcnow
from crm.surveys.return_visits import CallingHours
from crm.telephony.callbacks import CallbackDialer, CallbackJob, CallbackResult
from crm.telephony.events import CallStep, EventBus
from crm.telephony.steps import CallbackDialling, CallbackOutcome

log = logging.getLogger(__name__)


def seconds_left(hours: CallingHours | None, now: datetime) -> float | None:
    """Seconds until the calling hours end (None: no limit): a callback waits in the queue no
    longer, so no resident is called after hours."""
    if hours is None or hours.end_minute >= 24 * 60:
        return None
    local = now.astimezone(hours.tz)
    end = local.replace(hour=hours.end_minute // 60, minute=hours.end_minute % 60, second=0,
                        microsecond=0)
    return max(0.0, (end - local).total_seconds())


class CallbackActions(Protocol):
    """What the desk and the console do to callback requests: the scheduler itself, or, on
    a web node of a cluster, the database part here and the queue part sent to the node
    that runs the scheduler (hotline.roles.callback_commands)."""

    async def cancel(self, request_id: int, *, actor: str, note: str | None = None,
                     source: str | None = None, web_session: str | None = None
                     ) -> CallbackView: ...

    async def reassign(self, request_id: int, agent_login: str | None, *, actor: str,
                       source: str | None = None,
                       web_session: str | None = None) -> CallbackView: ...

    async def record_outcome(self, request_id: int, outcome: str, *, actor: str,
                             call_id: str | None = None,
                             note: str | None = None) -> CallbackView: ...


class CallbackScheduler:
    def __init__(self, dialer: CallbackDialer, sessions: SessionFactory, bus: EventBus,
                 settings: CallbackSettings, *, queue: str,
                 settle: Callable[[], Awaitable[None]] | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.dialer = dialer
        self.sessions = sessions
        self.bus = bus
        self.settings = settings
        self.rules = RetryRules.from_settings(settings)
        self.queue = queue
        self.clock = clock
        self._settle = settle
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None
        self.finished: list[CallbackView] = []
        self._changed = asyncio.Condition()
        self._chores: set[asyncio.Task[None]] = set()
        self._moving: set[int] = set()
        """Requests whose callback is withdrawn to be placed again at once (reassigned)."""
        self._withdrawing: set[int] = set()
        """Requests withdrawn while their job was in flight: one that had not reached the
        dialer yet (its queue still being read) is not placed at all; the dialer's own
        withdrawal finds it only once it waits there."""
        self.assigned_queue = assigned_queue(queue)
        dialer.on_report = self._on_report

    # -- running
    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="callbacks")

    def wake(self) -> None:
        """Look for due requests now (a request was made, an agent became free...)."""
        self._wake.set()

    async def close(self) -> None:
        if self._chores:  # withdrawals under way are let finish (bounded)
            await asyncio.wait(set(self._chores), timeout=5)
        tasks = [t for t in (self._loop, *self._in_flight.values(), *self._chores)
                 if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def recover(self) -> None:
        """After a restart: requests left ``dialling`` whose callback call is still up keep
        it (its outcome comes as a report); the others are placed again."""
        left = await service.dialling_callbacks(self.sessions)
        if not left:
            return
        try:
            live = await self.dialer.live_callbacks({r.id: r.arrival for r in left})
        except Exception as exc:
            log.warning("callbacks: could not ask which calls are still up (%s)", exc)
            return
        for request in left:
            if request.id not in live:
                await service.finish_attempt(self.sessions, request.id, None, rules=self.rules,
                                             now=self.clock())
        log.info("callbacks: %d left dialling by the last run, %d still up", len(left),
                 len(live))

    async def _on_report(self, request_id: int, call_id: str, result: CallbackResult) -> None:
        """How a callback placed before a restart went."""
        try:
            request = await service.get_callback(self.sessions, request_id)
        except HotlineError:
            return
        await self._finish(request, call_id, result)

    async def _run(self) -> None:
        with contextlib.suppress(Exception):
            await self.recover()
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("callback pass failed; trying again in %.0f s",
                              self.settings.poll_interval)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_interval):
                    await self._wake.wait()
            self._wake.clear()

    async def run_once(self) -> list[int]:
        """Start a callback for each due request there is room for; the ids started."""
        now = self.clock()
        if self.rules.hours is not None and not self.rules.hours.contains(now):
            return []
        room = self.settings.max_concurrent - len(self._in_flight)
        if room <= 0:
            return []
        due = [r for r in await service.due_callbacks(self.sessions, now=now,
                                                      limit=room + len(self._in_flight))
               if r.id not in self._in_flight][:room]
        started = []
        for request in due:
            if not await service.begin_attempt(self.sessions, request.id):
                continue
            task = asyncio.create_task(self._attempt(request.id),
                                       name=f"callback-{request.id}")
            self._in_flight[request.id] = task
            task.add_done_callback(functools.partial(self._done, request.id))
            started.append(request.id)
        return started

    def _done(self, request_id: int, task: object = None) -> None:
        """``task``'s attempt at the request ended: room for the next one. Only the attempt
        in flight is forgotten: the task's own done-callback comes after its ``_finish``
        already made room, when the request's next attempt may have started."""
        if task is not None and self._in_flight.get(request_id) is task:
            self._in_flight.pop(request_id, None)
            self._withdrawing.discard(request_id)
        self._wake.set()

    def withdraw(self, request_ids: list[int]) -> None:
        """The requests were closed or cancelled: take their callbacks out of the queue."""
        for request_id in request_ids:
            # The dialer hangs up the callback while it waits in the queue (the call being
            # placed then ends with no agent: the request keeps its closed status).
            log.info("callback %d: withdrawing", request_id)
            if request_id in self._in_flight:  # its job may not have reached the dialer yet
                self._withdrawing.add(request_id)
            chore = asyncio.ensure_future(self.dialer.withdraw(request_id))
            self._chores.add(chore)
            chore.add_done_callback(self._chores.discard)

    # -- one callback call
    def job_for(self, request: CallbackView, call_id: str, queue: str) -> CallbackJob:
        """The callback call to place for ``request``: in the caller's ``queue``, or, when it
        is assigned to an agent, in the assigned-callbacks queue for that agent alone (at
        most ``assigned_wait`` seconds)."""
        wait_s = seconds_left(self.rules.hours, self.clock())
        penalty = request.assigned_agent_id
        if penalty is not None:
            queue = self.assigned_queue
            wait_s = (self.settings.assigned_wait if wait_s is None
                      else min(self.settings.assigned_wait, wait_s))
        return CallbackJob(request.id, call_id, request.caller_number, queue, request.arrival,
                           request.attempts + 1, self.settings.order, wait_s=wait_s,
                           penalty=penalty)

    async def _attempt(self, request_id: int) -> None:
        # Read now, not when it was found due: a reassignment committed in between is the
        # one this call is placed for.
        request = await service.get_callback(self.sessions, request_id)
        call_id = str(uuid.uuid4())
        attempt = request.attempts + 1
        job = self.job_for(request, call_id, await self._queue_of(request))

        async def placed(position: int | None) -> None:
            await self.bus.publish(CallStep(call_id, CallbackDialling(
                request.id, attempt, request.reason, self.settings.order, position)))

        log.info("callback %d: calling %s back (attempt %d, %s%s)", request.id,
                 request.caller_number, attempt, self.settings.order,
                 "" if job.penalty is None else f", for agent {request.assigned_agent}")
        try:
            if request.id in self._withdrawing or request.status != "dialling":
                # withdrawn (moved, closed) while starting
                result = CallbackResult(None, "withdrawn before it was placed")
            else:
                result = await self.dialer.call_back(job, placed)
        except asyncio.CancelledError:
            # The service stops: the request stays dialling and the call where it is; the
            # next start finds it (recover).
            raise
        except Exception as exc:
            log.exception("callback %d: the dialer failed", request.id)
            result = CallbackResult(None, f"dialer failed: {exc}")
        # Its wait ran out for the assigned agent (not for the calling hours' end): lapses.
        lapses = job.penalty is not None and job.wait_s == self.settings.assigned_wait
        await self._finish(request, call_id, result, assigned=job.penalty if lapses else None,
                           task=asyncio.current_task())

    async def _finish(self, request: CallbackView, call_id: str,
                      result: CallbackResult, *, assigned: int | None = None,
                      task: object = None) -> None:
        """``assigned``: the agent the callback waited for (their id) until its
        ``assigned_wait`` ran out, if it was assigned; ``task``: the attempt in flight that
        placed it (none: one placed before a restart, reported)."""
        await self.bus.publish(CallStep(call_id, CallbackOutcome(
            request.id, result.outcome or "not_dialled")))
        if self._settle is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._settle()
        consultation_id = await service.consultation_id_of(self.sessions, call_id)
        again_at = None
        if result.outcome is None and request.id in self._moving:
            again_at = self.clock()  # reassigned: placed again for the new agent at once
        elif result.outcome is None and assigned is not None and result.timed_out:
            # The assigned agent did not take it in time: the general queue, at once.
            if await service.lapse_assignment(self.sessions, request.id, assigned,
                                              waited_s=self.settings.assigned_wait):
                again_at = self.clock()
        self._moving.discard(request.id)
        view = await service.finish_attempt(self.sessions, request.id, result.outcome,
                                            rules=self.rules, consultation_id=consultation_id,
                                            now=self.clock(), again_at=again_at)
        log.info("callback %d: %s (%s) -> %s", request.id, result.outcome or "not dialled",
                 result.detail, view.status)
        self._done(request.id, task)  # room for the next callback once this one is recorded
        async with self._changed:
            self.finished.append(view)
            del self.finished[:-100]
            self._changed.notify_all()

    async def _queue_of(self, request: CallbackView) -> str:
        """The queue the caller waited in (their consultation's queued step), else the main
        queue."""
        if request.call_id:
            queue = await service.queue_of_call(self.sessions, request.call_id)
            if queue:
                return queue
        return self.queue

    async def wait_finished(self, match: Callable[[CallbackView], bool],
                            within: float) -> CallbackView:
        """The first finished attempt that matches (tests and monitors)."""
        async with asyncio.timeout(within), self._changed:
            while True:
                for view in self.finished:
                    if match(view):
                        return view
                await self._changed.wait()

    # -- what the desk and the console do to requests (audited), telling the dialer
    async def cancel(self, request_id: int, *, actor: str, note: str | None = None,
                     source: str | None = None, web_session: str | None = None) -> CallbackView:
        view = await service.cancel_callback(self.sessions, request_id, actor=actor, note=note,
                                             source=source, web_session=web_session)
        self.withdraw([request_id])
        return view

    async def reassign(self, request_id: int, agent_login: str | None, *, actor: str,
                       source: str | None = None,
                       web_session: str | None = None) -> CallbackView:
        """Give the request to an agent (None: the general queue), audited; a callback of
        it waiting in a queue is moved (withdrawn, then placed again at once for the new
        agent, at its caller's place: no attempt counted). One an agent already took is
        left alone."""
        before = await service.get_callback(self.sessions, request_id)
        view = await service.reassign_callback(self.sessions, request_id, agent_login,
                                               actor=actor, source=source,
                                               web_session=web_session)
        if view.assigned_agent_id != before.assigned_agent_id and (
                request_id in self._in_flight or view.status == "dialling"):
            self.move(request_id)
        return view

    def move(self, request_id: int) -> None:
        """The request was reassigned while its callback waits in a queue: withdraw it and
        place it again at once for the new agent (no attempt counted)."""
        self._moving.add(request_id)
        self.withdraw([request_id])

    async def record_outcome(self, request_id: int, outcome: str, *, actor: str,
                             call_id: str | None = None, note: str | None = None) -> CallbackView:
        view = await service.record_outcome(self.sessions, request_id, outcome, actor=actor,
                                            rules=self.rules, note=note, now=self.clock())
        if call_id:
            await self.bus.publish(CallStep(call_id, CallbackOutcome(request_id, outcome,
                                                                     by=actor)))
        return view
