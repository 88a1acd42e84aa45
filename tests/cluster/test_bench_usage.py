"""bench/cluster_usage.py against real parts: this process's group in /proc, a real
redis-server's INFO commandstats."""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis

from bench.cluster_usage import MemoryWatch, difference, group_cpu, pgrp, redis_commands
from hotline.bus.redis_server import RedisServer


def test_the_memory_watch_sees_a_groups_growth_at_its_peak() -> None:
    group = pgrp(os.getpid())
    assert group == os.getpgrp()
    watch = MemoryWatch({"bench": group})
    watch.sample()
    grown = b"\x01" * (64 * 1024 * 1024)  # written: resident, not just reserved
    watch.sample()
    del grown
    watch.sample()
    assert watch.baseline["bench"] > 0
    assert watch.peak["bench"] - watch.baseline["bench"] >= 48 * 1024
    assert watch.peak["bench"] >= watch.last["bench"]
    assert group_cpu()[group] > 0


def test_redis_commands_count_what_a_client_sent(redis_server: RedisServer) -> None:
    async def scenario() -> dict[str, int]:
        before = await redis_commands(redis_server.url)
        client = aioredis.from_url(redis_server.url)
        try:
            for i in range(5):
                await client.xadd("calls", {"n": str(i)})
            await client.xread({"calls": "0"})
        finally:
            await client.aclose()
        return difference(before, await redis_commands(redis_server.url))

    sent = asyncio.run(scenario())
    assert sent["xadd"] == 5
    assert sent["xread"] == 1
    assert "set" not in sent
