"""Callbacks through the real Asterisk 22 with SIPp callers, registered SIPp agent phones and
a SIPp resident phone behind the pstn-gateway endpoint: an abandoned caller gets exactly one
request, and its callback keeps their place in the queue (after a caller who arrived
earlier, before one who arrived later); a second abandoned call from the number makes no
second request; unanswered callbacks stop at the maximum of attempts; a withheld number gets
no request; choosing the callback in the offer context ends the call with one request. A
callback a supervisor assigns to an agent is offered to that agent only (moved out of the
general queue if it waits there), back in the general queue when unassigned or when its agent
does not take it within assigned_wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from crm.agents import accounts
from crm.audit import log as audit
from crm.callbacks import service as callbacks
from crm.callbacks.service import OPEN
from crm.consultations.service import find_consultations
from crm.live.screen_pop import build_screen_pop
from crm.telephony.events import (
    AgentRinging,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallStep,
    utcnow,
)
from crm.telephony.steps import (
    CallbackDialling,
    CallbackNotPossible,
    CallbackOffered,
    CallbackOutcome,
    CallbackRequested,
)
from hotline.service import HotlineService, running_service
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone, ResidentPhone
from hotline.tools.sipp import CallResult, place_call
from tests.integration.service_fixtures import (
    CallWatcher,
    hang_up_leftover_calls,
    service_settings,
)

pytestmark = pytest.mark.asterisk

WAIT = 30.0
"""Seconds bound for a caller to pass the IVR and join the queue, or a callback to be placed."""


@contextlib.asynccontextmanager
async def callback_hotline(bed: Settings, tmp_path: Path, *, fresh: bool = True,
                           **options: Any) -> AsyncIterator[tuple[HotlineService, CallWatcher]]:
    """The service with callbacks at any hour after a 2 s wait (and ``options``); ``fresh``
    False: a restart, the calls of the run before stay up."""
    settings = service_settings(bed, tmp_path)
    settings.callbacks = settings.callbacks.model_copy(update={
        "min_wait_s": 2.0, "calling_hours": "00:00-24:00", "ring_timeout": 3.0,
        "poll_interval": 1.0, **options})
    if fresh:
        await hang_up_leftover_calls(bed)
    async with running_service(settings) as service:
        await service.ami.wait_ready(10)
        watcher = CallWatcher()
        service.bus.subscribe(watcher.handle)
        yield service, watcher
    if fresh:
        await hang_up_leftover_calls(bed)


@contextlib.asynccontextmanager
async def calling(call: Awaitable[CallResult]) -> AsyncIterator[asyncio.Future[CallResult]]:
    """A SIPp caller in the background, hung up (BYE) when the block ends."""
    task = asyncio.ensure_future(call)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def caller(service: HotlineService, number: str, **options: Any) -> Awaitable[CallResult]:
    """A stranger who says and keys nothing at the greeting: they wait in the queue."""
    return place_call(service.settings, caller_number=number, hold_ms=120_000, **options)


def queued(number: str) -> Callable[[Any], bool]:
    return lambda e: isinstance(e, CallerQueued) and e.caller_number == number


def step_of(kind: type, call_id: str | None = None) -> Callable[[Any], bool]:
    return lambda e: (isinstance(e, CallStep) and isinstance(e.step, kind)
                      and (call_id is None or e.call_id == call_id))


@contextlib.asynccontextmanager
async def agent(service: HotlineService, extension: str, **phone: int) -> AsyncIterator[
        AgentPhone]:
    """A registered agent phone, in the queue for the block."""
    queue = service.settings.asterisk.queue_name
    async with AgentPhone(service.settings, extension, **phone) as handset:
        added = await service.ami.action("QueueAdd", Queue=queue,
                                         Interface=f"PJSIP/{extension}",
                                         MemberName=f"agent-{extension}")
        assert added.get("Response") == "Success", added.headers
        try:
            yield handset
        finally:
            await service.ami.action("QueueRemove", Queue=queue,
                                     Interface=f"PJSIP/{extension}")


async def queue_order(service: HotlineService) -> list[str]:
    """The channels waiting in the queue, head first."""
    items = await service.ami.action_list("QueueStatus",
                                          Queue=service.settings.asterisk.queue_name)
    entries = [i for i in items if i.name.lower() == "queueentry"]
    return [e.get("Channel") for e in sorted(entries, key=lambda e: int(e.get("Position")))]


async def abandon_after_wait(service: HotlineService, watcher: CallWatcher,
                             number: str) -> str:
    """A caller who joins the queue, waits past the minimum and hangs up; their call id."""
    seen = {e.call_id for e in watcher.events}  # an earlier call from the number is not it
    async with calling(caller(service, number)):
        joined = await watcher.wait_for(lambda e: queued(number)(e) and e.call_id not in seen,
                                        WAIT)
        await asyncio.sleep(service.settings.callbacks.min_wait_s + 0.5)  # the wait itself
    await watcher.wait_for(lambda e: isinstance(e, CallerAbandoned)
                           and e.call_id == joined.call_id, 10)
    return joined.call_id


async def test_an_abandoned_caller_is_called_back_in_their_place(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with (callback_hotline(asterisk_bed, tmp_path) as (hotline, watcher),
                ResidentPhone(hotline.settings, mode="answer", hold_ms=30_000) as resident,
                contextlib.AsyncExitStack() as callers):
        hotline.settings.callbacks.dial = resident.dial_string
        early, gives_up, late = "13900000001", "13900000002", "13900000003"
        await callers.enter_async_context(calling(caller(hotline, early)))
        first = await watcher.wait_for(queued(early), WAIT)
        async with calling(caller(hotline, gives_up)):
            abandoner = await watcher.wait_for(queued(gives_up), WAIT)
            await callers.enter_async_context(calling(caller(hotline, late)))
            last = await watcher.wait_for(queued(late), WAIT)
            assert first.at < abandoner.at < last.at
            await asyncio.sleep(2.5)  # the abandoner waits past min_wait_s (2 s)
        await watcher.wait_for(lambda e: isinstance(e, CallerAbandoned)
                               and e.call_id == abandoner.call_id, 10)

        # Exactly one request, and its callback joins the queue after the early caller and
        # before the late one, who are both still waiting.
        requested = await watcher.wait_for(step_of(CallbackRequested, abandoner.call_id), 10)
        dialling = await watcher.wait_for(step_of(CallbackDialling), WAIT)
        callback_call = dialling.call_id
        placed = await watcher.wait_for(lambda e: isinstance(e, CallerQueued)
                                        and e.call_id == callback_call, WAIT)
        assert dialling.step.position == 2 and placed.position == 2
        [request] = await callbacks.list_pending(hotline.sessions)
        assert (request.id, request.caller_number, request.reason, request.status) == (
            requested.step.request_id, gives_up, "abandoned", "dialling")
        assert request.queued_at == abandoner.at
        assert [c.split("-")[0] for c in await queue_order(hotline)] == [
            first.channel.split("-")[0], "Local/" + str(request.id) + "@hotline",
            last.channel.split("-")[0]]

        # One agent at a time: the first takes the early caller, the second the callback
        # (the late caller keeps waiting): the agent is bridged and the resident rung.
        async with agent(hotline, "2001", ring_ms=200, hold_ms=1500) as one:
            rung = await watcher.wait_for(lambda e: isinstance(e, AgentRinging), 15)
            assert rung.call_id == first.call_id
            await one.wait_answered(10)
            await one.wait_hangup(15)
        async with agent(hotline, "2002", ring_ms=200, hold_ms=4000) as two:
            rung = await watcher.wait_for(lambda e: isinstance(e, AgentRinging)
                                          and e.extension == "2002", 15)
            assert rung.call_id == callback_call and rung.caller_number == gives_up
            await two.wait_answered(10)
            await resident.wait_event("answered", within=15)
            done = await hotline.callbacks.wait_finished(lambda v: v.id == request.id, 30)
        assert (done.status, done.outcome, done.attempts) == ("completed", "reached", 1)
        assert await callbacks.list_pending(hotline.sessions) == []
        assert [c.split("-")[0] for c in await queue_order(hotline)] == [
            last.channel.split("-")[0]]
        await hotline.recorder.drain()
        [callback_record] = [c for c in await find_consultations(hotline.sessions,
                                                                  phone=gives_up)
                             if c.call_id == callback_call]
        kinds = [s["kind"] for s in callback_record.steps]
        assert kinds[0] == "callback_dialling" and "agent_answered" in kinds
        assert (callback_record.ivr_route, callback_record.outcome) == ("callback", "callback")
        # The agent's pop: why, when, how long they waited, what they did in the IVR then.
        pop = await build_screen_pop(hotline.sessions, callback_call)
        assert pop.callback is not None and pop.callback.request.id == request.id
        assert pop.callback.request.waited_s is not None and pop.callback.request.waited_s >= 2
        assert "Routed to an agent (no input)" in [t.text for t in pop.callback.transcript]
        assert {"kind": "callback_outcome", "request_id": request.id, "outcome": "reached",
                "by": "system"}.items() <= {**callback_record.steps[-1]["detail"],
                                            "kind": callback_record.steps[-1]["kind"]}.items()


async def test_a_second_abandoned_call_merges_into_the_open_request(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with callback_hotline(asterisk_bed, tmp_path) as (hotline, watcher):
        number = "13900000004"
        first = await abandon_after_wait(hotline, watcher, number)
        made = await watcher.wait_for(step_of(CallbackRequested, first), 10)
        # No agent: the callback waits in the queue (dialling) while the resident, tired of
        # waiting for it, calls again and gives up again.
        await watcher.wait_for(step_of(CallbackDialling), WAIT)
        second = await abandon_after_wait(hotline, watcher, number)
        merged = await watcher.wait_for(step_of(CallbackRequested, second), 10)
        assert merged.step == CallbackRequested(made.step.request_id, "abandoned", True)
        [request] = await callbacks.list_callbacks(hotline.sessions, open_only=False)
        assert (request.id, request.status, request.note) == (
            made.step.request_id, "dialling", "1 more missed call merged")
        dialled = [e for e in watcher.events if step_of(CallbackDialling)(e)]
        assert len(dialled) == 1  # one callback in the queue, not two


async def test_unanswered_callbacks_stop_at_the_maximum_of_attempts(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with (callback_hotline(asterisk_bed, tmp_path, max_attempts=2,
                                 retry_after=0.01) as (hotline, watcher),
                ResidentPhone(hotline.settings, mode="no_answer") as resident):
        hotline.settings.callbacks.dial = resident.dial_string
        number = "13900000005"
        call_id = await abandon_after_wait(hotline, watcher, number)
        made = await watcher.wait_for(step_of(CallbackRequested, call_id), 10)
        request_id = made.step.request_id
        outcomes = []
        for attempt, extension in ((1, "2001"), (2, "2002")):
            async with agent(hotline, extension, ring_ms=200, hold_ms=20_000) as phone:
                await phone.wait_answered(WAIT)
                # The resident's phone rings out (ring_timeout 3 s); the agent is released.
                assert await phone.wait_hangup(15) == "remote"
                view = await hotline.callbacks.wait_finished(
                    lambda v, n=attempt: v.id == request_id and v.attempts == n, 15)
                outcomes.append((view.status, view.attempts, view.outcome))
        assert outcomes == [("pending", 1, "no_answer"), ("failed", 2, "no_answer")]
        # No third attempt: nothing is placed in the queue again.
        assert await hotline.callbacks.run_once() == []
        assert [e.step.attempt for e in watcher.events if step_of(CallbackDialling)(e)] == [1, 2]
        assert await callbacks.list_pending(hotline.sessions) == []


async def test_a_withheld_number_gets_no_request_and_the_consultation_says_why(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with callback_hotline(asterisk_bed, tmp_path) as (hotline, watcher):
        call_id = await abandon_after_wait(hotline, watcher, "anonymous")
        why = await watcher.wait_for(step_of(CallbackNotPossible, call_id), 10)
        assert why.step == CallbackNotPossible("withheld")
        await hotline.callback_watcher.drain()
        assert await callbacks.list_callbacks(hotline.sessions, open_only=False) == []
        await hotline.recorder.drain()
        [record] = [c for c in await find_consultations(hotline.sessions, phone="anonymous")
                    if c.call_id == call_id]
        assert {"kind": "callback_not_possible", "detail": {"reason": "withheld",
                                                              "told": False}}.items() <= \
            next(s for s in record.steps if s["kind"] == "callback_not_possible").items()


async def test_choosing_the_callback_in_the_offer_ends_the_call_with_one_request(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with callback_hotline(asterisk_bed, tmp_path) as (hotline, watcher):
        number = "13900000006"
        # Silent at the greeting (to the queue within about 6 s, then moved to the offer as
        # soon as it joins); from 10 s on, 1 every second: a yes once the offer is heard.
        call = asyncio.ensure_future(place_call(
            hotline.settings, caller_number=number, keys=",".join("1" * 25),
            pause_before_keys_ms=10_000, hold_ms=60_000, wait_for_bye=True))
        try:
            joined = await watcher.wait_for(queued(number), WAIT)
            # What the waiting helper's max-wait timeout does: leave the queue for the offer.
            await hotline.ami.setvar(joined.channel, "CALLBACK_REASON", "max_wait")
            moved = await hotline.ami.action("Redirect", Channel=joined.channel,
                                             Context="hotline-callback-offer", Exten="s",
                                             Priority="1")
            assert moved.get("Response") == "Success"
            result = await asyncio.wait_for(call, 40)
        finally:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
        assert result.answered and result.hung_up_by == "remote"  # the offer ended the call
        offered = await watcher.wait_for(step_of(CallbackOffered, joined.call_id), 10)
        assert offered.step == CallbackOffered("max_wait", "yes")
        made = await watcher.wait_for(step_of(CallbackRequested, joined.call_id), 10)
        await hotline.callback_watcher.drain()
        [request] = await callbacks.list_callbacks(hotline.sessions, open_only=False)
        assert (request.id, request.caller_number, request.reason, request.language) == (
            made.step.request_id, number, "chosen", "cmn")
        assert request.queued_at == joined.at
        prompts = [e.step.prompt for e in watcher.events if isinstance(e, CallStep)
                   and e.call_id == joined.call_id and e.step.kind == "prompt"]
        assert prompts[-2:] == ["callback_offer", "callback_confirmed"]


async def test_resident_first_rings_the_resident_when_the_callback_is_at_the_head(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with (callback_hotline(asterisk_bed, tmp_path, order="resident_first") as (
                    hotline, watcher),
                ResidentPhone(hotline.settings, mode="answer", hold_ms=20_000) as resident):
        hotline.settings.callbacks.dial = resident.dial_string
        number = "13900000007"
        call_id = await abandon_after_wait(hotline, watcher, number)
        made = await watcher.wait_for(step_of(CallbackRequested, call_id), 10)
        # No free agent: the resident is not rung (watched over two of the dialer's looks at
        # the queue; a negative can only be observed for a while).
        await asyncio.sleep(2 * 2.0 + 0.5)
        assert not any(step_of(CallbackDialling)(e) for e in watcher.events)
        assert resident._uas is not None and resident._uas.event("ringing") is None
        async with agent(hotline, "2001", ring_ms=200, hold_ms=3000) as phone:
            dialling = await watcher.wait_for(step_of(CallbackDialling), WAIT)
            assert dialling.step.order == "resident_first" and dialling.step.position == 1
            await resident.wait_event("answered", within=15)
            rung = await watcher.wait_for(lambda e: isinstance(e, AgentRinging)
                                          and e.call_id == dialling.call_id, 15)
            assert rung.caller_number == number
            await phone.wait_answered(10)
            done = await hotline.callbacks.wait_finished(
                lambda v: v.id == made.step.request_id, 20)
        assert (done.status, done.outcome, done.attempts) == ("completed", "reached", 1)


def placeholders(order: list[str]) -> list[str]:
    return [c for c in order if c.startswith("Local/")]


async def test_a_cancelled_callback_leaves_the_queue(asterisk_bed: Settings,
                                                     tmp_path: Path) -> None:
    async with callback_hotline(asterisk_bed, tmp_path) as (hotline, watcher):
        call_id = await abandon_after_wait(hotline, watcher, "13900000008")
        made = await watcher.wait_for(step_of(CallbackRequested, call_id), 10)
        dialling = await watcher.wait_for(step_of(CallbackDialling), WAIT)
        await watcher.wait_for(lambda e: isinstance(e, CallerQueued)
                               and e.call_id == dialling.call_id, WAIT)
        await hotline.callbacks.cancel(made.step.request_id, actor="supervisor:supervisor1")
        done = await hotline.callbacks.wait_finished(
            lambda v: v.id == made.step.request_id, 15)
        assert (done.status, done.attempts, done.outcome) == ("cancelled", 0, None)
        assert placeholders(await queue_order(hotline)) == []


async def test_a_restarted_service_keeps_the_callback_waiting_and_calls_no_one_twice(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    await hang_up_leftover_calls(asterisk_bed)
    try:
        async with ResidentPhone(asterisk_bed, mode="answer", hold_ms=20_000) as resident:
            async with callback_hotline(asterisk_bed, tmp_path, fresh=False,
                                        dial=resident.dial_string) as (first, watcher):
                call_id = await abandon_after_wait(first, watcher, "13900000009")
                made = await watcher.wait_for(step_of(CallbackRequested, call_id), 10)
                dialling = await watcher.wait_for(step_of(CallbackDialling), WAIT)
                await watcher.wait_for(lambda e: isinstance(e, CallerQueued)
                                       and e.call_id == dialling.call_id, WAIT)
            # The service stopped; the callback still waits in Asterisk's queue.
            async with callback_hotline(asterisk_bed, tmp_path, fresh=False,
                                        dial=resident.dial_string) as (again, watcher):
                assert len(placeholders(await queue_order(again))) == 1
                await again.callbacks.run_once()  # a pass: nothing due, nothing placed twice
                assert len(placeholders(await queue_order(again))) == 1
                view = await callbacks.get_callback(again.sessions, made.step.request_id)
                assert view.status == "dialling"
                async with agent(again, "2001", ring_ms=200, hold_ms=2000) as phone:
                    await phone.wait_answered(15)
                    await resident.wait_event("answered", within=15)
                    done = await again.callbacks.wait_finished(
                        lambda v: v.id == made.step.request_id, 30)
                assert not any(step_of(CallbackDialling)(e) for e in watcher.events)
        assert (done.status, done.outcome, done.attempts) == ("completed", "reached", 1)
    finally:
        await hang_up_leftover_calls(asterisk_bed)


async def test_a_withheld_caller_who_chose_a_callback_is_told_once_and_keeps_waiting(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with callback_hotline(asterisk_bed, tmp_path) as (hotline, watcher):
        later = "13900000015"
        async with (calling(caller(hotline, "anonymous")),
                    contextlib.AsyncExitStack() as behind):
            joined = await watcher.wait_for(queued("anonymous"), WAIT)
            await behind.enter_async_context(calling(caller(hotline, later)))
            second = await watcher.wait_for(queued(later), WAIT)
            assert [c.split("-")[0] for c in await queue_order(hotline)] == [
                joined.channel.split("-")[0], second.channel.split("-")[0]]
            # What the waiting helper's callback key does: leave the queue for the offer.
            await hotline.ami.setvar(joined.channel, "CALLBACK_REASON", "chosen")
            moved = await hotline.ami.action("Redirect", Channel=joined.channel,
                                             Context="hotline-callback-offer", Exten="s",
                                             Priority="1")
            assert moved.get("Response") == "Success"
            # (The Redirect out of the queue is also reported as an abandon after the
            # minimum wait: the watcher's own "no callback, withheld" note, told=False.)
            told = await watcher.wait_for(lambda e: step_of(CallbackNotPossible,
                                                            joined.call_id)(e)
                                          and e.step.told, 15)
            assert told.step == CallbackNotPossible("withheld", told=True)
            # Back in the queue, waiting on, at their place: ahead of the caller who joined
            # after them (who moved up while they heard the offer).
            back = await watcher.wait_for(lambda e: isinstance(e, CallerQueued)
                                          and e.call_id == joined.call_id and e is not joined,
                                          20)
            offered = await watcher.wait_for(step_of(CallbackOffered, joined.call_id), 5)
            assert offered.step == CallbackOffered("chosen", "requeue")
            assert back.position == 1
            assert await queue_order(hotline) == [back.channel, second.channel]
        prompts = [e.step.prompt for e in watcher.events if isinstance(e, CallStep)
                   and e.call_id == joined.call_id and e.step.kind == "prompt"]
        assert prompts.count("callback_not_possible") == 1
        await hotline.callback_watcher.drain()
        # No request for the withheld caller (the later caller hung up waiting: theirs).
        assert [r.caller_number for r in await callbacks.list_callbacks(
            hotline.sessions, open_only=False)] in ([], [later])


async def test_callbacks_placed_together_keep_their_arrival_order(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with (callback_hotline(asterisk_bed, tmp_path) as (hotline, watcher),
                contextlib.AsyncExitStack() as callers):
        first, second, live = "13900000012", "13900000013", "13900000014"
        tasks = {}
        for number in (first, second, live):
            tasks[number] = await callers.enter_async_context(
                calling(caller(hotline, number)))
            await watcher.wait_for(queued(number), WAIT)
        await asyncio.sleep(2.5)  # everyone waits past min_wait_s (2 s)
        # The later caller gives up first: their callback is placed before the earlier
        # caller's exists, which must still join ahead of it.
        for number in (second, first):
            tasks[number].cancel()
            await watcher.wait_for(lambda e, n=number: isinstance(e, CallerAbandoned)
                                   and any(q.call_id == e.call_id for q in watcher.events
                                           if queued(n)(q)), 10)
        await watcher.wait_for(step_of(CallbackRequested), 10)
        await hotline.callback_watcher.drain()
        requests = await callbacks.list_pending(hotline.sessions)
        assert [r.caller_number for r in requests] == [first, second]  # arrival order
        placed = []
        for _ in requests:
            placed.append(await watcher.wait_for(
                lambda e: isinstance(e, CallerQueued) and e.channel.startswith("Local/")
                and e not in placed, WAIT))
        order = [c.split("-")[0] for c in await queue_order(hotline)]
        assert order == [f"Local/{requests[0].id}@hotline", f"Local/{requests[1].id}@hotline",
                         "PJSIP/pstn"], order


# -- callbacks assigned to one agent ---------------------------------------------------------
@contextlib.asynccontextmanager
async def signed_in(service: HotlineService, agent_view: Any, **phone: int) -> AsyncIterator[
        AgentPhone]:
    """A registered agent phone signed in as the desk does it (QueueControl.join with the
    agent's id: every queue, and the assigned-callbacks queue with their id as penalty)."""
    extension = agent_view.extension
    async with AgentPhone(service.settings, extension, **phone) as handset:
        await service.queue_control.join(f"PJSIP/{extension}", agent_view.display_name,
                                         agent_id=agent_view.id)
        try:
            yield handset
        finally:
            await service.queue_control.leave(f"PJSIP/{extension}")


async def two_agents(service: HotlineService) -> tuple[Any, Any]:
    made = []
    for extension in ("2001", "2002"):
        made.append(await accounts.create_agent(
            service.sessions, login=f"agent{extension}", display_name=f"Agent {extension}",
            extension=extension))
    return made[0], made[1]


def placed_in(queue: str, seen: set[str]) -> Callable[[Any], bool]:
    """A callback placeholder joining ``queue``, other than the calls in ``seen``."""
    return lambda e: (isinstance(e, CallerQueued) and e.queue == queue
                      and e.channel.startswith("Local/") and e.call_id not in seen)


async def queue_entries(service: HotlineService, queue: str) -> list[str]:
    items = await service.ami.action_list("QueueStatus", Queue=queue)
    return [i.get("Channel") for i in items if i.name.lower() == "queueentry"
            and i.get("Queue") == queue]


async def audit_entries(service: HotlineService, request_id: int) -> list[str]:
    """The actions audited on a request, oldest first."""
    found = await audit.entries(service.sessions, object_type="callback_request",
                                object_id=request_id)
    return [e.action for e in reversed(found)]


async def waiting_callback(hotline: HotlineService, watcher: CallWatcher,
                           number: str) -> tuple[int, str]:
    """An abandoned caller's callback, waiting in the general queue: (request id, the
    placeholder's call id)."""
    before = {e.call_id for e in watcher.events}
    call_id = await abandon_after_wait(hotline, watcher, number)
    made = await watcher.wait_for(step_of(CallbackRequested, call_id), 10)
    dialling = await watcher.wait_for(lambda e: step_of(CallbackDialling)(e)
                                      and e.step.request_id == made.step.request_id
                                      and e.call_id not in before, WAIT)
    await watcher.wait_for(placed_in(hotline.settings.asterisk.queue_name, before), WAIT)
    return made.step.request_id, dialling.call_id


async def test_a_reassigned_callback_moves_and_rings_its_agent_only(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with (callback_hotline(asterisk_bed, tmp_path) as (hotline, watcher),
                ResidentPhone(hotline.settings, mode="answer", hold_ms=30_000) as resident):
        hotline.settings.callbacks.dial = resident.dial_string
        main = hotline.settings.asterisk.queue_name
        assigned = hotline.callbacks.assigned_queue
        other, chosen = await two_agents(hotline)
        assert other.id < chosen.id  # without the penalty limit, agent2001 would come first
        request_id, first_call = await waiting_callback(hotline, watcher, "13900000021")

        # The supervisor gives it to agent2002: withdrawn from the general queue (no
        # attempt counted, the request kept); it waits for agent2002 to be free.
        view = await hotline.callbacks.reassign(request_id, "agent2002",
                                                actor="supervisor:supervisor1")
        assert view.assigned_agent == "agent2002"
        await watcher.wait_for(step_of(CallbackOutcome, first_call), 15)
        assert await queue_entries(hotline, main) == []
        view = await callbacks.get_callback(hotline.sessions, request_id)
        assert (view.status in OPEN, view.attempts, view.assigned_agent) == (
            True, 0, "agent2002")

        # agent2001 signs in first, free: not offered it. agent2002 signs in: placed in the
        # assigned queue for them alone (both are free members there), and rung.
        async with signed_in(hotline, other, ring_ms=200, hold_ms=4000):
            async with signed_in(hotline, chosen, ring_ms=200, hold_ms=4000) as phone:
                moved = await watcher.wait_for(placed_in(assigned, {first_call}), WAIT)
                rung = await watcher.wait_for(lambda e: isinstance(e, AgentRinging), 15)
                assert (rung.extension, rung.call_id, rung.queue) == (
                    "2002", moved.call_id, assigned)
                await phone.wait_answered(10)
                await resident.wait_event("answered", within=15)
                done = await hotline.callbacks.wait_finished(
                    lambda v: v.id == request_id and v.attempts == 1, 30)
        assert (done.status, done.outcome, done.attempts) == ("completed", "reached", 1)
        assert [e for e in watcher.events if isinstance(e, AgentRinging)
                and e.extension == "2001"] == []
        assert [e.step.attempt for e in watcher.events if step_of(CallbackDialling)(e)] == [
            1, 1]
        # The agent's pop shows the callback (the assigned queue is one the pop follows).
        pop = await build_screen_pop(hotline.sessions, moved.call_id)
        assert pop.callback is not None and pop.callback.request.id == request_id


async def test_an_unassigned_callback_goes_back_to_the_general_queue(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with callback_hotline(asterisk_bed, tmp_path) as (hotline, watcher):
        main = hotline.settings.asterisk.queue_name
        assigned = hotline.callbacks.assigned_queue
        await two_agents(hotline)
        request_id, first_call = await waiting_callback(hotline, watcher, "13900000022")
        # Given to agent2001, who is not signed in: it waits for them (not in a queue)...
        await hotline.callbacks.reassign(request_id, "agent2001", actor="supervisor:s1")
        await watcher.wait_for(step_of(CallbackOutcome, first_call), 15)
        # The withdrawn slot leaves the queue as its channel hangs up: after the outcome step
        # (seen once in CI, under load, still queued at this point).
        await watcher.wait_for(lambda e: isinstance(e, CallerAbandoned | CallEnded)
                               and e.call_id == first_call, 15)
        assert await queue_entries(hotline, main) == []
        # ... until the supervisor takes it back: the general queue, at the caller's place.
        view = await hotline.callbacks.reassign(request_id, None, actor="supervisor:s1")
        assert view.assigned_agent is None
        back = await watcher.wait_for(placed_in(main, {first_call}), WAIT)
        assert await queue_entries(hotline, assigned) == []
        assert [c.split("-")[0] for c in await queue_entries(hotline, main)] == [
            f"Local/{request_id}@hotline"]
        view = await callbacks.get_callback(hotline.sessions, request_id)
        assert (view.status, view.attempts, view.assigned_agent_id) == ("dialling", 0, None)
        assert back.call_id != first_call


async def test_an_assigned_callback_its_agent_does_not_take_goes_to_the_general_queue(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with (callback_hotline(asterisk_bed, tmp_path, assigned_wait=4.0) as (
                    hotline, watcher),
                ResidentPhone(hotline.settings, mode="answer", hold_ms=30_000) as resident):
        hotline.settings.callbacks.dial = resident.dial_string
        main = hotline.settings.asterisk.queue_name
        free, _absent = await two_agents(hotline)
        request_id, first_call = await waiting_callback(hotline, watcher, "13900000023")
        assigned_at = utcnow()
        await hotline.callbacks.reassign(request_id, "agent2002", actor="supervisor:s1")
        await watcher.wait_for(step_of(CallbackOutcome, first_call), 15)
        # agent2001 is signed in and free the whole time; agent2002 never signs in. The
        # callback is theirs for assigned_wait (4 s), then it goes to the general queue and
        # agent2001 gets it.
        async with signed_in(hotline, free, ring_ms=200, hold_ms=4000) as phone:
            rung = await watcher.wait_for(lambda e: isinstance(e, AgentRinging), 20)
            assert rung.extension == "2001" and rung.queue == main
            assert rung.call_id != first_call
            assert (rung.at - assigned_at).total_seconds() >= 4.0 - 0.5
            await phone.wait_answered(10)
            await resident.wait_event("answered", within=15)
            done = await hotline.callbacks.wait_finished(
                lambda v: v.id == request_id and v.status == "completed", 30)
        assert (done.outcome, done.attempts, done.assigned_agent) == ("reached", 1, None)
        assert "agent2002 did not take it in 4 s" in (done.note or "")
        trail = await audit_entries(hotline, request_id)
        assert [a for a in trail if a.startswith("callback_")] == [
            "callback_reassign", "callback_assignment_lapsed"]


async def test_a_callback_waiting_for_an_absent_agent_holds_up_no_other_agent(
        asterisk_bed: Settings, tmp_path: Path) -> None:
    async with (callback_hotline(asterisk_bed, tmp_path, assigned_wait=60.0) as (
                    hotline, watcher),
                ResidentPhone(hotline.settings, mode="answer", hold_ms=30_000) as resident):
        hotline.settings.callbacks.dial = resident.dial_string
        assigned = hotline.callbacks.assigned_queue
        present, _absent = await two_agents(hotline)
        # The earlier caller's callback is agent2002's (never signed in), the later one's
        # agent2001's: agent2001 gets theirs now, not after the other one's 60 s.
        earlier, earlier_call = await waiting_callback(hotline, watcher, "13900000024")
        await hotline.callbacks.reassign(earlier, "agent2002", actor="supervisor:s1")
        await watcher.wait_for(step_of(CallbackOutcome, earlier_call), 15)
        later, later_call = await waiting_callback(hotline, watcher, "13900000025")
        await hotline.callbacks.reassign(later, "agent2001", actor="supervisor:s1")
        await watcher.wait_for(step_of(CallbackOutcome, later_call), 15)
        async with signed_in(hotline, present, ring_ms=200, hold_ms=3000) as phone:
            placed = await watcher.wait_for(placed_in(assigned, {earlier_call, later_call}),
                                            WAIT)
            rung = await watcher.wait_for(lambda e: isinstance(e, AgentRinging), 15)
            assert (rung.extension, rung.call_id) == ("2001", placed.call_id)
            await phone.wait_answered(10)
            await resident.wait_event("answered", within=15)
            done = await hotline.callbacks.wait_finished(
                lambda v: v.id == later and v.attempts == 1, 30)
        assert (done.status, done.assigned_agent) == ("completed", "agent2001")
        view = await callbacks.get_callback(hotline.sessions, earlier)
        assert (view.status in OPEN, view.attempts, view.assigned_agent) == (
            True, 0, "agent2002")
