"""A standby control (hotline/roles/control_lease.py) as real processes: two ``hotline serve
--role control`` over a real redis-server, the test PostgreSQL database and the real test
Asterisk. The first holds the lease and works; the second says it stands by and starts
nothing. With a caller on the line, the working one is killed with SIGKILL: the standby
takes the lease once it lapses and starts control; the caller who was on the line through
the gap, one who called during it and one who called after it each get exactly one
complete consultation. Then a clean stop (SIGTERM) hands over at the next standby's next
try, and a holder whose lease was taken exits 1. The figures (kill to lease taken, kill to
control up, SIGTERM to the next control up) are printed.

No IVR worker runs: callers fall back to the agent queue (empty, so they wait there), which
is all that control's call tracking needs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crm.callbacks import service
from crm.callbacks.service import CallbackView
from crm.consultations.service import ConsultationDetail, find_consultations
from crm.storage.db import SessionFactory
from hotline.asterisk import cli
from hotline.bus.redis_server import RedisServer
from hotline.bus.stream_entries import redis_client
from hotline.settings import Settings
from tests.cluster.test_ivr_workers import start
from tests.cluster.test_roles import START_S, WAIT_S, database, role_settings, stop_cleanly
from tests.integration.fault_tools import (
    HeldCaller,
    ServeProcess,
    no_bye_from_asterisk,
    wait_until,
)
from tests.integration.service_fixtures import hang_up_leftover_calls

pytestmark = pytest.mark.asterisk

LEASE_MS = 3000
"""A shorter lease than the default (6 s) keeps the test quick; the takeover scales with it."""
_LATER = datetime.now(UTC) + timedelta(hours=12)
ENV = {"HOTLINE_BUS__CONTROL_LEASE_MS": str(LEASE_MS),
       "HOTLINE_BUS__CLAIM_IDLE_S": "2",  # the dead control's unacknowledged events
       # Every caller who hangs up in the queue gets a callback request, but nobody is
       # dialled back: the calling hours are a minute, half a day from now.
       "HOTLINE_CALLBACKS__MIN_WAIT_S": "0", "HOTLINE_CALLBACKS__TIMEZONE": "UTC",
       "HOTLINE_CALLBACKS__CALLING_HOURS": f"{_LATER:%H:%M}-{_LATER + timedelta(minutes=1):%H:%M}"}


@dataclass
class Controls:
    bed: Settings
    sessions: SessionFactory
    active: ServeProcess
    standby: ServeProcess
    stack: contextlib.AsyncExitStack
    redis: RedisServer
    tmp_path: Path
    database_url: str

    async def another(self, name: str) -> ServeProcess:
        """One more ``--role control`` process (stopped with the test)."""
        settings = role_settings(self.bed, self.tmp_path, name, self.database_url)
        proc = await start(settings, "control", self.redis, **ENV)
        self.stack.push_async_callback(proc.stop)
        return proc


@pytest.fixture
async def controls(asterisk_bed: Settings, redis_server: RedisServer, postgres_database: str,
                   tmp_path: Path) -> AsyncIterator[Controls]:
    await hang_up_leftover_calls(asterisk_bed)
    async with database(postgres_database) as sessions, contextlib.AsyncExitStack() as stack:
        procs: list[ServeProcess] = []
        for name in ("control-a", "control-b"):
            settings = role_settings(asterisk_bed, tmp_path, name, postgres_database)
            proc = await start(settings, "control", redis_server, **ENV)
            stack.push_async_callback(proc.stop)
            procs.append(proc)
            if name == "control-a":
                await proc.wait_line("hotline control up", START_S)  # migrated
        active, standby = procs
        await standby.wait_line("control: standby, lease held by", START_S)
        yield Controls(asterisk_bed, sessions, active, standby, stack, redis_server,
                       tmp_path, postgres_database)
        await hang_up_leftover_calls(asterisk_bed)


async def one_consultation(controls: Controls, number: str, *,
                           ended: bool) -> ConsultationDetail:
    found: list[ConsultationDetail] = []

    async def there() -> bool:
        found[:] = await find_consultations(controls.sessions, phone=number)
        assert len(found) <= 1, f"{number}: {len(found)} consultations"
        return len(found) == 1 and (found[0].ended_at is not None or not ended)

    await wait_until(there, WAIT_S, f"{number}'s consultation {'ended' if ended else ''}")
    return found[0]


async def abandon_written(controls: Controls, number: str) -> ConsultationDetail:
    """The caller's ended consultation once their abandon is written too: the dialplan's
    end and app_queue's abandon are two events, in either order (bounded: after 10 s, the
    consultation as it is)."""
    deadline = time.monotonic() + 10
    while True:
        consultation = await one_consultation(controls, number, ended=True)
        if consultation.outcome == "abandoned" or time.monotonic() > deadline:
            return consultation
        await asyncio.sleep(0.1)  # polling the database (no event to wait on), bounded


async def one_request(controls: Controls, number: str) -> None:
    found: list[CallbackView] = []

    async def there() -> bool:
        found[:] = [r for r in await service.list_callbacks(controls.sessions, open_only=False)
                    if r.caller_number == number]
        assert len(found) <= 1, f"{number}: {len(found)} callback requests"
        return len(found) == 1

    await wait_until(there, WAIT_S, f"{number}'s callback request")
    assert (found[0].reason, found[0].note) == ("abandoned", None), found[0]


async def test_the_standby_takes_over_a_killed_control(controls: Controls) -> None:
    active, standby = controls.active, controls.standby
    assert not any("hotline control up" in line for line in standby.lines)
    callers: dict[str, HeldCaller] = {}

    async def call(number: str) -> None:
        callers[number] = await controls.stack.enter_async_context(
            HeldCaller(controls.bed, number=number))

    await call("13800000101")  # on the line through the takeover
    await one_consultation(controls, "13800000101", ended=False)

    active.kill()
    killed_at = time.monotonic()
    await active.proc.wait()
    await call("13800000102")  # during the gap: no control is linked
    await standby.wait_line("control: holding the lease", LEASE_MS / 1000 * 2 + 10)
    held_s = time.monotonic() - killed_at
    await standby.wait_line("hotline control up", START_S)
    up_s = time.monotonic() - killed_at
    print(f"\ncontrol lease {LEASE_MS} ms: standby held the lease {held_s:.2f} s and "
          f"control was up {up_s:.2f} s after the kill")

    await call("13800000103")  # after the takeover
    await one_consultation(controls, "13800000103", ended=False)
    # Each caller hangs up while waiting in the queue (the IVR fallback takes them there a
    # moment after their call starts): their outcome is then the abandon the new control
    # saw, not an end in the IVR.
    queue = controls.bed.asterisk.queue_name

    async def all_waiting() -> bool:
        shown = await asyncio.to_thread(cli, controls.bed, f"queue show {queue}")
        return f"{len(callers)} calls" in shown

    await wait_until(all_waiting, WAIT_S, f"the {len(callers)} callers waiting in {queue}")
    for number, caller in callers.items():
        result = await caller.hang_up()
        assert no_bye_from_asterisk(result), f"{number} was dropped: {result.events}"
    for number in callers:
        consultation = await abandon_written(controls, number)
        # Ended by the caller's own hang-up as the new control saw it, not guessed.
        assert consultation.started_at is not None, number
        assert (consultation.outcome, consultation.hangup_party) == ("abandoned", "caller"), (
            number, consultation.outcome, consultation.hangup_cause)
    # The callbacks watcher went on after the takeover (hotline/roles/
    # callback_watcher_member.py): the caller on the line through it, known to the new
    # control only from the events the old one acknowledged, gets one request, as does
    # the caller after it.
    for number in ("13800000101", "13800000103"):
        await one_request(controls, number)
    await clean_stop_hands_over(controls, working=standby)


async def clean_stop_hands_over(controls: Controls, *, working: ServeProcess) -> None:
    """SIGTERM: the working control exits 0 and releases the lease, so a new standby
    takes over at its next try (a third of the ttl), not after the ttl. Then the lease is
    taken from under the new holder: it stops and exits 1, saying why."""
    third = await controls.another("control-c")
    await third.wait_line("control: standby, lease held by", START_S)
    stopped_at = time.monotonic()
    await stop_cleanly(working)
    assert any("control: lease released" in line for line in working.lines)
    await third.wait_line("hotline control up", LEASE_MS / 1000 + 10)
    print(f"clean stop: the next control was up {time.monotonic() - stopped_at:.2f} s "
          f"after SIGTERM")
    client = redis_client(controls.redis.url)
    try:
        await client.set("hotline:call-events:control-lease", "elsewhere:1:x", px=60_000)
    finally:
        await client.aclose()
    async with asyncio.timeout(LEASE_MS / 1000 + 10):
        code = await third.proc.wait()
    assert code == 1, "".join(third.lines[-30:])
    await third.wait_line("is no longer ours: held by elsewhere:1:x", 5)
