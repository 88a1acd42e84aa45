"""A standby control taking over in a cluster of two media nodes (real Kamailio, two
Asterisk nodes from the one root, a real redis-server, the test PostgreSQL database): two
``hotline serve --role control`` processes with a link per node (``[edge] control_links``),
the working one killed with SIGKILL while callers wait on both nodes. The standby takes the
lease and places the calls left open on the node each is live on
(hotline/roles/left_open.py): every caller's call ends exactly once on the bus, with the
caller's own hang-up, and has one complete consultation. (Before, control's own tracker
adopted every open call and ended those on the other node as ``resynchronised`` while their
callers were still on the line.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crm.consultations.service import find_consultations
from crm.storage.db import SessionFactory
from hotline.bus.redis_server import RedisServer
from hotline.bus.stream_entries import redis_client, text
from hotline.settings import Settings
from hotline.tools.sipp import CallResult, place_call
from tests.cluster.edge_bed import at_edge, counts, node_cli, running_cluster
from tests.cluster.test_ivr_workers import start
from tests.cluster.test_roles import START_S, WAIT_S, database, role_settings, stop_cleanly
from tests.integration.fault_tools import ServeProcess, wait_until

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(240)]

NET = "127.0.26"
"""Addresses of this module's edge and nodes (other cluster tests use their own)."""
LEASE_MS = 3000
HOLD_S = 16.0
"""How long each caller waits in its node's queue: past the takeover (about 4 s)."""


@pytest.fixture(scope="module")
def nodes_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with running_cluster(tmp_path_factory, edge=f"{NET}.1",
                         media={"node-a": f"{NET}.2", "node-b": f"{NET}.3"}) as settings:
        yield settings


@dataclass
class Controls:
    bed: Settings
    sessions: SessionFactory
    redis: RedisServer
    active: ServeProcess
    standby: ServeProcess
    stack: contextlib.AsyncExitStack


def control_env(bed: Settings) -> dict[str, str]:
    first = bed.edge.nodes[0]
    return {"HOTLINE_BUS__CONTROL_LEASE_MS": str(LEASE_MS),
            "HOTLINE_BUS__CLAIM_IDLE_S": "2",
            "HOTLINE_CALLBACKS__ENABLED": "false",
            "HOTLINE_EDGE__CONTROL_LINKS": "true",
            "HOTLINE_EDGE__NODES": json.dumps([m.model_dump(mode="json")
                                               for m in bed.edge.nodes]),
            "HOTLINE_EDGE__QUEUE_NODES": "[]",  # the bed's media nodes alone (edge_bed)
            "HOTLINE_AMI__HOST": first.address, "HOTLINE_AMI__PORT": str(first.ami_port),
            # As `hotline cluster up` sets it: the nodes' records are under the bed's state.
            "HOTLINE_EDGE__NODES_STATE_DIR": str(bed.state_dir)}


@pytest.fixture
async def controls(nodes_bed: Settings, redis_server: RedisServer, postgres_database: str,
                   tmp_path: Path) -> AsyncIterator[Controls]:
    async with database(postgres_database) as sessions, contextlib.AsyncExitStack() as stack:
        procs: list[ServeProcess] = []
        for name in ("control-a", "control-b"):
            settings = role_settings(nodes_bed, tmp_path, name, postgres_database)
            proc = await start(settings, "control", redis_server, **control_env(nodes_bed))
            stack.push_async_callback(proc.stop)
            procs.append(proc)
            if name == "control-a":
                await proc.wait_line("hotline control up", START_S)  # migrated
        await procs[1].wait_line("control: standby, lease held by", START_S)
        yield Controls(nodes_bed, sessions, redis_server, procs[0], procs[1], stack)


ENDER = "13800000299"


def channel_of(bed: Settings, number: str) -> str:
    """The caller's channel on whichever node holds it (``core show channels concise``)."""
    for node in bed.edge.nodes:
        for line in node_cli(bed, node.name, "core show channels concise").splitlines():
            fields = line.split("!")
            if len(fields) > 7 and fields[7] == number:
                return fields[0]
    raise AssertionError(f"no channel of {number} on any node")


