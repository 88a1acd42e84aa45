"""Callbacks placed with AMI ``Originate`` so that they keep their caller's place in the queue
(crm.telephony.callbacks.CallbackDialer).

agent_first (the default): a Local channel, the placeholder, joins the caller's queue in
``hotline-callback-slot`` with Queue()'s ``position`` argument at the place its arrival time
gives it among the callers waiting now (those who joined earlier stay ahead, those who
joined later behind). The queue offers it to an agent in turn like any caller, with a screen
pop; when the agent answers, the Local channel's other half (``hotline-callback-connect``)
dials the resident, and its hang-up handler reports how that went
(``UserEvent HotlineCallbackDialled``, DIALSTATUS).

resident_first: once no caller who arrived earlier is waiting and a member of the queue is
free, the resident is dialled (``hotline-callback-resident``); answered, they join the queue
at their arrival place (normally its head).

A callback assigned to one agent (``CallbackJob.penalty``, the agent's id) goes to the
assigned-callbacks queue instead, asking for that penalty alone (``CALLBACK_PENALTY``): only
its agent is offered it. It is placed there only once that agent is a free member, and one
at a time per agent (in the order the scheduler starts them: arrival order): app_queue
offers a queue's entries in order, so an entry waiting for an absent or busy agent would
hold up the callbacks of the agents behind it. When its wait (``wait_s``: the assigned
wait) runs out first, or in the queue (``HotlineCallbackLeft`` with QUEUESTATUS TIMEOUT),
the result says so (``timed_out``).

Arrival times: callers' queue joins as this process heard them (QueueCallerJoin), else
Asterisk's own count of their wait (QueueStatus ``Wait``); a placeholder stands for its
request's arrival, not for when it joined.

A cluster's queue node (:meth:`use_queue_nodes`): the placeholder is still originated here,
but waits there as the queue node's channel of the ``media-nodes`` endpoint, carrying the
call id and its request (CALLBACK_ID, from X-Hotline-Callback). A dialer started later (a
control restart, or the standby control, whose media node may be another) finds the
placeholders left waiting there (:meth:`live_callbacks`), keeps their places, and hears how
they went from whichever media node placed them (:meth:`use_media_nodes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from crm.settings import CallbackSettings
from crm.telephony.callbacks import CallbackJob, CallbackResult, Placed, Report
from crm.telephony.events import utcnow
from ivr.asterisk.replies import Replies

log = logging.getLogger(__name__)

SLOT_CONTEXT = "hotline-callback-slot"
CONNECT_CONTEXT = "hotline-callback-connect"
RESIDENT_CONTEXT = "hotline-callback-resident"
DIAL_STATUS = {"ANSWER": "reached", "NOANSWER": "no_answer", "BUSY": "busy",
               "CANCEL": "no_answer", "CONGESTION": "failed", "CHANUNAVAIL": "failed"}
"""Dial()'s DIALSTATUS for the resident's leg -> the attempt's outcome (CANCEL: the agent
hung up while the resident's phone was ringing)."""
ORIGINATE_REASONS = {"1": "no_answer", "3": "no_answer", "5": "busy", "8": "failed"}
"""OriginateResponse Reason of a resident_first call: 1 hung up, 3 rang out, 5 busy,
8 congestion."""
FREE_STATUSES = {"1"}
"""QueueMember Status (device state) of a member that can take a call: not in use."""
REPORT_WAIT = 6 * 3600.0
"""Seconds to wait for the resident leg's report once an agent took the callback (the
conversation may be long)."""
JOIN_WAIT = 5.0
"""Seconds the next callback waits for this one to join the queue before it is placed."""
RESIDENT_FIRST_POLL = 2.0
"""Seconds between looks at the queue while a resident_first callback waits for its turn, or
an assigned callback for its agent to be free."""
LINK_WAIT = 10.0
"""Seconds a dialer started with the cluster waits for a queue node's AMI link to log in
before it looks there for the placeholders left waiting."""
HANDOFF_CHANNEL = "PJSIP/media-nodes-"
"""A queue node's channel of a call a media node handed over (hotline-handoff)."""


