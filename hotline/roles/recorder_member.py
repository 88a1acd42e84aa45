"""The consultation recorder as one member of the cluster's recorders (a Redis consumer group,
hotline/bus/stream_group.py): every process that records joins the group ``recorders``; each
event goes to one member, which journals it (crm/storage/write_behind.py) and only then lets
the group acknowledge it; a dead member's unacknowledged events are taken over by another
after ``[bus] claim_idle_s``; a second delivery is written once (the recorder's writes are
keyed on the event id and independent of order: crm/consultations/recorder.py).

An event a member acknowledged is in its journal and maybe not yet in the database. So that
other processes can tell when every event up to a point is written (the web node's wallboard,
the callbacks watcher: hotline/roles/recorded_mark.py), a member lists such events in
``<stream>:unwritten`` (a sorted set of entry ids, scored by their time) before it lets them
be acknowledged, and takes them off once written. A member that dies with events in its
journal leaves them listed until it restarts and writes them; readers ignore entries listed
for longer than ``recorded_mark.STALE_MS``, and members clear those older than ``FORGET_S``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket

from redis.asyncio import Redis

from crm.consultations.recorder import ConsultationRecorder, recorder_journal
from crm.storage.db import SessionFactory
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.stream_entries import REDIS_BACKOFF, REDIS_DOWN, Delivery
from hotline.settings import Settings

log = logging.getLogger(__name__)

GROUP = "recorders"
FORGET_S = 3600.0
"""Entries listed as unwritten for longer than this are cleared (their member is gone)."""


def unwritten_key(stream: str) -> str:
    return f"{stream}:unwritten"


def entry_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def member_name(settings: Settings, role: str) -> str:
    """Stable across restarts of one installation (its own pending events come back to it
    first), distinct between installations sharing a Redis."""
    where = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{role}-{where}"


class RecorderMember:
    def __init__(self, client: Redis, bus: RedisStreamBus, recorder: ConsultationRecorder,
                 consumer: str) -> None:
        """``recorder`` must have been built with :meth:`written` as its ``on_written``."""
        self._client = client
        self._bus = bus
        self.recorder = recorder
        self.consumer = consumer
        self._key = unwritten_key(bus.settings.stream)
        self._written: set[str] = set()
        self._wake = asyncio.Event()
        self.delivered = 0

    async def handle(self, delivery: Delivery) -> None:
        """The group's handler: listed as unwritten, then journaled; returns (and the group
        acknowledges) only then. Raises while Redis cannot take the listing: the event
        stays pending and comes again."""
        if delivery.event.call_id:
            await self._client.zadd(self._key, {delivery.entry_id: entry_ms(delivery.entry_id)})
        self.recorder.handle_keyed(delivery.event, delivery.event_id, delivery.entry_id)
        self.delivered += 1

    def written(self, entry_ids: list[str]) -> None:
        """The recorder's ``on_written``: take them off the list (soon, from :meth:`run`)."""
        self._written.update(entry_ids)
        self._wake.set()

    async def run(self) -> None:
        """Takes written entries off the list, retrying while Redis is down."""
        attempt = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            done = list(self._written)
            if not done:
                continue
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.zrem(self._key, *done)
                    pipe.zremrangebyscore(self._key, "-inf",
                                          entry_ms(done[0]) - int(FORGET_S * 1000))
                    await pipe.execute()
            except REDIS_DOWN as exc:
                attempt += 1
                if attempt == 1:
                    log.warning("recorder %s: Redis unreachable (%s)", self.consumer, exc)
                self._wake.set()
                await asyncio.sleep(REDIS_BACKOFF.delay(attempt))  # backoff while Redis is down
                continue
            attempt = 0
            self._written.difference_update(done)


async def start_recorder_member(stack: contextlib.AsyncExitStack, settings: Settings,
                                sessions: SessionFactory, bus: RedisStreamBus, client: Redis,
                                *, role: str) -> RecorderMember:
    """Join this process to the cluster's recorders: its journal (replayed first), the
    recorder, the group consumer (``[bus]`` claim and delivery settings); stopped with
    ``stack`` (the consumer first, then the writes, within their bounds)."""
    journal = recorder_journal(settings.state_dir / "journal",
                               fsync=settings.bus.journal_fsync)
    stack.callback(journal.close)
    member: RecorderMember | None = None

    def written(entries: list[str]) -> None:
        if member is not None:
            member.written(entries)

    recorder = ConsultationRecorder(sessions, journal=journal, on_written=written)
    member = RecorderMember(client, bus, recorder, member_name(settings, role))
    recorder.start()
    stack.push_async_callback(recorder.close)
    keeper = asyncio.create_task(member.run(), name="recorder unwritten list")

    async def stop_keeper() -> None:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper

    stack.push_async_callback(stop_keeper)
    worker = bus.consume(GROUP, member.consumer, member.handle)
    stack.push_async_callback(bus.stop_consuming, worker)  # first: nothing comes after the close
    log.info("recorder: member %s of group %s on %s", member.consumer, GROUP,
             bus.settings.stream)
    return member
