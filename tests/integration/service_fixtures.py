"""The hotline service, running in-process against the Asterisk test bed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from crm.telephony.events import CallEnded, CallEvent
from hotline.service import HotlineService, running_service
from hotline.settings import Settings
from hotline.tools.bed import free_tcp_port


class CallWatcher:
    """Collects call events and lets a test wait for one that matches."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self._changed = asyncio.Condition()

    async def handle(self, event: CallEvent) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_for(self, match: Callable[[CallEvent], bool], within: float) -> CallEvent:
        try:
            async with asyncio.timeout(within), self._changed:
                while True:
                    for event in self.events:
                        if match(event):
                            return event
                    await self._changed.wait()
        except TimeoutError:
            seen = "\n".join(f"  {e}" for e in self.events)
            raise AssertionError(
                f"no matching call event within {within} s; saw:\n{seen}") from None

    async def wait_ended(self, within: float = 20.0) -> CallEnded:
        event = await self.wait_for(lambda e: isinstance(e, CallEnded), within)
        assert isinstance(event, CallEnded)
        return event


def service_settings(bed: Settings, tmp_path: Path) -> Settings:
    settings = bed.model_copy(deep=True)
    settings.web.port = free_tcp_port()
    settings.database.url = f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    return settings


async def hang_up_leftover_calls(bed: Settings, within: float = 10.0) -> None:
    """Each test starts on a quiet Asterisk: calls an earlier test left behind (a SIPp caller
    still being torn down) would otherwise be picked up by the new service."""
    from hotline.asterisk import cli

    cli(bed, "channel request hangup all")
    deadline = asyncio.get_running_loop().time() + within
    while "0 active channels" not in cli(bed, "core show channels count"):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("Asterisk still has channels after hanging them all up")
        await asyncio.sleep(0.1)  # polling Asterisk's state, bounded by the deadline


@pytest.fixture
async def hotline(asterisk_bed: Settings, tmp_path: Path) -> AsyncIterator[HotlineService]:
    """A running service with a fresh database, logged in to the bed's AMI."""
    settings = service_settings(asterisk_bed, tmp_path)
    await hang_up_leftover_calls(asterisk_bed)
    async with running_service(settings) as service:
        await service.ami.wait_ready(10)
        yield service


@pytest.fixture
def watcher(hotline: HotlineService) -> CallWatcher:
    w = CallWatcher()
    hotline.bus.subscribe(w.handle)
    return w
