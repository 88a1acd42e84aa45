"""The control lease: at most one ``--role control`` process of a cluster does the control
work (the AMI links that publish call events, the node-loss watch, the callbacks) at a time;
any other waits as a standby and takes over when the holder is gone.

The lease is one Redis key, ``<stream>:control-lease`` (``[bus] stream``), whose value is
the holder's id (``host:pid:random``), set with ``SET NX PX ttl`` (``[bus]
control_lease_ms``, 6 s by default). The holder renews it every ttl/3 with a
compare-and-renew script (only while the value is still its own). When Redis says the lease
is someone else's, or no renewal got through before the lease would have expired (Redis
unreachable), the holder stops the control work and exits non-zero (:class:`LeaseLost`);
whatever restarts it (systemd, an operator) brings it back as a standby. So two processes
publish call events at once for no longer than it takes the old holder to close its AMI
links once its lease expired.

A standby tries ``SET NX`` every ttl/3 and starts the control work once it holds the lease:
a killed holder is replaced within about ttl + ttl/3, a holder stopped cleanly (SIGTERM)
deletes the lease and is replaced within ttl/3. What the new holder does about calls already
under way is control's own start-up: calls left open are adopted and every node's channels
are compared on login (CoreShowChannels); see docs/cluster.md, "Standby control".

A lease-guarded process handles SIGTERM and SIGINT itself (a standby is not serving yet, so
the service's own stop never runs): the process stops cleanly, releasing a lease it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable

from redis.asyncio import Redis

from hotline.bus.stream_entries import REDIS_DOWN, redis_client, text
from hotline.settings import Settings

log = logging.getLogger(__name__)

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
"""Compare and renew: the lease's time again, only while it is still ours."""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""Compare and delete: a holder stopping cleanly lets the standby in at once."""
STANDBY_LINE = "control: standby, lease held by"
"""What a standby logs (with the holder) while it waits: ``hotline cluster up`` counts a
second control as started once it says so (hotline/cluster/processes.py)."""
UNREACHABLE: tuple[type[Exception], ...] = (TimeoutError, *REDIS_DOWN)
"""Redis down, or not answering within the time left."""
RETRY_S = 0.2
"""Seconds between renewal attempts while Redis does not answer (until the lease expires)."""


class LeaseLost(RuntimeError):
    """The control lease is no longer this process's: control work stopped; exit non-zero."""


class StoppedInStandby(Exception):
    """SIGTERM/SIGINT while waiting as a standby: nothing was started, exit cleanly."""


def lease_key(settings: Settings) -> str:
    return f"{settings.bus.stream}:control-lease"


