"""Issue 16: the SIP edge (real Kamailio from Debian) in front of two real Asterisk media nodes
run from the one cached root, called by real SIPp callers.

Each node answers with the hotline's own dialplan: no IVR service runs, so AudioSocket fails
at once (TryExec) and the caller waits in the queue with hold music until SIPp hangs up. That
is a real answered call on that node, counted by the node's own CLI ("calls processed").
Every wait is for a condition (a dispatcher state, a channel), bounded; none is timed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Iterator

import pytest

from hotline.asterisk import process
from hotline.asterisk.host import is_alive, mounts_under, pids_in_root, process_argv
from hotline.edge import cluster, kamailio, nodes
from hotline.settings import Settings
from hotline.tools.sipp import place_call, send_request
from tests.cluster.edge_bed import (
    BEFORE,
    NODES,
    STATE_BOUND,
    STRANGER,
    at_edge,
    calls,
    counts,
    node_cli,
    node_flags,
    running_cluster,
    wait_for,
)

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def edge_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Kamailio on 127.0.16.1, media nodes node-a and node-b on 127.0.16.2 and .3."""
    with running_cluster(tmp_path_factory) as settings:
        yield settings


async def test_calls_through_the_edge_land_on_both_nodes(edge_bed: Settings) -> None:
    before = counts(edge_bed)
    results = await calls(edge_bed, 6, first=0)
    assert all(r.answered and r.ok for r in results), [r.stderr for r in results]
    after = counts(edge_bed)
    landed = {name: after[name] - before[name] for name in NODES}
    assert sum(landed.values()) == 6, landed
    assert all(n > 0 for n in landed.values()), landed


async def test_the_node_sees_the_carriers_caller_and_names_itself(edge_bed: Settings) -> None:
    """The INVITE reaches the node from the edge's address (the gateway: hotline-inbound)
    with the caller's number as the carrier sent it, and the call carries the node's name."""
    call = asyncio.create_task(place_call(
        at_edge(edge_bed), caller_number="13912345678", hold_ms=6000))
    found: dict[str, str] = {}

    def on_a_node() -> bool:
        for name in NODES:
            for line in node_cli(edge_bed, name, "core show channels concise").splitlines():
                fields = line.split("!")
                if len(fields) > 7 and fields[1] == "hotline-inbound" and fields[5] == "Queue":
                    found.update(node=name, line=line)
                    return True
        return False

    try:
        await wait_for(on_a_node, 10, "the call waiting in a node's queue")
        fields = found["line"].split("!")
        assert fields[7] == "13912345678", found
        channel = node_cli(edge_bed, found["node"], f"core show channel {fields[0]}")
        assert re.search(rf"HOTLINE_NODE={found['node']}\b", channel), channel
        assert re.search(rf"^\s*UniqueID:\s+{found['node']}-", channel, re.M), channel
    finally:
        result = await call
    assert result.answered and result.ok, result.stderr


async def test_nodes_trust_only_the_edge_and_the_edge_only_its_sources(
        edge_bed: Settings) -> None:
    node = nodes.node_settings(edge_bed, edge_bed.edge.nodes[0])
    direct = await send_request(node, "INVITE", from_user="pstn-gateway")
    assert direct.status == 401 and not direct.challenged, direct
    stranger = await send_request(at_edge(edge_bed), "INVITE", from_user="13800138000",
                                  local_ip=STRANGER)
    assert stranger.status == 403, stranger


async def test_a_killed_node_is_taken_out_and_gets_calls_again_once_back(
        edge_bed: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    victim, survivor = "node-b", "node-a"
    pid = nodes.pid(edge_bed, victim)
    assert pid is not None and node_flags(edge_bed)[victim].startswith("A")
    os.kill(pid, signal.SIGKILL)
    down_after = await wait_for(lambda: not node_flags(edge_bed)[victim].startswith("A"),
                                STATE_BOUND, f"the edge taking {victim} out")

    before = counts(edge_bed, [survivor])[survivor]
    results = await calls(edge_bed, 4, first=100)
    assert all(r.answered and r.ok for r in results), [r.stderr for r in results]
    assert counts(edge_bed, [survivor])[survivor] - before == 4

    await asyncio.to_thread(nodes.up, edge_bed, victim, lambda message: None)
    back_after = await wait_for(lambda: node_flags(edge_bed)[victim].startswith("A"),
                                STATE_BOUND, f"the edge taking {victim} back")
    before_victim = counts(edge_bed, [victim])[victim]
    results = await calls(edge_bed, 4, first=200)
    assert all(r.answered and r.ok for r in results), [r.stderr for r in results]
    assert counts(edge_bed, [victim])[victim] > before_victim
    with capsys.disabled():
        print(f"\n{victim} killed: out of the dispatcher after {down_after:.1f} s; restarted: "
              f"back after {back_after:.1f} s (probe every {edge_bed.edge.probe_interval} s, "
              f"timeout {edge_bed.edge.reply_timeout} s)")


def test_down_leaves_no_process_or_mount_behind(edge_bed: Settings) -> None:
    root = edge_bed.asterisk.root_dir
    configs = [nodes.node_settings(edge_bed, m) for m in edge_bed.edge.nodes]
    edge_pid = kamailio.pid(kamailio.EdgeFiles.of(edge_bed))
    assert edge_pid is not None and all(process.status(c)["running"] for c in configs)
    cluster.down(edge_bed, progress=lambda message: None)
    assert kamailio.pid(kamailio.EdgeFiles.of(edge_bed)) is None
    assert not is_alive(edge_pid)
    left = [pid for pid in pids_in_root(root) if pid not in BEFORE.get(root, set())]
    assert left == [], [(pid, " ".join(process_argv(pid))) for pid in left]
    assert [m for m in mounts_under(root) if m not in BEFORE.get(root, set())] == []
