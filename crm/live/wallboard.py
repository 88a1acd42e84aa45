"""The supervisors' live wallboard: how the agent queue is doing right now.

Fed by the call event bus like the desk hub, in arrival order by one worker task
(:mod:`crm.storage.write_behind`; the wallboard writes nothing to the database, it only reads):
CallerQueued adds a waiting caller; AgentAnswered, CallerAbandoned and CallEnded take them
off; AgentStatusChanged keeps each member's state (available, ringing, on a call, paused...).
Today's counters (answered, answered within the service level, abandoned) count the same
events.

After an AMI reconnect the queue tracker publishes a QueueSnapshot (QueueStatus: members and
waiting callers): the wallboard replaces what it holds with it rather than patching, and
recounts today's counters from the consultation steps the recorder wrote from the same
events, so nothing drifts from what was missed while disconnected. The counters are also
loaded from the database at start, so a restart mid-day does not zero them.

Today's service-level figures (crm.reports.service_levels' TodayCounter, handed in by the
composition root as ``levels``: this part does not import reports) are counted again by a
task of their own after every call event that can change them (once the recorder has written
it), and at least every ``levels_refresh_s`` (surveys and callbacks change without one).

Every change is pushed to the open wallboards (websockets) as the whole state; it is small.
No caller numbers or names are in it: wallboards hang on walls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import select

from crm.live.desk_hub import DeskSocket
from crm.storage.db import SessionFactory
from crm.storage.models import ConsultationStep, utcnow
from crm.storage.write_behind import STOP_RETRY_S, Queued, WriteBehind
from crm.telephony.events import (
    AgentAnswered,
    AgentCallEnded,
    AgentStatusChanged,
    BusEvent,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    QueueSnapshot,
)

log = logging.getLogger(__name__)

SERVICE_LEVEL_S = 20
"""A call answered within this many seconds of joining the queue meets the service level."""
MEMBER_STATES = ("available", "ringing", "on_call", "paused", "unavailable", "unreachable")
SEND_TIMEOUT = 5.0
SETTLE_TIMEOUT = 5.0
LEVEL_EVENTS = (AgentAnswered, AgentCallEnded, CallerAbandoned, CallEnded, QueueSnapshot)
"""Events after which today's service-level figures are counted again."""
TodayLevels = Callable[[datetime], Awaitable[dict[str, Any]]]
"""Today's service-level figures at the given instant (crm.reports.service_levels)."""


LEVELS_MIN_INTERVAL_S = 2.0
"""Today's figures are counted again at most this often, however many calls end."""


@dataclass
class WaitingCall:
    since: datetime
    call_id: str | None = None
    channel: str | None = None
    queue: str | None = None


