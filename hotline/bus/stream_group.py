"""Competing consumers of the stream: a consumer group shares the events out among its
consumers (each event to one of them), for work that must happen once across the cluster
(the consultation recorder).

One consumer's loop:

1. joins the group (created at ``group_start``, ``0``: the whole stream, if it is new);
2. reads its own pending entries first (taken before a restart or a broken connection and
   never acknowledged), then new ones (XREADGROUP ``>``), blocking;
3. hands each to the handler as a :class:`~hotline.bus.stream_entries.Delivery` (event, entry
   id, event id, ``redelivered``) and acknowledges it (XACK) only after the handler
   returned, the entries of one read in one XACK; a handler that raises leaves the entry
   pending, to be tried again;
4. every ``claim_idle_s / 2`` takes over (XAUTOCLAIM) the entries any consumer of the group
   has held unacknowledged for longer than ``claim_idle_s``: those of a consumer that died,
   and its own that failed. An entry taken over more than ``max_deliveries`` times, and an
   entry that is not an event, is moved to the dead stream (``<stream>:dead``, with the
   reason) and acknowledged, so it never blocks the rest; an entry trimmed from the stream
   before it was acknowledged is logged as lost;
5. meanwhile a keeper task renews its hold (XCLAIM to itself, JUSTID) on the entries it has
   read and not finished, every ``claim_idle_s / 3``, so a consumer that is alive but slow (a
   big batch, a handler waiting for the database) keeps them; an entry another consumer took
   over anyway (this one stalled longer than ``claim_idle_s``) is skipped here, not handled
   twice. The renewal claims only entries idle for at least as long as since its last
   renewal, so it never takes back one that another consumer took meanwhile.

Delivery is at least once. A consumer drops a copy of an event it handled itself lately (its
XACK was lost with the connection, or the publisher sent the event twice): it acknowledges
the copy without handing it over. What remains is a second delivery to another consumer:
after a consumer handled an event and died before its XACK, or stalled longer than
``claim_idle_s`` in its handler, or when the two copies of a resent event went to two
consumers. Handlers make that harmless by writing idempotently, keyed on
``Delivery.event_id`` (the same in every copy); ``Delivery.redelivered`` says when a
delivery may be such a second one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from crm.errors import WireFormatError
from hotline.bus.stream_entries import (
    REDIS_BACKOFF,
    REDIS_DOWN,
    Delivery,
    RecentIds,
    describe,
    entries,
    parse,
    text,
)

log = logging.getLogger(__name__)

DeliveryHandler = Callable[[Delivery], Awaitable[None]]
READ_COUNT = 50
CLAIM_COUNT = 100
DEAD_MAXLEN = 100_000


def dead_stream(stream: str) -> str:
    return f"{stream}:dead"


class GroupConsumer:
    def __init__(self, client: Redis, stream: str, group: str, consumer: str,
                 handler: DeliveryHandler, *, claim_idle_s: float, max_deliveries: int,
                 block_s: float, group_start: str = "0") -> None:
        self._client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._handler = handler
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._claim_every = claim_idle_s / 2
        self._max_deliveries = max_deliveries
        self._block_ms = int(block_s * 1000)
        self._group_start = group_start
        self.handled = 0
        self.failed = 0
        self.reclaimed = 0
        self.dead = 0
        self.lost = 0
        self.skipped = 0
        self.reclaim_rounds = 0
        self._held: dict[str, None] = {}
        """Entries read and not finished, in order; renewed by the keeper."""
        self._held_since = 0.0
        """When this consumer last (re)took them: their idle time is at least the time since."""
        self._taken_over: set[str] = set()
        self._to_ack: dict[str, None] = {}
        """Entries handled and not yet acknowledged (one XACK per batch read)."""
        self._handled_ids = RecentIds()
        """Events this consumer handled lately: a copy of one (its XACK was lost with the
        connection, or the publisher sent it twice) is acknowledged without handling."""
        self.duplicates = 0

    async def run(self) -> None:
        keeper = asyncio.create_task(self._keep(), name=f"bus keeper {self.consumer}")
        try:
            await self._consume()
        finally:
            keeper.cancel()
            await asyncio.wait([keeper])

    async def _consume(self) -> None:
        attempt = 0
        joined = False
        backlog: str | None = "0"  # own pending entries first; None once read
        next_claim = time.monotonic()
        while True:
            try:
                if not joined:
                    await self._join()
                    joined = True
                if time.monotonic() >= next_claim:
                    await self._reclaim()
                    next_claim = time.monotonic() + self._claim_every
                if backlog is not None:
                    backlog = await self._read_backlog(backlog)
                else:
                    wait = max(1, min(self._block_ms,
                                      int((next_claim - time.monotonic()) * 1000)))
                    reply = await self._client.xreadgroup(
                        self.group, self.consumer, {self.stream: ">"}, count=READ_COUNT,
                        block=wait)
                    for entry_id, fields in self._hold(entries(reply)):
                        await self._handle(entry_id, fields, redelivered=False)
                    await self._flush_acks()
            except REDIS_DOWN as exc:
                attempt += 1
                if attempt == 1:
                    log.warning("bus group %s/%s: Redis unreachable (%s); going on once it "
                                "is back", self.group, self.consumer, exc)
                await asyncio.sleep(REDIS_BACKOFF.delay(attempt))
                backlog = "0"  # an XACK may have been lost with the connection
                continue
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    log.error("bus group %s/%s: the group or the stream is gone (Redis lost "
                              "its data?); joining again", self.group, self.consumer)
                    joined = False
                    continue
                attempt += 1  # a refusal (out of memory, the key is not a stream...)
                log.error("bus group %s/%s: Redis refuses: %s; trying again", self.group,
                          self.consumer, exc)
                await asyncio.sleep(REDIS_BACKOFF.delay(attempt))
                backlog = "0"
                continue
            if attempt:
                log.info("bus group %s/%s: Redis is back", self.group, self.consumer)
                attempt = 0

    async def _join(self) -> None:
        try:
            await self._client.xgroup_create(self.stream, self.group, id=self._group_start,
                                             mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read_backlog(self, after: str) -> str | None:
        """Handle one batch of this consumer's own pending entries after ``after``; the id
        to go on from, or None when there are none left."""
        reply = await self._client.xreadgroup(self.group, self.consumer, {self.stream: after},
                                              count=READ_COUNT)
        found = self._hold(entries(reply))
        for entry_id, fields in found:
            await self._handle(entry_id, fields, redelivered=True)
        await self._flush_acks()
        return found[-1][0] if found else None

    async def _reclaim(self) -> None:
        self.reclaim_rounds += 1
        cursor = "0-0"
        for _ in range(10_000):  # bounded: each round moves the cursor on
            reply = await self._client.xautoclaim(
                self.stream, self.group, self.consumer, min_idle_time=self._claim_idle_ms,
                start_id=cursor, count=CLAIM_COUNT)
            cursor = text(reply[0])
            claimed = reply[1] or []
            for gone in (reply[2] if len(reply) > 2 else []):
                self.lost += 1
                log.error("bus group %s: entry %s was trimmed from %s before it was "
                          "acknowledged: its event is lost to this group (raise [bus] maxlen)",
                          self.group, text(gone), self.stream)
            for eid, fields in self._hold(claimed):
                self.reclaimed += 1
                deliveries = await self._deliveries(eid)
                log.warning("bus group %s/%s: took over entry %s (idle over %d ms, delivery "
                            "%d)", self.group, self.consumer, eid, self._claim_idle_ms,
                            deliveries)
                if deliveries > self._max_deliveries:
                    await self._move_aside(eid, fields, f"failed {deliveries - 1} times")
                    continue
                await self._handle(eid, fields, redelivered=True)
            await self._flush_acks()
            if cursor == "0-0":
                return

    async def _deliveries(self, entry_id: str) -> int:
        rows = await self._client.xpending_range(self.stream, self.group, min=entry_id,
                                                 max=entry_id, count=1)
        return int(rows[0]["times_delivered"]) if rows else 1

    def _hold(self, found: list[tuple[bytes, dict[bytes, bytes]]]
              ) -> list[tuple[str, dict[bytes, bytes]]]:
        """Note the entries just read as this consumer's to finish (for the keeper)."""
        out = [(text(entry_id), fields) for entry_id, fields in found]
        self._held = dict.fromkeys(entry_id for entry_id, _ in out)
        self._held_since = time.monotonic()
        self._taken_over.clear()
        return out

    async def _keep(self) -> None:
        """Renew the hold on the entries read and not finished, every claim_idle_s / 3."""
        while True:
            await asyncio.sleep(self._claim_every / 1.5)  # a period, not a synchronisation
            held = list(self._held)
            idle_ms = int((time.monotonic() - self._held_since) * 1000) - 1
            if not held or idle_ms < 0:
                continue
            try:
                kept = await self._client.xclaim(self.stream, self.group, self.consumer,
                                                 idle_ms, held, justid=True)
            except REDIS_DOWN:
                continue  # the consumer's own loop reports it
            self._held_since = time.monotonic()
            kept_ids = {text(k) for k in kept}
            for entry_id in held:
                if entry_id not in kept_ids and entry_id in self._held:
                    self._taken_over.add(entry_id)

    async def _handle(self, entry_id: str, fields: dict[bytes, bytes], *,
                      redelivered: bool) -> None:
        try:
            await self._handle_held(entry_id, fields, redelivered=redelivered)
        finally:
            if entry_id not in self._to_ack:
                self._held.pop(entry_id, None)  # else held (renewed) until acknowledged

    async def _handle_held(self, entry_id: str, fields: dict[bytes, bytes], *,
                           redelivered: bool) -> None:
        if entry_id in self._taken_over:
            self.skipped += 1
            log.warning("bus group %s/%s: entry %s was taken over by another consumer while "
                        "this one was slow; left to it", self.group, self.consumer, entry_id)
            return
        if not fields:
            self.lost += 1
            log.error("bus group %s: entry %s was trimmed from %s before it was acknowledged: "
                      "its event is lost to this group (raise [bus] maxlen)", self.group,
                      entry_id, self.stream)
            self._to_ack[entry_id] = None
            return
        try:
            event_id, event = parse(fields)
        except WireFormatError as exc:
            await self._move_aside(entry_id, fields, exc.message)
            return
        if event_id in self._handled_ids:
            self.duplicates += 1
            log.info("bus group %s/%s: entry %s is a copy of event %s, handled here already",
                     self.group, self.consumer, entry_id, event_id)
            self._to_ack[entry_id] = None
            return
        try:
            await self._handler(Delivery(event, entry_id, event_id, redelivered))
        except Exception:
            self.failed += 1
            log.exception("bus group %s/%s: handler failed on %s of call %s (entry %s); left "
                          "pending, tried again after %d ms", self.group, self.consumer,
                          type(event).__name__, event.call_id or "-", entry_id,
                          self._claim_idle_ms)
            return
        self.handled += 1
        self._handled_ids.remember(event_id)
        self._to_ack[entry_id] = None

    async def _flush_acks(self) -> None:
        """Acknowledge the entries handled since the last time, in one XACK (after their
        handlers returned: a crash before this means a second delivery, never a loss)."""
        if not self._to_ack:
            return
        done = list(self._to_ack)
        await self._client.xack(self.stream, self.group, *done)
        for entry_id in done:
            self._to_ack.pop(entry_id, None)
            self._held.pop(entry_id, None)

    async def _move_aside(self, entry_id: str, fields: dict[bytes, bytes],
                          reason: str) -> None:
        """Copy the entry to the dead stream with why, and acknowledge it here."""
        self.dead += 1
        log.error("bus group %s: entry %s of %s moved aside to %s: %s (%s)", self.group,
                  entry_id, self.stream, dead_stream(self.stream), reason, describe(fields))
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(dead_stream(self.stream),
                      {**fields, b"dead_entry": entry_id.encode(),
                       b"dead_group": self.group.encode(),
                       b"dead_reason": reason.encode()},
                      maxlen=DEAD_MAXLEN, approximate=True)
            pipe.xack(self.stream, self.group, entry_id)
            await pipe.execute()
