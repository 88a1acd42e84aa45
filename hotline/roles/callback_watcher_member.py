"""The callbacks watcher (crm/callbacks/watcher.py) of the working control as the one member
of its own consumer group, ``callback-watchers`` (hotline/bus/stream_group.py), so a control
that takes over (hotline/roles/control_lease.py) goes on where the old one stopped instead of
at the stream's end.

- One control works at a time (the lease), so the group has one consumer, named
  ``control`` whichever process it is: the entries the old holder read and never
  acknowledged are the new holder's own pending entries, handed over first and in order.
- An event is acknowledged once the watcher has handled it and written what it decided
  (:meth:`MissedCallWatcher.handle_through`); one that could not be written stays pending
  and comes again.
- The watcher remembers of each call what its decisions need (the number, when it joined
  the queue...), learnt from earlier events of the call. Before it reads, a new holder feeds
  it (:meth:`MissedCallWatcher.learn`, deciding nothing) the events acknowledged in the
  last ``RECALL_S`` before the first one not acknowledged (at most ``RECALL_MAX``).
- A new group starts at the stream's end (``$``): the first control of an installation
  does not decide again on calls of the past.
- A request waits until the recorders have written its call's events up to the one it
  handles (hotline/roles/recorded_mark.py), so it links to its consultation.

A decision is taken once per call and reason (crm.callbacks.service.request_callback with
``call_id``): an event the old holder handled and did not acknowledge makes no second request.
"""

from __future__ import annotations

import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from crm.callbacks.watcher import MissedCallWatcher
from crm.errors import WireFormatError
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.stream_entries import Delivery, parse, text
from hotline.bus.stream_reader import entry_order
from hotline.roles.recorded_mark import wait_recorded_to

log = logging.getLogger(__name__)

GROUP = "callback-watchers"
CONSUMER = "control"
RECALL_S = 4 * 3600.0
"""How far back a new holder learns the calls under way (longer than any call)."""
RECALL_MAX = 50_000
"""Entries learnt at most (the latest)."""
PAGE = 1000


class CallbackWatcherMember:
    def __init__(self, client: Redis, bus: RedisStreamBus) -> None:
        self._client = client
        self._bus = bus
        self.stream = bus.settings.stream
        self.watcher: MissedCallWatcher | None = None
        self.entry_id: str | None = None
        """The entry being handled (what a request waits to see written)."""
        self.learnt = 0
        self.handled = 0

    async def open(self) -> None:
        """Create the group at the stream's end if it is new (before control publishes)."""
        try:
            await self._client.xgroup_create(self.stream, GROUP, id="$", mkstream=True)
            log.info("callback watcher: group %s created on %s", GROUP, self.stream)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def settle(self) -> None:
        """The watcher's ``settle``: until the recorders have written up to this entry."""
        if self.entry_id is not None:
            await wait_recorded_to(self._client, self.stream, self.entry_id)

    async def handle(self, delivery: Delivery) -> None:
        """The group's handler: returns (and the entry is acknowledged) once the watcher's
        decisions on it are written."""
        assert self.watcher is not None
        self.entry_id = delivery.entry_id
        await self.watcher.handle_through(delivery.event)
        self.handled += 1

    async def join(self, stack: contextlib.AsyncExitStack,
                   watcher: MissedCallWatcher) -> None:
        """Learn the calls under way, then consume the group; stopped with ``stack``
        (before the watcher is closed)."""
        self.watcher = watcher
        await self.recall()
        worker = self._bus.consume(GROUP, CONSUMER, self.handle, group_start="$")
        stack.push_async_callback(self._bus.stop_consuming, worker)
        log.info("callback watcher: member %s of group %s on %s", CONSUMER, GROUP,
                 self.stream)

    async def recall(self) -> int:
        """Feed the watcher the events acknowledged before the first one not acknowledged
        (within ``RECALL_S``, at most ``RECALL_MAX``); how many."""
        assert self.watcher is not None
        end = await self._acknowledged_up_to()
        if end is None:
            return 0
        last, inclusive = end
        since_ms = int(last.partition("-")[0]) - int(RECALL_S * 1000)
        found: list[tuple[str, dict[bytes, bytes]]] = []
        upper = last if inclusive else f"({last}"
        while len(found) < RECALL_MAX:
            page = await self._client.xrevrange(self.stream, max=upper, min=f"{since_ms}-0",
                                                count=min(PAGE, RECALL_MAX - len(found)))
            found.extend((text(i), fields) for i, fields in page)
            if len(page) < PAGE:
                break
            upper = f"({found[-1][0]}"
        for _, fields in reversed(found):
            try:
                _, event = parse(fields)
            except WireFormatError:
                continue  # the group's consumer moved it aside when it came
            if event.call_id:
                await self.watcher.learn(event)
                self.learnt += 1
        if found:
            log.info("callback watcher: learnt the calls under way from %d events up to %s",
                     self.learnt, found[0][0])
        return self.learnt

    async def _acknowledged_up_to(self) -> tuple[str, bool] | None:
        """(entry id, inclusive): where the acknowledged entries end; None: none yet."""
        groups = await self._client.xinfo_groups(self.stream)
        info = next((g for g in groups if text(g["name"]) == GROUP), None)
        if info is None:
            return None
        pending = await self._client.xpending(self.stream, GROUP)
        if pending and pending.get("pending"):
            return text(pending["min"]), False
        delivered = text(info["last-delivered-id"])
        return (None if entry_order(delivered) == (0, 0) else (delivered, True))
