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
import shutil
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from hotline.asterisk import process
from hotline.asterisk.host import is_alive, mounts_under, pids_in_root
from hotline.asterisk.rootfs import has_asterisk
from hotline.edge import cluster, kamailio, nodes
from hotline.edge.settings import MediaNode
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings, free_tcp_port
from hotline.tools.sipp import CallResult, free_udp_port, place_call, send_request

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]

EDGE = "127.0.16.1"
NODES = {"node-a": "127.0.16.2", "node-b": "127.0.16.3"}
STRANGER = "127.0.16.9"
"""A loopback address outside the edge's sources (which are 127.0.0.1, the carrier here)."""
STATE_BOUND = 15.0
"""Seconds the dispatcher may take to mark a node down or up (probe every 1 s, 1 s timeout)."""


def _skip_unless_possible(settings: Settings) -> None:
    if os.geteuid() != 0:
        pytest.skip("the cluster needs root (chroot, mount)")
    for tool, package in (("sipp", "sip-tester"), ("kamailio", "kamailio")):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin") is None:
            pytest.skip(f"{tool} is not installed (apt-get install {package})")
    if not has_asterisk(settings.asterisk.root_dir):
        pytest.skip(f"no Asterisk root at {settings.asterisk.root_dir}")


@pytest.fixture(scope="module")
def edge_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Kamailio on 127.0.16.1 and media nodes node-a, node-b on 127.0.16.2 and .3, free ports."""
    base = asterisk_test_settings(tmp_path_factory.mktemp("edge-state"))
    media = [MediaNode(name=name, address=address, sip_port=free_udp_port(host=address),
                       ami_port=free_tcp_port(address), rtp_start=20000, rtp_end=20099)
             for name, address in NODES.items()]
    edge = base.edge.model_copy(update={
        "address": EDGE, "port": free_udp_port(host=EDGE), "sources": ["127.0.0.1"],
        "nodes": media, "probe_interval": 1, "reply_timeout": 1.0})
    settings = base.model_copy(update={"edge": edge})
    _skip_unless_possible(settings)
    try:
        cluster.up(settings, progress=lambda message: None)
        yield settings
    finally:
        cluster.down(settings, progress=lambda message: None)


def at_edge(settings: Settings) -> Settings:
    """Settings whose SIP address is the edge's: where SIPp callers send their INVITEs."""
    asterisk = settings.asterisk.model_copy(
        update={"bind_host": settings.edge.address, "sip_port": settings.edge.port})
    return settings.model_copy(update={"asterisk": asterisk})


def node_cli(settings: Settings, name: str, command: str) -> str:
    return process.cli(nodes.node_settings(settings, nodes.node(settings, name)), command)


def calls_processed(settings: Settings, name: str) -> int:
    text = node_cli(settings, name, "core show calls")
    match = re.search(r"(\d+) calls? processed", text)
    assert match, text
    return int(match.group(1))


def counts(settings: Settings, names: list[str] | None = None) -> dict[str, int]:
    return {name: calls_processed(settings, name) for name in names or list(NODES)}


async def calls(settings: Settings, how_many: int, first: int) -> list[CallResult]:
    return await asyncio.gather(*(
        place_call(at_edge(settings), caller_number=f"1390000{first + i:04d}", hold_ms=800)
        for i in range(how_many)))


async def wait_for(condition: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until ``condition`` held (checked every 0.1 s); fail after ``within``."""
    started = time.monotonic()
    while not await asyncio.to_thread(condition):
        if time.monotonic() - started > within:
            pytest.fail(f"{what} did not happen within {within:.0f} s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def node_flags(settings: Settings) -> dict[str, str]:
    return {d.name: d.flags for d in kamailio.destinations(settings)}


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
    assert pids_in_root(root) == []
    assert mounts_under(root) == []
