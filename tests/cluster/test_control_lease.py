"""The control lease (hotline/roles/control_lease.py) against a real redis-server: one holder
at a time, a standby that waits and takes over once the holder stops renewing, a holder
that stops its work when the lease is no longer its own or Redis stays away past the ttl,
and a clean stop that hands over at once. A short ttl keeps the tests fast."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from hotline.bus.redis_server import RedisServer
from hotline.bus.stream_entries import redis_client
from hotline.roles.control_lease import (
    ControlLease,
    LeaseLost,
    StoppedInStandby,
    holding_lease,
    keep_lease,
    wait_for_lease,
)
from tests.integration.fault_tools import LogWatcher

TTL_MS = 600
TTL_S = TTL_MS / 1000
MARGIN_S = 2.0
"""Slack on top of the lease's own timing for a busy test machine (bounds, not targets)."""
KEY = "test:call-events:control-lease"


@pytest.fixture(autouse=True)
def lease_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hotline.roles.control_lease")


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = redis_client(redis_server.url)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def lease(client: Redis, owner: str, ttl_ms: int = TTL_MS) -> ControlLease:
    return ControlLease(client, KEY, owner, ttl_ms)


class Worker:
    """A holder of the lease running ``holding_lease`` in a task: ``working`` is set while
    its body (the control work) runs, ``stopped`` once the body was cancelled and cleaned."""

    def __init__(self, lease: ControlLease, *, signals: bool = False) -> None:
        self.lease = lease
        self.working = asyncio.Event()
        self.stopped = asyncio.Event()
        self.task = asyncio.create_task(self._run(signals))

    async def _run(self, signals: bool) -> None:
        async with holding_lease(self.lease, signals=signals):
            self.working.set()
            try:
                await asyncio.Event().wait()  # the control work, until stopped
            finally:
                self.stopped.set()

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_one_holder_renews_and_releases_only_its_own(client: Redis) -> None:
    first, second = lease(client, "host:1:a"), lease(client, "host:2:b")
    assert await first.acquire()
    assert not await second.acquire()  # a standby cannot take a held lease
    assert await first.holder() == "host:1:a"
    await client.pexpire(KEY, 100)
    assert await first.renew()
    assert await client.pttl(KEY) > 100  # the whole ttl again
    assert not await second.renew() and not await second.release()
    assert await first.holder() == "host:1:a"
    assert await first.release()
    assert await first.holder() is None
    assert not await first.renew()  # gone: a renewal does not bring it back
    assert await second.acquire() and await second.holder() == "host:2:b"


async def test_the_standby_takes_over_once_the_holder_stops_renewing(client: Redis) -> None:
    dead = lease(client, "host:1:dead")
    assert await dead.acquire()  # then never renewed, as a process killed with -9
    taken_at = time.monotonic()
    with LogWatcher("hotline.roles.control_lease") as logs:
        standby = Worker(lease(client, "host:2:standby"))
        try:
            await logs.wait_for(lambda r: "lease held by host:1:dead" in r.getMessage(),
                                MARGIN_S, "the standby names the holder")
            await asyncio.wait_for(standby.working.wait(), TTL_S + TTL_S / 3 + MARGIN_S)
            assert time.monotonic() - taken_at >= TTL_S * 0.9  # not before it expired
            assert await dead.holder() == "host:2:standby"
            assert any("holding the lease" in r.getMessage() for r in logs.records)
            # Holding: renewed past several ttls.
            for _ in range(4):
                await asyncio.wait_for(_renewed(client), TTL_S + MARGIN_S)
            assert not standby.task.done() and await dead.holder() == "host:2:standby"
        finally:
            await standby.close()
    assert await dead.holder() is None  # released as the work stopped


async def _renewed(client: Redis) -> None:
    """Returns once the lease's remaining time went up between two looks (a renewal)."""
    before = await client.pttl(KEY)
    while True:
        await asyncio.sleep(0.02)  # polling Redis's clock, bounded by the caller
        now = await client.pttl(KEY)
        assert now > 0, "the lease expired while held"
        if now > before:
            return
        before = now


async def test_a_holder_whose_lease_was_taken_stops_its_work(client: Redis) -> None:
    holder = Worker(lease(client, "host:1:holder"))
    await asyncio.wait_for(holder.working.wait(), MARGIN_S)
    await client.set(KEY, "host:9:intruder", px=60_000)
    with pytest.raises(LeaseLost, match="held by host:9:intruder"):
        await asyncio.wait_for(holder.task, TTL_S / 3 + MARGIN_S)
    assert holder.stopped.is_set()  # the work was cancelled and cleaned up
    assert await client.get(KEY) == b"host:9:intruder"  # not released: not ours


