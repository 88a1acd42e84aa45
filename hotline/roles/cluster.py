"""What a process of a cluster needs besides its parts: the Redis bus (required for any role
but ``all``), a Redis client of its own, background tasks stopped with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis

from hotline.bus.factory import open_bus
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.stream_entries import REDIS_DOWN, redis_client
from hotline.roles import ROLES
from hotline.settings import Settings

log = logging.getLogger(__name__)


class RoleError(ValueError):
    """A role this configuration cannot serve (printed to the operator as it is)."""


def check_role(settings: Settings, role: str) -> None:
    if role not in ROLES:
        raise RoleError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if role != "all" and settings.bus.kind != "redis":
        raise RoleError(
            f"--role {role} shares the hotline with other processes over Redis: set "
            f'[bus] kind = "redis" (HOTLINE_BUS__KIND=redis) and [bus] redis_url; '
            f"bus kind is {settings.bus.kind!r}")


async def start_cluster_bus(stack: contextlib.AsyncExitStack, settings: Settings,
                            role: str) -> RedisStreamBus:
    """The Redis bus of this process (its outbox journal named for the role), started;
    closed last, after every part that publishes."""
    bus = open_bus(settings, journal_name=f"bus-outbox-{role}")
    if not isinstance(bus, RedisStreamBus):
        raise RoleError(f"--role {role} needs [bus] kind = \"redis\"")
    await bus.start()
    stack.push_async_callback(bus.close)
    return bus


def cluster_client(stack: contextlib.AsyncExitStack, settings: Settings) -> Redis:
    """A Redis client of its own (a blocking read holds its connection), closed on exit."""
    client = redis_client(settings.bus.redis_url, read_block_s=settings.bus.read_block_s)

    async def close() -> None:
        with contextlib.suppress(*REDIS_DOWN):
            await client.aclose()

    stack.push_async_callback(close)
    return client


def background(stack: contextlib.AsyncExitStack, name: str,
               work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run ``work`` until the stack exits (cancelled then); a failure is logged."""
    async def run() -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s stopped", name)
            raise

    task = asyncio.create_task(run(), name=name)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    stack.push_async_callback(stop)
    return task
