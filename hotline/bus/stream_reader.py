"""A process's own reader of the stream (fan-out): every process sees every event, in stream
order, from where it started (or from a given entry id).

The reader blocks on XREAD, hands each event to the process's handlers in subscription order
(each awaited; one failing is logged and never stops the others, as on the in-process bus),
and remembers the id of the last entry it read, so after Redis restarts (or the connection
breaks) it goes on from there: nothing is skipped, nothing is handed over twice. An entry it
cannot read is logged with its id and fields and skipped; a resent copy of an event (see
stream_publisher) is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from crm.errors import WireFormatError
from crm.telephony.events import Handler
from hotline.bus.stream_entries import (
    REDIS_BACKOFF,
    REDIS_DOWN,
    RecentIds,
    describe,
    entries,
    parse,
    text,
)

log = logging.getLogger(__name__)

READ_COUNT = 500
"""Entries taken per read at most."""


async def tail_id(client: Redis, stream: str) -> str:
    """The id after which new entries will come: the stream's last entry, or ``0-0``."""
    last = await client.xrevrange(stream, count=1)
    return text(last[0][0]) if last else "0-0"


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``<ms>-<n>``) as something that compares in stream order."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def clock_id() -> str:
    """An entry id for "now" by this machine's clock (entry ids are Redis's clock in ms), for
    a reader that must start while Redis cannot be asked for its last entry."""
    return f"{int(time.time() * 1000)}-0"


class StreamReader:
    def __init__(self, client: Redis, stream: str, handlers: Sequence[Handler], *,
                 start_id: str | None, block_s: float) -> None:
        """``handlers`` is read at each event (the bus's own list: subscribing later
        counts); ``start_id`` None starts after the stream's last entry at the first
        successful read."""
        self._client = client
        self._stream = stream
        self._handlers = handlers
        self.last_id = start_id
        self._block_ms = int(block_s * 1000)
        self._recent = RecentIds()
        self.read = 0
        self.garbled = 0
        self.duplicates = 0
        self.reconnects = 0
        self._progress = asyncio.Condition()

    async def reached(self, entry_id: str) -> None:
        """Wait until the entries up to ``entry_id`` have been handed over (the caller
        bounds the wait)."""
        async with self._progress:
            await self._progress.wait_for(
                lambda: self.last_id is not None
                and entry_order(self.last_id) >= entry_order(entry_id))

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                if self.last_id is None:
                    self.last_id = await tail_id(self._client, self._stream)
                reply = await self._client.xread({self._stream: self.last_id},
                                                 count=READ_COUNT, block=self._block_ms)
            except REDIS_DOWN as exc:
                attempt += 1
                delay = REDIS_BACKOFF.delay(attempt)
                if attempt == 1:
                    self.reconnects += 1
                    log.warning("bus reader of %s: Redis unreachable (%s); reading again from "
                                "%s once it is back", self._stream, exc, self.last_id)
                await asyncio.sleep(delay)
                continue
            except ResponseError as exc:  # a refusal (the key is not a stream...)
                attempt += 1
                log.error("bus reader of %s: Redis refuses: %s; trying again", self._stream,
                          exc)
                await asyncio.sleep(REDIS_BACKOFF.delay(attempt))
                continue
            if attempt:
                log.info("bus reader of %s: Redis is back after %d attempts", self._stream,
                         attempt)
                attempt = 0
            for entry_id, fields in entries(reply):
                self.last_id = text(entry_id)
                await self._deliver(self.last_id, fields)
            async with self._progress:
                self._progress.notify_all()

    async def _deliver(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        try:
            event_id, event = parse(fields)
        except WireFormatError as exc:
            self.garbled += 1
            log.error("bus reader of %s: entry %s cannot be read, skipped: %s (%s)",
                      self._stream, entry_id, exc.message, describe(fields))
            return
        if self._recent.seen(event_id):
            self.duplicates += 1
            log.info("bus reader of %s: entry %s is a resent copy of event %s; dropped",
                     self._stream, entry_id, event_id)
            return
        self.read += 1
        for handler in list(self._handlers):
            try:
                await handler(event)
            except Exception:
                log.exception("call %s: subscriber %r failed on %s (entry %s)",
                              event.call_id or "-", handler, type(event).__name__, entry_id)