async def consultation_there(sessions: SessionFactory, number: str, *, ended: bool) -> bool:
    found = await find_consultations(sessions, phone=number)
    assert len(found) <= 1, f"{number}: {len(found)} consultations"
    return len(found) == 1 and (found[0].ended_at is not None or not ended)


async def test_the_standby_keeps_the_calls_on_both_nodes(controls: Controls) -> None:
    bed = controls.bed
    callers: dict[str, asyncio.Task[CallResult]] = {}
    landed: dict[str, str] = {}

    async def call(number: str) -> None:
        before = counts(bed)
        callers[number] = asyncio.create_task(place_call(  # hangs up itself after HOLD_S
            at_edge(bed), caller_number=number, hold_ms=int(HOLD_S * 1000),
            answer_timeout_ms=8000, max_seconds=HOLD_S + 12))
        await wait_until(lambda: counts(bed) != before, WAIT_S, f"{number} reached a node")
        after = counts(bed)
        [landed[number]] = [n for n in after if after[n] != before[n]]

    try:
        # Callers until both nodes hold one (the edge takes turns), each recorded as
        # started by the working control.
        for n in range(4):
            number = f"1380000020{n}"
            await call(number)
            await wait_until(lambda number=number: consultation_there(
                controls.sessions, number, ended=False), WAIT_S, f"{number}'s consultation")
            if set(landed.values()) == {"node-a", "node-b"}:
                break
        assert set(landed.values()) == {"node-a", "node-b"}, landed
        # One more caller, hung up by its node while no control runs (after the kill,
        # before the standby's lease): closed from that node's own channel event record.
        await call(ENDER)
        await wait_until(lambda: consultation_there(controls.sessions, ENDER, ended=False),
                         WAIT_S, f"{ENDER}'s consultation")

        controls.active.kill()
        killed_at = time.monotonic()
        await controls.active.proc.wait()
        node_cli(bed, landed[ENDER], f"channel request hangup {channel_of(bed, ENDER)}")
        ender = callers.pop(ENDER)
        assert "remote_bye" in (await asyncio.wait_for(ender, HOLD_S)).events
        line = await controls.standby.wait_line("call(s) left open", LEASE_MS / 1000 * 2 + 15)
        taken_s = time.monotonic() - killed_at
        await controls.standby.wait_line("hotline control up", START_S)
        print(f"\n{line.strip()}\ntaken over {taken_s:.2f} s after the kill")
        on_a = sum(node == "node-a" for number, node in landed.items() if number != ENDER)
        assert f"{on_a} live on node-a, {len(callers) - on_a} on node-b, 1 ended meanwhile" \
            in line, line  # the other callers are still on the line (HOLD_S)

        for number, task in callers.items():
            result = await asyncio.wait_for(task, HOLD_S + 15)
            assert result.answered and "remote_bye" not in result.events, (number, result)
    finally:
        for task in callers.values():
            task.cancel()
        await asyncio.gather(*callers.values(), return_exceptions=True)
    for number in callers:
        await wait_until(lambda number=number: consultation_there(
            controls.sessions, number, ended=True), WAIT_S, f"{number}'s consultation ended")
        [consultation] = await find_consultations(controls.sessions, phone=number)
        # Ended by the caller's hang-up as the node's tracker saw it (the outcome differs by
        # node: media nodes without a queue node have no queue tracker, docs/cluster.md).
        assert (consultation.hangup_party, consultation.hangup_cause) == (
            "caller", "16 Normal Clearing"), (number, landed[number], consultation.outcome)
    [ended] = await find_consultations(controls.sessions, phone=ENDER)
    steps = {step["kind"]: step["detail"] for step in ended.steps}
    assert "reconciled" in steps and ended.outcome != "resynchronised", (ended.outcome, steps)
    # Each call ended once on the bus: none was ended (and opened again) by the takeover.
    client = redis_client(controls.redis.url)
    try:
        entries = await client.xrange("hotline:call-events")
    finally:
        await client.aclose()
    ends = Counter(text(fields[b"call"]) for _id, fields in entries
                   if fields.get(b"type") == b"CallEnded")
    calls = {c.call_id for n in callers for c in await find_consultations(
        controls.sessions, phone=n)}
    assert {call_id: ends[call_id] for call_id in calls} == dict.fromkeys(calls, 1), ends
    await stop_cleanly(controls.standby)
