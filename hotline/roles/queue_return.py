"""Callers waiting on the standby queue node handed back to the queue node once an agent's
phone is there again.

When the queue node dies, its callers are requeued on the standby and the agents' phones
follow at their next registration refresh (docs/cluster.md). When it comes back, the phones
return to it at their next refresh, but the standby keeps each phone's old registration
until it expires: a caller still waiting on the standby could ring a phone already talking
to a caller on the returned node (each node's app_queue knows only its own calls). So,
while the queue node is linked and one of its members' phones is reachable there (AMI
QueueMemberStatus not unavailable), every caller waiting on the standby is handed back:
control hangs their standby leg up with Q.850 cause ``HANDED_BACK`` (the dialplan's
``handoff_back``), and the caller's media node dials the queue node again, marked
X-Hotline-Requeue (ahead of new arrivals), in the order they had waited. Callers already
talking on the standby stay there until they hang up. Checked at the queue node's login,
at each of its members' state changes, and when a caller joins the standby.

A callback placeholder waiting on the standby (``HANDOFF_CALLBACK`` set on its leg) is not
handed back: its media node's callback dialplan has no way back yet; it is logged.

The standby's QueueCallerAbandon for a caller handed back is not an abandon: the call ids
handed back are kept in ``handed_back_ids`` for the standby's bus
(hotline.roles.queue_standby.StandbyStates) to withhold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ivr.ami.client import AmiClient
from ivr.ami.codec import AmiEvent
from ivr.asterisk.queue_tracker import call_id_of

log = logging.getLogger(__name__)

HANDED_BACK = 41
"""Q.850 temporary failure: the standby ended the leg to hand the caller back (the
dialplan's ``handoff_back``)."""
REACHABLE = {"1", "2", "3", "6", "7", "8"}
"""Device states of a phone registered and answering (not in use, in use, busy, ringing,
ring in use, on hold); 0 unknown, 4 invalid, 5 unavailable are not."""
TIMES = 5
"""A call is handed back at most this many times, the n-th at least 2**(n-1) s after the
one before: a media node whose probes have not yet seen the queue node back sends the
caller to the standby again (about a second after the node's return). After that the
caller stays on the standby."""
JOIN_S = 5.0
"""How long a caller handed back may take to join the queue node before the next one goes
(their order is kept by waiting for each)."""


class HandBack:
    """Hands callers waiting on the standby back to the queue node (see the module)."""

    def __init__(self, primary: AmiClient, standby: AmiClient, queues: tuple[str, ...],
                 *, join_s: float = JOIN_S) -> None:
        self._primary = primary
        self._standby = standby
        self._queues = set(queues)
        self._join_s = join_s
        self._lock = asyncio.Lock()
        self._joins: dict[str, asyncio.Future[None]] = {}
        self.handed_back_ids: set[str] = set()
        self.handed_back = 0
        self._times: dict[str, tuple[int, float]] = {}
        """Call id -> (times handed back, when last)."""
        self._again: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._standby_waiting: set[str] = set()
        """Channels waiting on the standby (its QueueCallerJoin / QueueCallerLeave): most
        of the time none, and a member's state change on the queue node costs nothing."""
        self._undo = [primary.subscribe("QueueMember*", self._on_member),
                      primary.subscribe("QueueCallerJoin", self._on_primary_join),
                      primary.on_ready(self.check),
                      standby.subscribe("QueueCaller*", self._on_standby_caller),
                      standby.on_ready(self._on_standby_ready)]

    def close(self) -> None:
        if self._again is not None:
            self._again.cancel()
        for task in self._tasks:
            task.cancel()
        for undo in self._undo:
            undo()
        self._undo = []

    async def _on_member(self, event: AmiEvent) -> None:
        if (self._standby_waiting and (event.get("Queue") or "") in self._queues
                and event.get("Status") in REACHABLE):
            await self.check()

    async def _on_standby_caller(self, event: AmiEvent) -> None:
        channel = event.get("Channel") or ""
        if (event.get("Queue") or "") not in self._queues or not channel:
            return
        if event.name.lower() == "queuecallerjoin":
            self._standby_waiting.add(channel)
            await self.check()
        elif event.name.lower() == "queuecallerleave":
            self._standby_waiting.discard(channel)

    async def _on_standby_ready(self) -> None:
        """The standby's link logged in: who waits there now."""
        try:
            self._standby_waiting = {e.get("Channel") or "" for e in
                                     await self._waiting_on_standby()}
        except Exception as exc:
            log.warning("hand back: cannot read the standby's callers: %s", exc)
            return
        await self.check()

    def _on_primary_join(self, event: AmiEvent) -> None:
        waiting = self._joins.get(call_id_of(event) or "")
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def withholds_abandon(self, call_id: str) -> bool:
        """Whether a standby abandon of ``call_id`` is a hand-back (forgotten once asked)."""
        if call_id in self.handed_back_ids:
            self.handed_back_ids.discard(call_id)
            return True
        return False

    async def check(self) -> None:
        """Hand every caller waiting on the standby back if a phone is on the queue node."""
        if (not self._standby_waiting or self._primary.state != "logged_in"
                or self._standby.state != "logged_in"):
            return
        async with self._lock:
            try:
                if not await self._phone_on_primary():
                    return
                waiting = await self._waiting_on_standby()
            except Exception as exc:
                log.warning("hand back: cannot read the queues: %s", exc)
                return
            for entry in waiting:
                await self._hand_back(entry)

    async def _phone_on_primary(self) -> bool:
        status = await self._primary.action_list("QueueStatus")
        return any(e.name == "QueueMember" and (e.get("Queue") or "") in self._queues
                   and e.get("Status") in REACHABLE for e in status)

    async def _waiting_on_standby(self) -> list[AmiEvent]:
        """The standby's waiting callers, longest wait first (their order of arrival)."""
        status = await self._standby.action_list("QueueStatus")
        entries = [e for e in status if e.name == "QueueEntry"
                   and (e.get("Queue") or "") in self._queues and e.get("Channel")]
        return sorted(entries, key=lambda e: -_int(e.get("Wait")))

    async def _hand_back(self, entry: AmiEvent) -> None:
        channel = entry.get("Channel") or ""
        try:
            if await self._standby.getvar(channel, "HANDOFF_CALLBACK"):
                log.info("hand back: %s on the standby is a callback placeholder: left there",
                         channel)
                return
            call_id = await self._standby.getvar(channel, "CALL_ID")
        except Exception as exc:  # gone meanwhile (answered, hung up)
            log.info("hand back: %s: %s", channel, exc)
            return
        if not call_id or not self._due(call_id):
            return
        joined = asyncio.get_running_loop().create_future()
        self._joins[call_id] = joined
        self.handed_back_ids.add(call_id)
        try:
            await self._standby.action("Hangup", Channel=channel, Cause=str(HANDED_BACK))
        except Exception as exc:
            self.handed_back_ids.discard(call_id)
            self._joins.pop(call_id, None)
            log.info("hand back: %s (%s) not handed back: %s", channel, call_id, exc)
            return
        self.handed_back += 1
        try:
            async with asyncio.timeout(self._join_s):
                await joined
            log.info("hand back: caller %s handed back from the standby to the queue node",
                     call_id)
        except TimeoutError:
            log.warning("hand back: caller %s left the standby but has not joined the queue "
                        "node within %.0f s", call_id, self._join_s)
        finally:
            self._joins.pop(call_id, None)


    def _due(self, call_id: str) -> bool:
        """Whether ``call_id`` may be handed back now; if later, a check is set for then."""
        loop = asyncio.get_running_loop()
        wait = self.wait_before(call_id, loop.time())
        if wait is None:
            return False
        if wait > 0:
            if self._again is None or self._again.when() > loop.time() + wait:
                if self._again is not None:
                    self._again.cancel()
                self._again = loop.call_later(wait, self._check_again)
            return False
        if len(self._times) > 10_000:  # calls long over; a handful are live at any time
            self._times.clear()
        times, _ = self._times.get(call_id, (0, 0.0))
        self._times[call_id] = (times + 1, loop.time())
        return True

    def wait_before(self, call_id: str, now: float) -> float | None:
        """Seconds until ``call_id`` may be handed back (0: now), None: never again."""
        times, last = self._times.get(call_id, (0, 0.0))
        if times >= TIMES:
            return None
        return max(0.0, last + 2 ** (times - 1) - now) if times else 0.0

    def _check_again(self) -> None:
        self._again = None
        task = asyncio.ensure_future(self.check())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _int(value: str | None) -> int:
    with contextlib.suppress(TypeError, ValueError):
        return int(value or 0)
    return 0