async def test_a_holder_that_loses_redis_stops_once_its_lease_would_have_expired(
        redis_server: RedisServer, client: Redis) -> None:
    holder = Worker(lease(client, "host:1:holder"))
    await asyncio.wait_for(holder.working.wait(), MARGIN_S)
    await asyncio.to_thread(redis_server.stop)
    stopped_at = time.monotonic()
    with LogWatcher("hotline.roles.control_lease") as logs:
        with pytest.raises(LeaseLost, match="expired"):
            await asyncio.wait_for(holder.task, TTL_S + MARGIN_S)
        # It kept trying until the lease would have expired (renewed at most a third of
        # the ttl before Redis went), not giving up at the first failed renewal.
        assert time.monotonic() - stopped_at >= TTL_S * 2 / 3 - 0.05
        assert any("cannot renew" in r.getMessage() for r in logs.records)
    assert holder.stopped.is_set()


async def test_redis_back_before_the_ttl_keeps_the_holder(redis_server: RedisServer,
                                                          client: Redis) -> None:
    mine = lease(client, "host:1:holder", ttl_ms=4000)
    assert await mine.acquire()
    keeper = asyncio.create_task(keep_lease(mine, time.monotonic() + 4.0, every=0.2))
    try:
        await asyncio.to_thread(redis_server.stop)
        await asyncio.to_thread(redis_server.start)  # the key is gone with the data
        await client.set(KEY, "host:1:holder", px=4000)  # as a persisted Redis keeps it
        await asyncio.wait_for(_renewed(client), MARGIN_S)
        assert not keeper.done()
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)


async def test_the_standby_waits_while_redis_is_away(redis_server: RedisServer,
                                                     client: Redis) -> None:
    await asyncio.to_thread(redis_server.stop)
    with LogWatcher("hotline.roles.control_lease") as logs:
        waiting = asyncio.create_task(wait_for_lease(lease(client, "host:2:s"), every=0.1))
        try:
            await logs.wait_for(lambda r: "Redis does not answer" in r.getMessage(),
                                MARGIN_S + 2.5, "the standby says Redis is away")
            assert not waiting.done()
            await asyncio.to_thread(redis_server.start)
            await asyncio.wait_for(waiting, MARGIN_S + 2.5)
        finally:
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        warnings = [r for r in logs.records if "does not answer" in r.getMessage()]
        assert len(warnings) == 1  # once per outage, not once per attempt
    assert await client.get(KEY) == b"host:2:s"


async def test_sigterm_stops_the_holder_cleanly_and_hands_over_at_once(
        client: Redis) -> None:
    holder = Worker(lease(client, "host:1:holder", ttl_ms=60_000), signals=True)
    await asyncio.wait_for(holder.working.wait(), MARGIN_S)
    standby = Worker(lease(client, "host:2:standby"))  # tries every 0.2 s
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(holder.task, MARGIN_S)  # ends without an error
        assert holder.stopped.is_set()
        # Released: taken at the standby's next try, long before the holder's 60 s lease
        # would have expired.
        await asyncio.wait_for(standby.working.wait(), MARGIN_S)
    finally:
        await standby.close()


async def test_sigterm_stops_a_standby(client: Redis) -> None:
    assert await lease(client, "host:1:holder", ttl_ms=60_000).acquire()
    with LogWatcher("hotline.roles.control_lease") as logs:
        standby = Worker(lease(client, "host:2:standby"), signals=True)
        await logs.wait_for(lambda r: "standby, lease held by" in r.getMessage(), MARGIN_S,
                            "the standby waits")
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(StoppedInStandby):
            await asyncio.wait_for(standby.task, MARGIN_S)
    assert not standby.working.is_set()
    assert await client.get(KEY) == b"host:1:holder"



async def test_a_standby_whose_acquiring_reply_was_lost_takes_its_own_lease(
        client: Redis) -> None:
    """The SET went through but its reply never came: the value found is this process's
    own, so it holds the lease at once instead of waiting for it to expire."""
    mine = lease(client, "host:2:me", ttl_ms=60_000)
    assert await mine.acquire()
    await client.pexpire(KEY, 30_000)
    valid_until = await asyncio.wait_for(wait_for_lease(mine, every=0.1), MARGIN_S)
    assert valid_until > time.monotonic() + 50  # renewed to the whole ttl
    assert await client.pttl(KEY) > 50_000
