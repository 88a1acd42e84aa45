"""Which calls leave a callback request behind, decided from the call events on the bus.

Subscribed to the call event bus (beside the consultation recorder), it remembers of each
live call what the rules need: the caller's number and language, when they first joined
the queue, whether the IVR handed them back at its limit, whether an agent's phone rang
without answer. A request is made (or the number's open one merged into) when:

- the caller abandons the queue after ``min_wait_s`` (reason ``abandoned``), or at any wait
  after the IVR handed them back at its limit (``overload``) or after an agent's phone rang
  unanswered for them (``no_answer``);
- the call's media node died under it (``lost``, hotline.roles.node_loss);
- the callback offer (dialplan context ``hotline-callback-offer``) reports the caller's
  answer (a ``callback_offer`` step): yes, or the offer could not be made (the IVR was
  unavailable), or no answer after the maximum wait.

A withheld or malformed number gets no request; the consultation gets a
``callback_not_possible`` step saying why. A resident with an open request who calls in and
is answered by an agent, or finishes in self-service, closes it. Callback calls themselves
(their first step is ``callback_dialling``) never make or close requests.

Requests are written off the call's path, once the consultation recorder has written the
call so far (``settle``), so the request links to its consultation.

In a cluster the watcher is the one member of its own consumer group
(hotline/roles/callback_watcher_member.py): :meth:`handle_through` returns once the event's
requests are written, and only then is the event acknowledged; a new control after a
takeover first :meth:`learn` s the calls so far from the events already acknowledged
(deciding nothing), then goes on from the first event not acknowledged. A decision is
taken once per call and reason (crm.callbacks.service.request_callback, ``call_id``), so
an event handed over a second time makes no second request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from crm.callbacks import service
from crm.callbacks.service import RetryRules
from crm.settings import CallbackSettings
from crm.storage.db import SessionFactory
from crm.telephony.callbacks import is_callback_channel
from crm.telephony.events import (
    AgentAnswered,
    AgentRingStopped,
    BusEvent,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallStarted,
    CallStep,
    EventBus,
)
from crm.telephony.steps import (
    CallbackClosedByCall,
    CallbackDialling,
    CallbackNotPossible,
    CallbackOffered,
    CallbackRequested,
    IvrAtCapacity,
    LanguageChosen,
    PromptPlayed,
)

log = logging.getLogger(__name__)

MAX_CALLS = 5000
"""Calls remembered at once (a call whose end we never hear is forgotten oldest first)."""
OFFER_REASONS = {"chosen": "chosen", "closed": "closed", "max_wait": "chosen"}
"""The reason a request made from the callback offer gets, by CALLBACK_REASON."""


@dataclass
class _Call:
    number: str | None = None
    language: str | None = None
    queue: str | None = None
    queued_at: datetime | None = None
    overload: bool = False
    rang_unanswered: bool = False
    callback: bool = False
    answered: bool = False


def abandon_reason(call: _Call, held_s: float, min_wait_s: float) -> str | None:
    """The reason an abandoned caller is called back, or None (they did not wait long)."""
    if call.overload:
        return "overload"
    if call.rang_unanswered:
        return "no_answer"
    return "abandoned" if held_s >= min_wait_s else None


def offer_reason(offer: CallbackOffered) -> str | None:
    """The reason a request made from the callback offer gets, or None (no request)."""
    if offer.answer in ("yes", "unheard"):
        return OFFER_REASONS.get(offer.reason, "chosen")
    if offer.answer == "none" and offer.reason == "max_wait":
        return "abandoned"  # pushed out after the maximum wait and gave no answer
    return None


class MissedCallWatcher:
    def __init__(self, sessions: SessionFactory, bus: EventBus, settings: CallbackSettings,
                 *, settle: Callable[[], Awaitable[None]] | None = None,
                 on_created: Callable[[], None] | None = None,
                 on_closed: Callable[[list[int]], None] | None = None) -> None:
        self.sessions = sessions
        self.bus = bus
        self.settings = settings
        self.rules = RetryRules.from_settings(settings)
        self._settle = settle
        self._on_created = on_created
        self._on_closed = on_closed
        self._calls: dict[str, _Call] = {}
        self._ended: dict[str, _Call] = {}
        """Queued calls that ended without an agent: Asterisk may report the caller's hang-up
        (the dialplan's HotlineCallEnd) before app_queue's QueueCallerAbandon."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._learning = False
        self._strict = False
        self._strict_tasks: set[asyncio.Task[None]] = set()
        """Work started by :meth:`handle_through`: a failure to write raises out of it."""

    async def learn(self, event: BusEvent) -> None:
        """Take in what ``event`` says about its call, deciding nothing (the events a
        previous control handled already, for the calls still under way)."""
        self._learning = True
        try:
            await self.handle(event)  # awaits nothing: no other event comes in between
        finally:
            self._learning = False

    async def handle_through(self, event: BusEvent) -> None:
        """:meth:`handle`, returning once the requests (or closings) it started are written;
        raises when one could not be written, with the call's state as before the event (so
        the event can be handed over again)."""
        call_id = event.call_id
        before = (self._calls.get(call_id), self._ended.get(call_id)) if call_id else None
        saved = tuple(None if c is None else replace(c) for c in before) if before else None
        started = set(self._tasks)
        self._strict = True
        try:
            await self.handle(event)
        finally:
            self._strict = False
        work = [task for task in self._tasks if task not in started]
        failures = [r for r in await asyncio.gather(*work, return_exceptions=True)
                    if isinstance(r, BaseException)]
        if failures:
            if call_id and saved is not None:
                self._restore(call_id, *saved)
            raise failures[0]

    def _restore(self, call_id: str, live: _Call | None, ended: _Call | None) -> None:
        for table, call in ((self._calls, live), (self._ended, ended)):
            if call is None:
                table.pop(call_id, None)
            else:
                table[call_id] = call

    async def handle(self, event: BusEvent) -> None:
        if not event.call_id or not self.settings.enabled:
            return
        if isinstance(event, CallStarted):
            call = self._call(event.call_id)
            call.number = event.caller_number
            call.callback = call.callback or is_callback_channel(event.channel)
            return
        call = self._calls.get(event.call_id)
        if call is None and isinstance(event, CallerAbandoned):
            call = self._ended.pop(event.call_id, None)
            if call is not None:
                self._on_abandoned(event, call)
                return
        if call is None:
            if isinstance(event, CallEnded):
                return
            call = self._call(event.call_id)
        if isinstance(event, CallStep):
            self._on_step(event, call)
        elif isinstance(event, CallerQueued):
            call.callback = call.callback or is_callback_channel(event.channel)
            if call.queued_at is None:
                call.queued_at, call.queue = event.at, event.queue
            call.number = call.number or event.caller_number
        elif isinstance(event, AgentRingStopped):
            call.rang_unanswered = True
        elif isinstance(event, AgentAnswered):
            call.answered = True
            if not call.callback:
                self._spawn(self._close(event.call_id, call.number))
        elif isinstance(event, CallerAbandoned):
            self._on_abandoned(event, call)
        elif isinstance(event, CallEnded):
            self._calls.pop(event.call_id, None)
            if call.queued_at is not None and not call.answered:
                while len(self._ended) >= MAX_CALLS:
                    self._ended.pop(next(iter(self._ended)))
                self._ended[event.call_id] = call
            if event.route == "end" and not call.callback and not call.answered:
                self._spawn(self._close(event.call_id, call.number))
            elif event.route == "lost" and not call.callback:
                # its media node died under it (hotline.roles.node_loss): cut off, call back
                self._ended.pop(event.call_id, None)
                self._spawn(self._request(event.call_id, call, "lost", None))

    def language_of(self, call_id: str) -> str | None:
        """The language a live call has used so far (None: not known)."""
        call = self._calls.get(call_id)
        return call.language if call else None

    def first_queued(self, call_id: str) -> tuple[str, datetime] | None:
        """The queue a live call first joined and when (its place), None if it has not."""
        call = self._calls.get(call_id)
        if call is None or call.queue is None or call.queued_at is None:
            return None
        return call.queue, call.queued_at

    def _call(self, call_id: str) -> _Call:
        call = self._calls.get(call_id)
        if call is None:
            while len(self._calls) >= MAX_CALLS:
                self._calls.pop(next(iter(self._calls)))
            call = self._calls[call_id] = _Call()
        return call

    def _on_step(self, event: CallStep, call: _Call) -> None:
        step = event.step
        if isinstance(step, LanguageChosen):
            call.language = step.language
        elif isinstance(step, PromptPlayed) and step.language:
            call.language = step.language
        elif isinstance(step, IvrAtCapacity):
            call.overload = True
        elif isinstance(step, CallbackDialling):
            call.callback = True
        elif isinstance(step, CallbackOffered) and not call.callback:
            reason = offer_reason(step)
            if reason is not None:
                self._spawn(self._request(event.call_id, call, reason, None))

    def _on_abandoned(self, event: CallerAbandoned, call: _Call) -> None:
        if call.callback:
            return
        held = (float(event.hold_time_s) if event.hold_time_s is not None
                else (event.at - call.queued_at).total_seconds() if call.queued_at else 0.0)
        reason = abandon_reason(call, held, self.settings.min_wait_s)
        if reason is None:
            log.info("call %s: abandoned after %.0f s: no callback (under %.0f s)",
                     event.call_id, held, self.settings.min_wait_s)
            return
        self._spawn(self._request(event.call_id, call, reason, held))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._learning:
            work.close()  # learning the calls so far: their decisions were taken already
            return
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        if self._strict:
            self._strict_tasks.add(task)
            task.add_done_callback(self._strict_tasks.discard)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request(self, call_id: str, call: _Call, reason: str,
                       held_s: float | None) -> None:
        problem = service.number_problem(call.number)
        if problem is not None:
            log.info("call %s: no callback, the number is %s", call_id, problem)
            if await self._said_not_possible(call_id):
                return  # its event handed over again (a new control), or the offer told
            await self.bus.publish(CallStep(call_id, CallbackNotPossible(problem)))
            return
        assert call.number is not None
        try:
            consultation_id = await self._consultation(call_id)
            requested = await service.request_callback(
                self.sessions, number=call.number, reason=reason,
                consultation_id=consultation_id, language=call.language,
                queued_at=call.queued_at, waited_s=held_s, rules=self.rules, call_id=call_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: the callback request could not be written", call_id)
            if asyncio.current_task() in self._strict_tasks:
                raise
            return
        if requested.repeated:
            return  # this call's event came again (a takeover): its request is written
        await self.bus.publish(CallStep(call_id, CallbackRequested(
            requested.request.id, reason if not requested.merged else requested.request.reason,
            requested.merged)))
        if self._on_created is not None:
            self._on_created()

    async def _close(self, call_id: str, number: str | None) -> None:
        if service.number_problem(number) is not None:
            return
        try:
            consultation_id = await self._consultation(call_id)
            closed = await service.close_by_call_in(self.sessions, number,
                                                    consultation_id=consultation_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: open callbacks of the caller could not be closed", call_id)
            if asyncio.current_task() in self._strict_tasks:
                raise
            return
        for request in closed:
            await self.bus.publish(CallStep(call_id, CallbackClosedByCall(request.id)))
        if closed and self._on_closed is not None:
            self._on_closed([r.id for r in closed])

    async def _said_not_possible(self, call_id: str) -> bool:
        """Whether the call's consultation says already that it cannot be called back."""
        if self._settle is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._settle()
        try:
            return await service.said_not_possible(self.sessions, call_id)
        except Exception as exc:  # the database is down: say it (again) rather than not
            log.warning("call %s: cannot read its steps: %s", call_id, exc)
            return False

    async def _consultation(self, call_id: str) -> int | None:
        if self._settle is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._settle()
        return await service.consultation_id_of(self.sessions, call_id)

    async def drain(self) -> None:
        """Wait for the requests being written (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