@dataclass
class TodayCounts:
    day: date
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The UTC instants where the local calendar ``day`` starts and ends."""
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


async def count_today(sessions: SessionFactory, queue: str | Collection[str], day: date,
                      tz: tzinfo, service_level_s: int = SERVICE_LEVEL_S) -> TodayCounts:
    """Today's counters from the consultation steps written from queue events of ``queue``
    (one name, or every queue of the hotline)."""
    queues = {queue} if isinstance(queue, str) else set(queue)
    start, end = day_bounds(day, tz)
    async with sessions() as session:
        rows = (await session.execute(
            select(ConsultationStep.kind, ConsultationStep.detail)
            .where(ConsultationStep.at >= start, ConsultationStep.at < end,
                   ConsultationStep.kind.in_(("agent_answered", "abandoned"))))).all()
    counts = TodayCounts(day)
    for kind, detail in rows:
        detail = detail if isinstance(detail, dict) else {}
        if detail.get("queue") not in (None, "", *queues):
            continue
        if kind == "abandoned":
            counts.abandoned += 1
            continue
        counts.answered += 1
        hold = detail.get("hold_time_s")
        if isinstance(hold, int | float) and hold <= service_level_s:
            counts.answered_within += 1
    return counts


class Wallboard:
    def __init__(self, sessions: SessionFactory, *, queue: str, tz: tzinfo = UTC,
                 queues: Collection[str] = (),
                 settle: Callable[[], Awaitable[None]] | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 service_level_s: float = SERVICE_LEVEL_S,
                 levels: TodayLevels | None = None, levels_refresh_s: float = 30.0,
                 levels_min_interval_s: float = LEVELS_MIN_INTERVAL_S) -> None:
        """``settle`` waits until the consultation recorder has written what it received
        (its drain), before today's counters are recounted from the database; ``levels``
        counts today's service-level figures (None: the wallboard shows none). ``queue`` is
        the main queue; ``queues`` every queue of the hotline (the language desks too)."""
        self.queue = queue
        self.queues = frozenset({queue, *queues})
        self._sessions = sessions
        self._tz = tz
        self._settle = settle
        self._clock = clock
        self.service_level_s = service_level_s
        self._waiting: dict[str, WaitingCall] = {}
        """Keyed by call id, or by channel for callers only a snapshot told us about."""
        self._members: dict[str, AgentStatusChanged] = {}
        self._today = TodayCounts(self._local_day())
        self._events: WriteBehind[BusEvent] = WriteBehind(
            "wallboard events", self._apply_batch, retry_on=(), logger=log)
        self._sockets: set[DeskSocket] = set()
        self._changed = asyncio.Condition()
        self.version = 0
        self.resyncs = 0
        self._levels_of = levels
        self._levels_refresh_s = levels_refresh_s
        self._levels_min_interval_s = levels_min_interval_s
        self._levels_counted_at: float | None = None
        self._levels: dict[str, Any] | None = None
        self._levels_due = asyncio.Event()
        self._levels_task: asyncio.Task[None] | None = None
        self.levels_counted = 0
        self.replaying = False
        """Events of the past are being replayed (a web node starting): they set who waits
        and the members, not today's counts (counted from the database at start; the first
        resynchronisation counts again)."""
        """How many times today's figures were counted (tests wait on it)."""

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        await self._recount()
        self._events.start()
        if self._levels_of is not None:
            await self._count_levels()
            self._levels_task = asyncio.create_task(self._levels_loop(),
                                                    name="wallboard service levels")

    async def close(self) -> None:
        await self._events.close(timeout=0)
        if self._levels_task is not None:
            while not self._levels_task.done():
                self._levels_task.cancel()
                await asyncio.wait([self._levels_task], timeout=STOP_RETRY_S)
            self._levels_task = None
        await self.close_sockets()

    async def close_sockets(self) -> None:
        for socket in list(self._sockets):
            with contextlib.suppress(Exception):
                await socket.close()
        self._sockets.clear()

    async def handle(self, event: BusEvent) -> None:
        """Bus subscriber: never waits for the database or a browser."""
        self._events.put(event)
        if isinstance(event, LEVEL_EVENTS):
            self._levels_due.set()

    # -- today's service levels ---------------------------------------------------------------
    async def _levels_loop(self) -> None:
        """Count the figures again when an event asks for it, or every refresh interval;
        events arriving while counting ask for one more count, not one each."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._levels_refresh_s):
                    await self._levels_due.wait()
            self._levels_due.clear()
            await self._pace()
            if self._settle is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SETTLE_TIMEOUT):
                        await self._settle()
            if await self._count_levels():
                try:
                    await self._publish()
                except Exception:
                    log.exception("wallboard %s: publishing failed", self.queue)

    async def _pace(self) -> None:
        """At most one count per ``levels_min_interval_s``: each reads all of today's calls,
        and at 80 calls three end every second (the calls ending meanwhile are counted by
        the next one)."""
        loop = asyncio.get_running_loop()
        if self._levels_counted_at is not None:
            wait = self._levels_counted_at + self._levels_min_interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # rate limit, not synchronisation

    async def _count_levels(self) -> bool:
        """Whether the figures changed. A failure is logged and the last figures stay."""
        assert self._levels_of is not None
        self._levels_counted_at = asyncio.get_running_loop().time()
        try:
            found = await self._levels_of(self._clock())
        except Exception:
            log.exception("wallboard %s: counting today's service levels failed", self.queue)
            found = self._levels
        else:
            self.levels_counted += 1
        changed = found != self._levels
        self._levels = found
        if not changed:  # nothing to publish: tell those waiting that it was counted
            async with self._changed:
                self._changed.notify_all()
        return changed

    async def drain(self) -> None:
        """Wait until the events received before this call are shown."""
        await self._events.drain()

    async def wait_for(self, check: Callable[[], bool], within: float) -> None:
        """Wait until ``check()`` holds after some change (tests)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(check)

    async def _apply_batch(self, batch: Sequence[Queued[BusEvent]]) -> None:
        """The events that queued up meanwhile, then one publish: a burst goes out once.
        Never raises: a failing event is logged and skipped, as applying a batch again would
        count its events twice."""
        dirty = False
        for queued in batch:
            event = queued.item
            try:
                dirty = await self._apply(event) or dirty
            except Exception:
                log.exception("call %s: wallboard failed on %s", event.call_id or "-",
                              type(event).__name__)
        if dirty:
            try:
                await self._publish()
            except Exception:
                log.exception("wallboard %s: publishing failed", self.queue)

    # -- sockets ------------------------------------------------------------------------------
    def attach(self, socket: DeskSocket) -> None:
        self._sockets.add(socket)

    def detach(self, socket: DeskSocket) -> None:
        self._sockets.discard(socket)

    async def _publish(self) -> None:
        self.version += 1
        message = {"type": "wallboard", **self.state()}
        for socket in list(self._sockets):
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await socket.send_json(message)
            except Exception as exc:
                log.info("wallboard: dropping a socket (%s)", type(exc).__name__)
                self._sockets.discard(socket)
                with contextlib.suppress(Exception):
                    await socket.close()
        async with self._changed:
            self._changed.notify_all()

    # -- state --------------------------------------------------------------------------------
    def _local_day(self) -> date:
        return self._clock().astimezone(self._tz).date()

    def _roll_day(self) -> None:
        day = self._local_day()
        if day != self._today.day:
            self._today = TodayCounts(day)

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    def state(self) -> dict[str, Any]:
        """What a wallboard shows (the websocket's message and the state endpoint)."""
        self._roll_day()
        now = self._clock()
        oldest = min((w.since for w in self._waiting.values()), default=None)
        agents = dict.fromkeys(MEMBER_STATES, 0)
        for member in self._members.values():
            agents[member.status] = agents.get(member.status, 0) + 1
        members = sorted(self._members.values(),
                         key=lambda m: (m.member_name or "", m.interface))
        today = self._today
        return {
            "queue": self.queue,
            "version": self.version,
            "now": now.isoformat(),
            "waiting": {
                "count": len(self._waiting),
                "longest_since": oldest.isoformat() if oldest else None,
                "longest_wait_s": int((now - oldest).total_seconds()) if oldest else 0,
            },
            "agents": {**agents, "total": len(self._members)},
            "members": [{"name": m.member_name or m.extension or m.interface,
                         "extension": m.extension, "status": m.status} for m in members],
            "today": {
                "date": today.day.isoformat(),
                "answered": today.answered,
                "answered_within": today.answered_within,
                "service_level_s": self.service_level_s,
                "abandoned": today.abandoned,
            },
            "levels": self._levels,
            "resyncs": self.resyncs,
        }

    # -- events -------------------------------------------------------------------------------
    def _ours(self, queue: str | None) -> bool:
        return not queue or queue in self.queues

    def _take_off(self, call_id: str) -> bool:
        return self._waiting.pop(call_id, None) is not None

    async def _apply(self, event: BusEvent) -> bool:
        self._roll_day()
        if isinstance(event, QueueSnapshot):
            if event.queue not in self.queues:
                return False
            await self._resync(event)
            return True
        if isinstance(event, AgentStatusChanged):
            if not self._ours(event.queue):
                return False
            if event.status == "logged_out":
                return self._members.pop(event.interface, None) is not None
            self._members[event.interface] = event
            return True
        if isinstance(event, CallerQueued):
            if not self._ours(event.queue):
                return False
            # A caller a snapshot listed by channel is now known by call id as well.
            if event.channel:
                self._waiting.pop(event.channel, None)
            self._waiting[event.call_id] = WaitingCall(event.at, event.call_id, event.channel,
                                                       event.queue)
            return True
        if isinstance(event, AgentAnswered):
            if not self._ours(event.queue):
                return False
            self._take_off(event.call_id)
            if not self.replaying and not event.resynchronised:  # counted once
                self._today.answered += 1
                if event.hold_time_s is not None and event.hold_time_s <= self.service_level_s:
                    self._today.answered_within += 1
            return True
        if isinstance(event, CallerAbandoned):
            if not self._ours(event.queue):
                return False
            self._take_off(event.call_id)
            if not self.replaying:
                self._today.abandoned += 1
            return True
        if isinstance(event, CallEnded):
            return self._take_off(event.call_id)
        return False

    async def _resync(self, snapshot: QueueSnapshot) -> None:
        """Replace members and waiting callers with what Asterisk reports; recount today."""
        # Each queue of the hotline sends its own snapshot: callers known to wait in another
        # queue stay; members (every agent is in every queue) follow the main queue's.
        others = {key: w for key, w in self._waiting.items()
                  if w.queue is not None and w.queue != snapshot.queue}
        mine = {key: w for key, w in self._waiting.items() if key not in others}
        by_channel = {w.channel: w for w in mine.values() if w.channel}
        waiting: dict[str, WaitingCall] = dict(others)
        for entry in snapshot.waiting:
            known = by_channel.get(entry.channel)
            since = snapshot.at - timedelta(seconds=entry.wait_s or 0)
            if known is not None and known.call_id:
                waiting[known.call_id] = WaitingCall(known.since, known.call_id, entry.channel,
                                                     snapshot.queue)
            else:
                waiting[entry.channel] = WaitingCall(since, None, entry.channel, snapshot.queue)
        listed = {entry.channel for entry in snapshot.waiting}
        dropped = sum(1 for w in mine.values() if w.channel not in listed)
        self._waiting = waiting
        members = {m.interface: m for m in snapshot.members if m.status != "logged_out"}
        if snapshot.queue == self.queue:
            self._members = members
        else:
            self._members.update(members)
        self.resyncs += 1
        log.info("wallboard %s: resynchronised: %d waiting (%d dropped), %d members",
                 self.queue, len(waiting), dropped, len(self._members))
        if self._settle is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._settle()
        await self._recount()

    async def _recount(self) -> None:
        try:
            self._today = await count_today(self._sessions, self.queues, self._local_day(),
                                            self._tz, self.service_level_s)
        except Exception:
            log.exception("wallboard %s: counting today's calls failed", self.queue)
