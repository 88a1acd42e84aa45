"""An IVR worker starting learns the calls under way: its bus reader starts ``[bus] replay_s``
back (as a web node's does, hotline/roles/web.py), so a call announced shortly before the
worker started (``CallStarted``, an ``IvrLegAnnounced`` survey leg or callback offer) is
known when its AudioSocket comes here. A call that ended in that time is forgotten again
by its ``CallEnded``; one older than ``replay_s`` is not read."""

from __future__ import annotations

import asyncio
import logging
import time

from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.stream_entries import REDIS_DOWN
from hotline.bus.stream_reader import entry_order
from hotline.settings import Settings

log = logging.getLogger(__name__)

REPLAY_WAIT_S = 10.0
"""Seconds a starting worker waits at most for its replay before it takes calls (a call it
has not read yet still waits ``[audiosocket] announce_timeout`` for its event)."""


def replay_start(settings: Settings) -> str | None:
    """The entry id ``replay_s`` back (None: no replay, read from the stream's end)."""
    if settings.bus.replay_s <= 0:
        return None
    return f"{int((time.time() - settings.bus.replay_s) * 1000)}-0"


def begin_replay(bus: RedisStreamBus, settings: Settings) -> str | None:
    """Before the worker's first subscription: where its reader starts."""
    start = replay_start(settings)
    if start is not None:
        bus.read_from(start)
    return start


async def finish_replay(bus: RedisStreamBus, start: str | None,
                        timeout: float = REPLAY_WAIT_S) -> int:
    """Wait (bounded) until the reader has handed on every entry in the stream now; the
    number of events read by then."""
    if start is None:
        return 0
    try:
        async with asyncio.timeout(timeout):
            tail = await bus.tail()
            if bus.reader is not None and entry_order(tail) > entry_order(start):
                await bus.reader.reached(tail)
    except TimeoutError:
        log.warning("ivr: the replay of recent calls did not finish within %.0f s; taking "
                    "calls with what was read", timeout)
    except REDIS_DOWN as exc:
        log.warning("ivr: no replay of recent calls, Redis unreachable (%s)", exc)
    replayed = bus.reader.read if bus.reader is not None else 0
    log.info("ivr: replayed %d events of the last %.0f s", replayed,
             (time.time() * 1000 - entry_order(start)[0]) / 1000)
    return replayed