def process_id() -> str:
    """This process's value of the lease: unique, and saying where the holder runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class ControlLease:
    """The lease key in Redis, as one process (``owner``) sees it."""

    def __init__(self, client: Redis, key: str, owner: str, ttl_ms: int) -> None:
        self.client = client
        self.key = key
        self.owner = owner
        self.ttl_ms = ttl_ms

    @property
    def ttl_s(self) -> float:
        return self.ttl_ms / 1000

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it (``SET NX PX``); True when it is ours."""
        return bool(await self.client.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        """Extend the lease by a ttl if it is still ours; False when it is not."""
        return bool(await self.client.eval(RENEW, 1, self.key, self.owner, self.ttl_ms))

    async def release(self) -> bool:
        """Delete the lease if it is ours (a clean stop)."""
        return bool(await self.client.eval(RELEASE, 1, self.key, self.owner))

    async def holder(self) -> str | None:
        value = await self.client.get(self.key)
        return None if value is None else text(value)


async def wait_for_lease(lease: ControlLease, *, every: float | None = None) -> float:
    """Wait as a standby until the lease is ours; the monotonic time until which it is
    surely ours (counted from when the winning request was sent). Logs once per holder and
    once per Redis outage."""
    every = lease.ttl_s / 3 if every is None else every
    seen: str | None = None
    down = False
    while True:
        sent = time.monotonic()
        try:
            async with asyncio.timeout(every + 2.0):
                if await lease.acquire():
                    log.info("control: holding the lease (%s, ttl %.1f s)", lease.owner,
                             lease.ttl_s)
                    return sent + lease.ttl_s
                holder = await lease.holder()
                if holder == lease.owner:  # our SET went through, its reply was lost
                    sent = time.monotonic()
                    if await lease.renew():
                        log.info("control: holding the lease (%s, ttl %.1f s)",
                                 lease.owner, lease.ttl_s)
                        return sent + lease.ttl_s
            if down:
                log.info("control: standby, Redis answers again")
                down = False
            if holder is not None and holder != seen:
                log.info("%s %s", STANDBY_LINE, holder)
                seen = holder
        except UNREACHABLE as exc:
            if not down:
                log.warning("control: standby, Redis does not answer (%s); trying every "
                            "%.1f s", str(exc) or type(exc).__name__, every)
                down = True
        # A poll period, not a synchronisation: the lease has no notification to wait on.
        await asyncio.sleep(max(0.0, sent + every - time.monotonic()))


async def keep_lease(lease: ControlLease, valid_until: float, *,
                     every: float | None = None) -> None:
    """Renew the lease every ttl/3 for as long as it is ours; raises :class:`LeaseLost`
    when Redis says it is another's, or when no renewal got through before it expired."""
    every = lease.ttl_s / 3 if every is None else every
    renewed_at = valid_until - lease.ttl_s
    while True:
        await asyncio.sleep(max(0.0, renewed_at + every - time.monotonic()))  # the period
        failing: BaseException | None = None
        while True:
            sent = time.monotonic()
            if sent >= valid_until:
                raise LeaseLost(f"control lease {lease.key} expired: no renewal got "
                                f"through in {lease.ttl_s:.1f} s ({failing})")
            try:
                async with asyncio.timeout(valid_until - sent):
                    ours = await lease.renew()
            except UNREACHABLE as exc:
                if failing is None:
                    log.warning("control: cannot renew the lease (%s); trying until it "
                                "expires in %.1f s", str(exc) or type(exc).__name__,
                                valid_until - sent)
                failing = exc
                await asyncio.sleep(min(RETRY_S, max(0.0, valid_until - time.monotonic())))
                continue
            if not ours:
                holder = await _holder_or_unknown(lease)
                raise LeaseLost(f"control lease {lease.key} is no longer ours: held by "
                                f"{holder}")
            if failing is not None:
                log.info("control: lease renewed again")
            renewed_at, valid_until = sent, sent + lease.ttl_s
            break


async def _holder_or_unknown(lease: ControlLease) -> str:
    try:
        async with asyncio.timeout(1.0):
            return await lease.holder() or "nobody"
    except UNREACHABLE:
        return "unknown (Redis does not answer)"


@contextlib.asynccontextmanager
async def holding_lease(lease: ControlLease, *,
                        signals: bool = True) -> AsyncIterator[ControlLease]:
    """Wait as a standby until ``lease`` is ours, then run the body while it stays ours.

    Losing the lease cancels the body (the task that entered) and raises
    :class:`LeaseLost` out of it, after the body's own clean-up. With ``signals``,
    SIGTERM/SIGINT stop the body (or the wait) cleanly: the lease is released and the
    block ends without an error (in standby: :class:`StoppedInStandby`)."""
    owner = asyncio.current_task()
    assert owner is not None
    loop = asyncio.get_running_loop()
    why: list[BaseException | str] = []
    keeper: asyncio.Task[None] | None = None

    def stop(reason: BaseException | str) -> None:
        if not why:
            why.append(reason)
            owner.cancel()

    def on_signal() -> None:
        log.info("stopping hotline control (%s)", "serving" if keeper else "standby")
        stop("signal")

    handled = _install(loop, on_signal) if signals else []
    held = False
    try:
        try:
            valid_until = await wait_for_lease(lease)
        except asyncio.CancelledError:
            if why and owner.uncancel() == 0:
                raise StoppedInStandby("stopped while waiting for the control lease") \
                    from None
            raise
        held = True
        keeper = asyncio.create_task(keep_lease(lease, valid_until), name="control lease")

        def on_keeper_done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                stop(task.exception())  # type: ignore[arg-type]

        keeper.add_done_callback(on_keeper_done)
        try:
            yield lease
        except asyncio.CancelledError:
            if not why or owner.uncancel() != 0:
                raise
        lost = next((r for r in why if isinstance(r, BaseException)), None)
        if lost is not None:
            held = False
            log.error("control: %s; control work stopped", lost)
            if isinstance(lost, LeaseLost):
                raise lost
            raise LeaseLost(f"control lease renewal failed: {lost!r}") from lost
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeper
        if held:
            await _release(lease)


def _install(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> list[int]:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler)
    return [signal.SIGTERM, signal.SIGINT]


async def _release(lease: ControlLease) -> None:
    try:
        async with asyncio.timeout(2.0):
            if await lease.release():
                log.info("control: lease released")
    except UNREACHABLE as exc:
        log.warning("control: could not release the lease (%s); the standby takes over "
                    "when it expires", str(exc) or type(exc).__name__)


@contextlib.asynccontextmanager
async def control_lease(settings: Settings, *,
                        signals: bool = True) -> AsyncIterator[ControlLease]:
    """:func:`holding_lease` with this process's lease on the cluster's Redis."""
    client = redis_client(settings.bus.redis_url)
    try:
        lease = ControlLease(client, lease_key(settings), process_id(),
                             settings.bus.control_lease_ms)
        async with holding_lease(lease, signals=signals):
            yield lease
    finally:
        with contextlib.suppress(*REDIS_DOWN):
            await client.aclose()
