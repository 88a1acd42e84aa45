"""How far the cluster's recorders have written the stream, for a process that waits on it:
the web node's wallboard (it recounts today's calls from the database) and the callbacks
watcher (a request links to its consultation).

Every event up to the entry ``target`` is written when, in the recorders' consumer group
(hotline/roles/recorder_member.py):

1. the group has been handed entries up to ``target`` (its last-delivered id);
2. none of them is still pending (read by a member and not acknowledged);
3. none of them is listed as acknowledged but not yet written (``<stream>:unwritten``),
   except entries listed for over ``STALE_MS`` before ``target`` (a member that died with
   them in its journal: they land when it restarts; waiting for them would hold every
   wait until its bound).

``wait_recorded`` polls that (the group announces no event of its own); the caller bounds
the wait."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.stream_entries import REDIS_DOWN, text
from hotline.bus.stream_reader import entry_order
from hotline.roles.recorder_member import GROUP, entry_ms, unwritten_key

log = logging.getLogger(__name__)

POLL_S = 0.05
"""How often ``wait_recorded`` asks again."""
STALE_MS = 60_000


async def recorded_up_to(client: Redis, stream: str, target: str, *,
                         group: str = GROUP) -> bool:
    """Whether every event of ``stream`` up to the entry ``target`` is written."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        return False
    info = next((g for g in groups if text(g["name"]) == group), None)
    if info is None or entry_order(text(info["last-delivered-id"])) < entry_order(target):
        return False
    if await client.xpending_range(stream, group, min="-", max=target, count=1):
        return False
    ms = entry_ms(target)
    return not await client.zcount(unwritten_key(stream), ms - STALE_MS, ms)


async def wait_recorded(client: Redis, bus: RedisStreamBus) -> None:
    """Until the recorders have written every event this process's reader has handed over
    so far (the caller bounds the wait)."""
    reader = bus.reader
    if reader is None or reader.last_id is None:
        return
    await wait_recorded_to(client, bus.settings.stream, reader.last_id)


async def wait_recorded_to(client: Redis, stream: str, target: str) -> None:
    """Until the recorders have written every event of ``stream`` up to the entry ``target``
    (the caller bounds the wait)."""
    while True:
        try:
            if await recorded_up_to(client, stream, target):
                return
        except REDIS_DOWN as exc:
            log.warning("recorded mark: Redis unreachable (%s); not waiting", exc)
            return
        await asyncio.sleep(POLL_S)  # bounded by the caller's timeout
