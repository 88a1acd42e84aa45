"""A cluster test bed: Kamailio and media nodes from the one Asterisk root on 127.0.16.x with
free ports, and what the tests ask of it (calls through the edge, each node's call count, the
dispatcher's view). Every wait is for a condition, bounded."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hotline.asterisk import process
from hotline.asterisk.host import mounts_under, pids_in_root
from hotline.asterisk.rootfs import ensure_root, has_asterisk
from hotline.edge import cluster, kamailio, nodes
from hotline.edge.settings import MediaNode
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings, free_tcp_port
from hotline.tools.sipp import CallResult, free_udp_port, place_call

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
        if shutil.which("mmdebstrap") is None:
            pytest.skip(f"no Asterisk root at {settings.asterisk.root_dir} and no mmdebstrap")
        ensure_root(settings)  # a fresh machine: these tests may be the first to need it


BEFORE: dict[Path, set[int | str]] = {}
"""The processes (and mounts) already in the Asterisk root when a bed started (e.g. the
integration tests' own Asterisk, started by an earlier cluster test in the same run): not
the bed's, so not what its ``down`` must stop."""


@contextmanager
def running_cluster(tmp_path_factory: pytest.TempPathFactory, *, edge: str = EDGE,
                    media: dict[str, str] = NODES, probe_interval: int = 1,
                    carrier: str | None = None) -> Iterator[Settings]:
    """Kamailio on ``edge`` and a media node per ``media`` entry (name: address), on free
    ports, and no queue node (the media tier alone: each node queues its own callers;
    tests/cluster/queue_bed.py has the city-wide queue); only 127.0.0.1 (the carrier here)
    may call the edge. Stopped on exit."""
    base = asterisk_test_settings(tmp_path_factory.mktemp("edge-state"))
    pool = [MediaNode(name=name, address=address, sip_port=free_udp_port(host=address),
                      ami_port=free_tcp_port(address), rtp_start=20000, rtp_end=20099)
            for name, address in media.items()]
    edge_settings = base.edge.model_copy(update={
        "address": edge, "port": free_udp_port(host=edge), "sources": ["127.0.0.1"],
        "nodes": pool, "queue_nodes": [], "probe_interval": probe_interval,
        "reply_timeout": 1.0, "carrier": carrier})
    settings = base.model_copy(update={"edge": edge_settings})
    _skip_unless_possible(settings)
    root = settings.asterisk.root_dir
    BEFORE[root] = set(pids_in_root(root)) | set(mounts_under(root))
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
    return {name: calls_processed(settings, name)
            for name in names or [m.name for m in settings.edge.nodes]}


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
