"""IVR workers' presence, so that the media nodes' dialplan skips a dead worker instead of
connecting to it.

Each worker (``--role ivr``) keeps a key of its own in Redis, ``<stream>:ivr-worker:<host:
port>`` (its AudioSocket address, as the dialplan lists it), renewed every :data:`BEAT_S`
with a time to live of :data:`TTL_MS`, and deletes it when it stops. Control (the lease
holder) reads the keys every :data:`BEAT_S`: a worker it has seen whose key is gone is marked
down on every media node it links (a global channel variable, :func:`mark_variable`, set by
AMI ``Setvar``), and marked up again when its key is back; a node whose link logs in again
(an Asterisk restart loses its globals) gets every mark again. The dialplan's worker loop
(dialplans/hotline.conf.j2) skips a worker marked down, unless every worker is marked down
(then it tries them all, as before).

Why: a connect that a dead worker refuses costs a caller a second in the skip, and Asterisk
22's AudioSocket closes a refused socket twice (docs/cluster.md), which can cut another new
call's AudioSocket. A worker that died is marked within TTL_MS + BEAT_S (about 4 s; a clean
stop at once); only workers seen since control started are ever marked (the ``core`` role's
own AudioSocket announces nothing and is never marked down). A Redis outage leaves the marks
as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from redis.asyncio import Redis

from hotline.bus.stream_entries import REDIS_DOWN
from ivr.ami.client import AmiClient
from ivr.settings import AudioSocketSettings

log = logging.getLogger(__name__)

BEAT_S = 1.0
"""Seconds between a worker's renewals, and between control's readings."""
TTL_MS = 3000
"""A worker's key lives this long after its last renewal."""


def presence_key(stream: str, address: str) -> str:
    return f"{stream}:ivr-worker:{address}"


mark_variable = AudioSocketSettings.down_mark
"""The global variable the dialplan reads for worker ``host:port`` ("1": down)."""


async def announce(client: Redis, stream: str, address: Callable[[], str]) -> None:
    """Keep this worker's key alive until cancelled, then delete it (a clean stop is seen at
    once). ``address`` is read at each beat (the AudioSocket port is bound by then)."""
    failing = False
    key = ""
    try:
        while True:
            key = presence_key(stream, address())
            try:
                await client.set(key, address(), px=TTL_MS)
                if failing:
                    log.info("IVR worker presence: Redis reachable again")
                failing = False
            except REDIS_DOWN as exc:
                if not failing:
                    log.warning("IVR worker presence: Redis unreachable (%s); the worker may "
                                "be marked down meanwhile", exc)
                failing = True
            await asyncio.sleep(BEAT_S)  # the renewal's period
    finally:
        if key:
            with contextlib.suppress(*REDIS_DOWN):
                await client.delete(key)


class WorkerMarks:
    """Control's side: marks on the media nodes' dialplans (see the module)."""

    def __init__(self, client: Redis, stream: str, nodes: Sequence[AmiClient]) -> None:
        self._client = client
        self._pattern = presence_key(stream, "*")
        self._nodes = list(nodes)
        self.down: dict[str, bool] = {}
        """Every worker seen so far: marked down or not."""
        self._undo = [ami.on_ready(self._again(ami)) for ami in self._nodes]

    def close(self) -> None:
        for undo in self._undo:
            undo()
        self._undo = []

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(BEAT_S)  # the reading's period

    async def check(self) -> None:
        """Read the workers' keys once and change the marks that differ."""
        try:
            present = {value.decode() if isinstance(value, bytes) else str(value)
                       for value in await self._values()}
        except REDIS_DOWN:
            return  # leave the marks as they are
        for address in sorted(present | set(self.down)):
            down = address not in present
            if self.down.get(address) == down:
                continue
            if address in self.down or down:
                log.warning("IVR worker %s %s", address,
                            "down: the dialplan skips it" if down else "back: tried again")
            self.down[address] = down
            for ami in self._nodes:
                await self._set(ami, address, down)

    async def _values(self) -> list[bytes | str]:
        keys = [key async for key in self._client.scan_iter(match=self._pattern, count=100)]
        if not keys:
            return []
        return [v for v in await self._client.mget(keys) if v is not None]

    def _again(self, ami: AmiClient) -> Callable[[], Awaitable[None]]:
        async def push() -> None:
            for address, down in sorted(self.down.items()):
                await self._set(ami, address, down)
        return push

    @staticmethod
    async def _set(ami: AmiClient, address: str, down: bool) -> None:
        if ami.state != "logged_in":
            return  # pushed whole at its next login
        try:
            await ami.action("Setvar", timeout=5.0, Variable=mark_variable(address),
                             Value="1" if down else "")
        except Exception as exc:  # a node that fails now gets every mark at its next login
            log.warning("IVR worker %s: cannot mark it %s on %s: %s", address,
                        "down" if down else "up", ami.peer, exc)