class AmiActions(Protocol):
    """What the dialer needs of an AMI client (ivr.ami.client.AmiClient fits)."""

    async def action(self, name: str, *, timeout: float = 5.0, **fields: Any) -> Any: ...

    async def action_list(self, name: str, *, timeout: float = 10.0,
                          **fields: Any) -> list[Any]: ...

    def subscribe(self, pattern: str, handler: Callable[[Any], Any]) -> Callable[[], None]: ...


def arrival_position(arrivals: list[datetime], arrival: datetime) -> int:
    """Where a callback of ``arrival`` joins a queue whose waiting entries (in queue order)
    arrived at ``arrivals``: after every entry that arrived no later than it."""
    return 1 + sum(1 for a in arrivals if a <= arrival)


_SLOT = re.compile(rf"^Local/([0-9]+)@{SLOT_CONTEXT}-[0-9a-f]+;[12]$")


def slot_request(channel: str | None) -> int | None:
    """The request a placeholder channel (Local/<id>@hotline-callback-slot-...;1/2) is for."""
    found = _SLOT.match(channel or "")
    return int(found.group(1)) if found else None


def _slot_pattern(request_id: int) -> str:
    """AMI Hangup's regular expression for both halves of a request's placeholder."""
    return f"/^Local\\/{request_id}@{SLOT_CONTEXT}-/"


def report_result(report: Any) -> CallbackResult:
    """The outcome in a HotlineCallbackDialled event (the resident leg's DIALSTATUS)."""
    status = (report.get("DialStatus") or "").upper()
    return CallbackResult(DIAL_STATUS.get(status, "failed"), f"DIALSTATUS {status}")


