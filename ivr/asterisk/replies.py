"""What the dialers wait for on AMI: a value that arrives under a key (an OriginateResponse
by ActionID, a hang-up cause by Uniqueid, a report by call id), kept until someone takes it."""

from __future__ import annotations

import asyncio
from typing import Any

KEEP_AT_MOST = 1000
"""Values about calls that are not ours arrive too: the oldest beyond this are dropped."""


class Replies:
    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._arrived = asyncio.Condition()

    async def keep(self, key: str, value: Any) -> None:
        async with self._arrived:
            self._values[key] = value
            while len(self._values) > KEEP_AT_MOST:
                self._values.pop(next(iter(self._values)))
            self._arrived.notify_all()

    async def take(self, key: str | None, within: float) -> Any | None:
        """The value ``key`` gets (taken out), or None after ``within`` s."""
        if key is None:
            return None
        try:
            async with asyncio.timeout(within), self._arrived:
                while key not in self._values:
                    await self._arrived.wait()
                return self._values.pop(key)
        except TimeoutError:
            return None
