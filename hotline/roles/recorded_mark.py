"""How far the consultation recorder has written the stream, for processes that do not run it.

On one box the wallboard waits for the recorder's ``drain`` before it recounts today's calls
from the database. On a web node of a cluster the recorder runs in the core process; the
core keeps ``<stream>:recorded`` in Redis at the entry id of the last event its recorder has
written (its reader hands events over in stream order and the recorder writes them in
order, so the mark only rises), and the web node's ``settle`` waits until the mark reaches
the last entry its own reader has handed over."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from crm.consultations.recorder import ConsultationRecorder
from crm.telephony.events import BusEvent
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.stream_entries import REDIS_BACKOFF, REDIS_DOWN, text

log = logging.getLogger(__name__)

POLL_S = 0.05
"""How often ``settle`` reads the mark again (the mark announces no event of its own); the
wallboard bounds the wait."""


def mark_key(stream: str) -> str:
    return f"{stream}:recorded"


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``<ms>-<n>``) as something that compares in stream order."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RecordedMark:
    """The core's side: subscribe :meth:`handle` after the recorder, run :meth:`run`."""

    def __init__(self, client: Redis, bus: RedisStreamBus,
                 recorder: ConsultationRecorder) -> None:
        self._client = client
        self._bus = bus
        self._recorder = recorder
        self._key = mark_key(bus.settings.stream)
        self._seen: str | None = None
        self._due = asyncio.Event()
        self.mark: str | None = None

    async def handle(self, event: BusEvent) -> None:
        if self._bus.reader is not None and self._bus.reader.last_id is not None:
            self._seen = self._bus.reader.last_id
            self._due.set()

    async def run(self) -> None:
        attempt = 0
        while True:
            await self._due.wait()
            self._due.clear()
            seen = self._seen
            if seen is None:
                continue
            await self._recorder.drain()
            try:
                await self._client.set(self._key, seen)
            except REDIS_DOWN as exc:
                attempt += 1
                if attempt == 1:
                    log.warning("recorded mark: Redis unreachable (%s)", exc)
                self._due.set()  # set it again once Redis is back
                await asyncio.sleep(REDIS_BACKOFF.delay(attempt))  # backoff while Redis is down
                continue
            attempt = 0
            self.mark = seen


async def wait_recorded(client: Redis, bus: RedisStreamBus) -> None:
    """The web node's ``settle``: until the core's recorder has written every event this
    process's reader has handed over so far (the caller bounds the wait)."""
    reader = bus.reader
    if reader is None or reader.last_id is None:
        return
    target = entry_order(reader.last_id)
    key = mark_key(bus.settings.stream)
    while True:
        try:
            with_mark = await client.get(key)
        except REDIS_DOWN as exc:
            log.warning("recorded mark: Redis unreachable (%s); not waiting", exc)
            return
        if with_mark is not None and entry_order(text(with_mark)) >= target:
            return
        await asyncio.sleep(POLL_S)  # bounded by the caller's timeout