async def _acquire(lock: asyncio.Lock, stop: asyncio.Event, within: float) -> bool:
    """Take ``lock`` unless ``stop`` is set or ``within`` seconds pass first."""
    acquiring = asyncio.ensure_future(lock.acquire())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({acquiring, stopping}, timeout=max(0.0, within),
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not acquiring.done():
            acquiring.cancel()
        got = await asyncio.gather(acquiring, return_exceptions=True)
    if got[0] is True and stop.is_set():
        lock.release()
        return False
    return got[0] is True


class AmiCallbackDialer:
    def __init__(self, ami: AmiActions, settings: CallbackSettings, *,
                 hotline_number: str) -> None:
        self.ami = ami
        self.settings = settings
        self.hotline_number = hotline_number
        self._joined: dict[str, datetime] = {}
        """Channel waiting in a queue -> its arrival (placeholders: their request's)."""
        self._callbacks: dict[str, datetime] = {}
        """Call id of a callback being placed -> its arrival."""
        self._reports = Replies()
        self._left: dict[str, str] = {}
        """Call id of a callback -> QUEUESTATUS it left the queue with, without an agent."""
        self._responses = Replies()
        self._placeholders: dict[int, datetime] = {}
        """Request id -> arrival, of callbacks placed before a restart (live_callbacks)."""
        self.on_report: Report | None = None
        self._placing = asyncio.Lock()
        """One callback is placed at a time, until it has joined the queue: the next one's
        position counts it."""
        self._joins: dict[str, asyncio.Event] = {}
        self._agents: dict[int, asyncio.Lock] = {}
        """Agent (penalty) -> held while one of their assigned callbacks is placed or up."""
        self._withdrawn: dict[int, asyncio.Event] = {}
        """Request -> set when it is withdrawn while its callback waits for its agent."""
        self._returning: dict[str, datetime] = {}
        """Caller channel about to join the queue again -> their first arrival."""
        self._queue_links: list[AmiActions] = []
        """A cluster's queue node and its standby (:meth:`use_queue_nodes`): where the queue
        is read; none: ``ami``'s own queue."""
        self._media_links: list[AmiActions] = []
        """A cluster's other media nodes (:meth:`use_media_nodes`)."""
        self._recovered: dict[str, int] = {}
        """Call id -> request, of placeholders placed before a restart and found on a queue
        node (their channel there is not the Local slot)."""
        self._unsubscribe = [
            *self._watch_queue(ami),
            ami.subscribe("UserEvent", self._on_user_event),
            ami.subscribe("OriginateResponse", self._on_response),
        ]

    def _watch_queue(self, ami: AmiActions) -> list[Callable[[], None]]:
        return [ami.subscribe("QueueCallerJoin", self._on_join),
                ami.subscribe("QueueCallerLeave", self._on_leave),
                ami.subscribe("QueueCallerAbandon", self._on_leave)]

    def use_queue_nodes(self, links: list[AmiActions]) -> None:
        """A cluster with the city-wide queue: callbacks are still placed on ``ami``'s node
        (the dialplan hands the placeholder to the queue node), but the queue they wait in,
        its positions and free agents, is read on the queue node (the first of ``links``
        logged in: the standby while the queue node is down)."""
        self._queue_links = list(links)
        for link in links:
            self._unsubscribe += self._watch_queue(link)

    def use_media_nodes(self, links: list[AmiActions]) -> None:
        """A cluster's other media nodes: a placeholder left by a control that used another
        media node reports there how its resident's leg went (or that its wait ran out)."""
        self._media_links = list(links)
        for link in links:
            self._unsubscribe.append(link.subscribe("UserEvent", self._on_user_event))

    def _queue_ami(self) -> AmiActions:
        return next((link for link in self._queue_links
                     if getattr(link, "state", "logged_in") == "logged_in"),
                    self._queue_links[0] if self._queue_links else self.ami)

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    # -- what AMI tells
    async def _on_join(self, event: Any) -> None:
        channel = event.get("Channel")
        if not channel:
            return
        call_id = event.chan_variables().get("CALL_ID")
        returning = self._returning.pop(channel, None)
        returning = self._returning.pop(call_id or "", None) or returning
        self._joined[channel] = returning or self._callbacks.get(call_id or "", utcnow())
        if (joined := self._joins.get(call_id or "")) is not None:
            joined.set()
        if (request_id := slot_request(channel)) in self._placeholders:
            self._joined[channel] = self._placeholders[request_id]
        if (request_id := self._recovered.get(call_id or "", 0)) in self._placeholders:
            self._joined[channel] = self._placeholders[request_id]  # on a queue node
        while len(self._joined) > 5000:  # leaves we never heard
            self._joined.pop(next(iter(self._joined)))

    async def _on_leave(self, event: Any) -> None:
        self._joined.pop(event.get("Channel") or "", None)

    async def _on_user_event(self, event: Any) -> None:
        if event.get("UserEvent") == "HotlineCallbackLeft":
            status = (event.get("QueueStatus") or "").upper()
            if (call_id := event.get("CallId")) in self._callbacks:
                self._left[call_id] = status
                return
            request = event.get("CallbackId") or ""
            if (request.isdigit() and self._placeholders.pop(int(request), None) is not None
                    and self.on_report is not None):
                # One placed before a restart left the queue without an agent.
                self._recovered.pop(call_id or "", None)
                await self.on_report(int(request), call_id or "", CallbackResult(
                    None, f"no agent took it ({status or 'left'})",
                    timed_out=status == "TIMEOUT"))
            return
        if event.get("UserEvent") != "HotlineCallbackDialled" or not (
                call_id := event.get("CallId")):
            return
        request = event.get("CallbackId") or ""
        if call_id not in self._callbacks and request.isdigit() and self.on_report is not None:
            # A callback placed before the service restarted: nobody waits for it here.
            self._placeholders.pop(int(request), None)
            self._recovered.pop(call_id, None)
            await self.on_report(int(request), call_id, report_result(event))
            return
        await self._reports.keep(call_id, event)

    async def _on_response(self, event: Any) -> None:
        if action_id := event.get("ActionID"):
            await self._responses.keep(action_id, event)

    # -- the queue as it stands
    async def _waiting(self, queue: str, penalty: int | None = None) -> tuple[
            list[datetime], bool]:
        """(arrivals of the callers waiting in ``queue``, in queue order; whether a member
        is free: with ``penalty``, the member of that penalty)."""
        items = await self._queue_ami().action_list("QueueStatus", Queue=queue)
        now = utcnow()
        entries = sorted((e for e in items if e.name.lower() == "queueentry"
                          and e.get("Queue") == queue),
                         key=lambda e: int(e.get("Position") or 0))
        arrivals = []
        for entry in entries:
            channel = entry.get("Channel") or ""
            known = self._joined.get(channel)
            wait = int(entry.get("Wait") or 0)
            arrivals.append(known if known is not None else now - timedelta(seconds=wait))
        free = any(e.name.lower() == "queuemember" and e.get("Queue") == queue
                   and e.get("Status") in FREE_STATUSES and e.get("Paused") in ("0", None)
                   and (penalty is None or e.get("Penalty") == str(penalty))
                   for e in items)
        return arrivals, free

    async def position(self, queue: str, arrival: datetime) -> int:
        arrivals, _ = await self._waiting(queue)
        return arrival_position(arrivals, arrival)

    async def return_position(self, queue: str, channel: str, arrival: datetime,
                              call_id: str | None = None) -> int:
        """Where a caller who left ``queue`` (for the callback offer) joins it again to keep
        the place their first ``arrival`` gives them; the next positions count them from
        that arrival too (known by ``channel``, or, on a cluster's queue node, where their
        channel is another, by their ``call_id``)."""
        position = await self.position(queue, arrival)
        self._returning[channel] = arrival
        if call_id:
            self._returning[call_id] = arrival
        while len(self._returning) > 1000:  # returns we never heard
            self._returning.pop(next(iter(self._returning)))
        return position

    # -- placing a callback
    async def call_back(self, job: CallbackJob, placed: Placed) -> CallbackResult:
        self._callbacks[job.call_id] = job.arrival
        try:
            if job.order == "resident_first":
                return await self._resident_first(job, placed)
            if job.penalty is not None:
                return await self._for_agent(job, placed)
            return await self._agent_first(job, placed)
        finally:
            self._callbacks.pop(job.call_id, None)
            self._left.pop(job.call_id, None)

    def _caller_id(self) -> str:
        return re.sub(r"[^0-9+]", "", self.settings.caller_id or self.hotline_number)

    def _queue_wait(self, job: CallbackJob) -> int:
        """Seconds the callback may wait in the queue: the calling hours' end or the limit."""
        limit = self.settings.queue_timeout
        return max(1, int(min(limit, job.wait_s) if job.wait_s is not None else limit))

    def _variables(self, job: CallbackJob, position: int) -> list[str]:
        return [f"__CALL_ID={job.call_id}", f"CALLBACK_ID={job.request_id}",
                f"CALLBACK_NUMBER={job.number}", f"CALLBACK_QUEUE={job.queue}",
                f"CALLBACK_POSITION={position}",
                f"CALLBACK_QUEUE_TIMEOUT={self._queue_wait(job)}",
                f"CALLBACK_DIAL={self.settings.dial.replace('{number}', job.number)}",
                f"CALLBACK_RING_TIMEOUT={int(self.settings.ring_timeout)}",
                f"CALLBACK_CALLER_ID={self._caller_id()}",
                f"CALLBACK_PENALTY={'' if job.penalty is None else job.penalty}"]

    async def _for_agent(self, job: CallbackJob, placed: Placed) -> CallbackResult:
        """An assigned callback (agent_first): once its agent is free (and none of their
        other callbacks is placed), in the assigned queue for the rest of its wait."""
        assert job.penalty is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._queue_wait(job)
        withdrawn = self._withdrawn[job.request_id] = asyncio.Event()
        agent = self._agents.setdefault(job.penalty, asyncio.Lock())
        try:
            if not await _acquire(agent, withdrawn, deadline - loop.time()):
                if withdrawn.is_set():
                    return CallbackResult(None, "withdrawn before its agent was free")
                return CallbackResult(None, "its agent had other callbacks", timed_out=True)
            try:
                while True:  # bounded by the deadline; stopped by a withdrawal
                    if withdrawn.is_set():
                        return CallbackResult(None, "withdrawn before its agent was free")
                    try:
                        _, free = await self._waiting(job.queue, job.penalty)
                    except Exception as exc:
                        return CallbackResult(None, f"queue status unavailable: {exc}")
                    if free:
                        break
                    left = deadline - loop.time()
                    if left <= 0:
                        return CallbackResult(None, "its agent was not free in time",
                                              timed_out=True)
                    with contextlib.suppress(TimeoutError):  # the member state, polled
                        async with asyncio.timeout(min(RESIDENT_FIRST_POLL, left)):
                            await withdrawn.wait()
                left = max(1.0, deadline - loop.time())
                return await self._agent_first(replace(job, wait_s=left), placed)
            finally:
                agent.release()
        finally:
            self._withdrawn.pop(job.request_id, None)

    async def _agent_first(self, job: CallbackJob, placed: Placed) -> CallbackResult:
        joined = self._joins[job.call_id] = asyncio.Event()
        try:
            async with self._placing:
                queued = await self._place(job, placed)
                if isinstance(queued, CallbackResult):
                    return queued
                with contextlib.suppress(TimeoutError):  # bounded: a failed originate
                    async with asyncio.timeout(JOIN_WAIT):
                        await joined.wait()
        finally:
            self._joins.pop(job.call_id, None)
        # Cancelled (the service stops), the callback stays where it is: the next run finds
        # it (live_callbacks) and hears how it went (on_report).
        response = await self._responses.take(queued.get("ActionID"),
                                        self._queue_wait(job) + 30)
        if response is None or response.get("Response") != "Success":
            reason = response.get("Reason") if response is not None else "none"
            status = self._left.get(job.call_id)
            return CallbackResult(None, f"no agent took it (reason {reason}, {status})",
                                  timed_out=status == "TIMEOUT")
        report = await self._reports.take(job.call_id, REPORT_WAIT)
        if report is None:
            return CallbackResult("failed", "no report of the resident's leg")
        return report_result(report)

    async def _place(self, job: CallbackJob, placed: Placed) -> Any:
        """Originate the placeholder at its arrival position; the action's response, or a
        result when it could not be placed."""
        try:
            position = await self.position(job.queue, job.arrival)
        except Exception as exc:
            return CallbackResult(None, f"queue status unavailable: {exc}")
        await placed(position)
        fields: dict[str, Any] = {
            "Channel": f"Local/{job.request_id}@{SLOT_CONTEXT}",
            "Context": CONNECT_CONTEXT, "Exten": "s", "Priority": "1",
            "Timeout": str(int((self._queue_wait(job) + 10) * 1000)),
            "CallerID": f'"callback" <{job.number}>',
            "Async": "true",
            "Variable": self._variables(job, position),
        }
        try:
            queued = await self.ami.action("Originate", **fields)
        except Exception as exc:
            return CallbackResult(None, f"originate not sent: {exc}")
        log.info("callback %d (call %s): placed in queue %s at position %d%s", job.request_id,
                 job.call_id, job.queue, position,
                 "" if job.penalty is None else f" for the member of penalty {job.penalty}")
        return queued

    async def live_callbacks(self, arrivals: dict[int, datetime]) -> set[int]:
        channels = await self.ami.action_list("CoreShowChannels")
        live = {r for c in channels if (r := slot_request(c.get("Channel"))) in arrivals}
        self._placeholders.update({r: arrivals[r] for r in live})
        for channel in channels:  # their place in the queue is their request's arrival
            if (r := slot_request(channel.get("Channel"))) in live:
                self._joined[channel.get("Channel")] = arrivals[r]
        if self._queue_links:
            live |= await self._live_on_queue_nodes(arrivals)
        return live

    async def _live_on_queue_nodes(self, arrivals: dict[int, datetime]) -> set[int]:
        """The requests whose placeholder waits on a queue node (or its agent talks to the
        resident there), wherever it was placed: its channel there is the ``media-nodes``
        endpoint's, with CALLBACK_ID. Raises when no queue node could be read."""
        live: set[int] = set()
        read = 0
        for link in self._queue_links:
            try:
                ready = getattr(link, "wait_ready", None)  # a link still connecting
                if ready is not None and getattr(link, "state", "logged_in") != "logged_in":
                    await ready(LINK_WAIT)
                channels = await link.action_list("CoreShowChannels")
            except Exception as exc:
                log.warning("callbacks: a queue node's channels unknown (%s)", exc)
                continue
            read += 1
            for channel in channels:
                name = channel.get("Channel") or ""
                if not name.startswith(HANDOFF_CHANNEL) or channel.get(
                        "CallerIDName") != "callback":
                    continue
                try:
                    got = await link.action("Getvar", Channel=name, Variable="CALLBACK_ID")
                except Exception:  # it ended meanwhile
                    continue
                request = got.get("Value") or ""
                if not request.isdigit() or int(request) not in arrivals:
                    continue
                request_id = int(request)
                live.add(request_id)
                self._placeholders[request_id] = arrivals[request_id]
                self._joined[name] = arrivals[request_id]  # its place: its request's arrival
                if call_id := channel.chan_variables().get("CALL_ID"):
                    self._recovered[call_id] = request_id
                log.info("callback %d: still waiting on a queue node (%s)", request_id, name)
        if not read:
            raise RuntimeError("no queue node could be read")
        return live

    async def withdraw(self, request_id: int) -> None:
        """Hang up the request's placeholder while it waits in the queue; once an agent took
        it (the resident is being rung or talking) the call is left alone. A callback being
        placed right now is withdrawn once it has joined the queue."""
        self._placeholders.pop(request_id, None)
        if (waiting := self._withdrawn.get(request_id)) is not None:
            waiting.set()  # an assigned callback still waiting for its agent
        async with self._placing:  # held while a callback is placed, until it joined
            pass
        # Its slot is on this media node, or (placed by a control on another one before a
        # restart) on another media node of the cluster.
        for ami in (self.ami, *self._media_links):
            try:
                channels = await ami.action_list("CoreShowChannels")
            except Exception as exc:
                log.warning("callback %d: not withdrawn, channels unknown (%s)", request_id,
                            exc)
                continue
            mine = [c for c in channels if slot_request(c.get("Channel")) == request_id]
            if not mine:
                continue
            # Waiting: its second half in the queue (one box) or handing it to the queue
            # node (a cluster: Dial, bridged only once an agent answered), not bridged.
            waiting = [c for c in mine if (c.get("Channel") or "").endswith(";2")
                       and c.get("Application") in ("Queue", "Dial")
                       and not c.get("BridgeId")]
            if not waiting:
                log.info("callback %d: an agent has it; the call is left up", request_id)
                return
            with contextlib.suppress(Exception):
                await ami.action("Hangup", Channel=_slot_pattern(request_id))
            log.info("callback %d: withdrawn from the queue", request_id)
            return

    async def _resident_first(self, job: CallbackJob, placed: Placed) -> CallbackResult:
        deadline = asyncio.get_running_loop().time() + self._queue_wait(job)
        while True:  # bounded by queue_timeout
            try:
                arrivals, free = await self._waiting(job.queue, job.penalty)
            except Exception as exc:
                return CallbackResult(None, f"queue status unavailable: {exc}")
            position = arrival_position(arrivals, job.arrival)
            if position == 1 and free:
                break
            if asyncio.get_running_loop().time() > deadline:
                return CallbackResult(None, "no free agent in time")
            await asyncio.sleep(RESIDENT_FIRST_POLL)  # the queue's state, polled (bounded)
        await placed(position)
        fields: dict[str, Any] = {
            "Channel": self.settings.dial.replace("{number}", job.number),
            "Context": RESIDENT_CONTEXT, "Exten": "s", "Priority": "1",
            "Timeout": str(int(self.settings.ring_timeout * 1000)),
            "CallerID": f'"{self._caller_id()}" <{self._caller_id()}>',
            "Async": "true",
            "Variable": self._variables(job, position),
        }
        try:
            queued = await self.ami.action("Originate", **fields)
        except Exception as exc:
            return CallbackResult("failed", f"originate not sent: {exc}")
        response = await self._responses.take(queued.get("ActionID"),
                                        self.settings.ring_timeout + 15)
        if response is None:
            return CallbackResult("failed", "no OriginateResponse")
        if response.get("Response") == "Success":
            return CallbackResult("reached", "answered")
        reason = response.get("Reason") or "0"
        return CallbackResult(ORIGINATE_REASONS.get(reason, "no_answer"), f"reason {reason}")
