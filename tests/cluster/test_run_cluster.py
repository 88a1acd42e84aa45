"""Issue 16, the test bed on one machine: ``hotline cluster up`` (as ``make run-cluster``
runs it) from a temporary state directory starts Redis, the SIP edge (real Kamailio), two
real Asterisk media nodes from the one root, and the role processes of the plan (a core and
two web nodes, real ``hotline serve --role``) against a PostgreSQL database of the test's
own. SIPp callers go through the edge, land on both nodes, and the core's IVR answers the
call on the node its AMI watches; every part reports up; ``down`` leaves no process.

Every process of the plan gets its own address in 127.0.18.0/24 and free ports. Every wait is
for a condition, bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from crm.consultations.service import find_consultations
from crm.storage.db import make_engine, make_session_factory
from hotline.asterisk.host import is_alive, mounts_under, pids_in_root
from hotline.cluster.plan import Plan, RoleProcess
from hotline.edge.settings import MediaNode
from hotline.liveness import fetch_health
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings, free_tcp_port
from hotline.tools.sipp import free_udp_port
from tests.cluster.edge_bed import _skip_unless_possible, calls, counts
from tests.conftest import _create_or_drop, _postgres_url

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(300)]

NET = "127.0.18"
UP_S = 240.0
"""Bound for ``hotline cluster up`` (two Asterisks, Kamailio, a core loading speech)."""


@dataclass
class Bed:
    settings: Settings
    env: dict[str, str]
    plan: Plan
    up_output: str
    database_url: str


def hotline(env: dict[str, str], *args: str,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hotline.cli", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    base = _postgres_url()
    if base is None:
        pytest.skip("PostgreSQL not prepared: run scripts/postgres-test.sh (make test does)")
    name = f"hotline_test_cluster_{os.getpid()}"
    asyncio.run(_create_or_drop(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    asyncio.run(_create_or_drop(base, f"CREATE DATABASE {name}"))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_create_or_drop(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Bed]:
    state = tmp_path_factory.mktemp("cluster-state")
    nodes = [MediaNode(name=name, address=f"{NET}.{n}", sip_port=free_udp_port(host=f"{NET}.{n}"),
                       ami_port=free_tcp_port(f"{NET}.{n}"), rtp_start=21000, rtp_end=21099)
             for name, n in (("media-1", 2), ("media-2", 3))]
    edge = {"address": f"{NET}.1", "port": free_udp_port(host=f"{NET}.1"),
            "sources": ["127.0.0.1"], "nodes": [n.model_dump() for n in nodes],
            "probe_interval": 1, "reply_timeout": 1.0}
    env = {**os.environ, "HOTLINE_STATE_DIR": str(state),
           "HOTLINE_DATABASE__URL": database_url,
           "HOTLINE_EDGE__ADDRESS": edge["address"], "HOTLINE_EDGE__PORT": str(edge["port"]),
           "HOTLINE_EDGE__SOURCES": json.dumps(edge["sources"]),
           "HOTLINE_EDGE__NODES": json.dumps(edge["nodes"]),
           "HOTLINE_EDGE__PROBE_INTERVAL": "1", "HOTLINE_EDGE__REPLY_TIMEOUT": "1.0",
           "HOTLINE_SPEECH__PREWARM_PROMPTS": "false"}
    settings = asterisk_test_settings(state)  # the secrets every part shares
    settings = settings.model_copy(update={"edge": settings.edge.model_validate(edge)})
    _skip_unless_possible(settings)
    plan = Plan(state / "cluster", f"{NET}.4", free_tcp_port(f"{NET}.4"), database_url, [
        RoleProcess("core", "core", f"{NET}.5", audiosocket_port=free_tcp_port(f"{NET}.5")),
        RoleProcess("web-1", "web", f"{NET}.6", web_port=free_tcp_port(f"{NET}.6")),
        RoleProcess("web-2", "web", f"{NET}.7", web_port=free_tcp_port(f"{NET}.7")),
    ])
    plan.save()  # the cluster's settings file, as `up` would generate it
    try:
        started = hotline(env, "cluster", "up", "--seed-demo", timeout=UP_S)
        assert started.returncode == 0, started.stdout + started.stderr
        yield Bed(settings, env, plan, started.stdout, database_url)
    finally:
        hotline(env, "cluster", "down", timeout=120)


def status(bed: Bed) -> tuple[int, dict[str, Any]]:
    done = hotline(bed.env, "cluster", "status", "--json")
    return done.returncode, json.loads(done.stdout)


def test_up_says_where_every_part_is(bed: Bed) -> None:
    out = bed.up_output
    edge = bed.settings.edge
    assert f"udp {edge.address}:{edge.port}" in out, out
    for process in bed.plan.processes:
        if process.web_port:
            assert f"desk http://{process.address}:{process.web_port}/desk" in out, out
        assert str(bed.plan.log_file(process)) in out, out
    assert bed.plan.redis_url in out and "PostgreSQL:" in out, out
    assert "demo data: " in out and "records added" in out, out  # as make run-cluster asks
    assert all(f"media node {n.name}: SIP udp {n.address}:{n.sip_port}" in out
               for n in edge.nodes), out


def test_status_lists_every_part_up_and_both_web_nodes_are_healthy(bed: Bed) -> None:
    code, report = status(bed)
    names = [p["name"] for p in report["parts"]]
    assert names == ["redis", "postgresql", "edge", "media-1", "media-2",
                     "core", "web-1", "web-2"], names
    assert code == 0 and report["up"], json.dumps(report, indent=2)
    said = hotline(bed.env, "cluster", "status")  # for a person: a line per part
    assert said.returncode == 0 and said.stdout.startswith("cluster: up"), said.stdout
    for part in report["parts"]:
        assert f"  {part['name']:11} up " in said.stdout, said.stdout
    for process in bed.plan.processes:
        if process.web_port:
            health = fetch_health(process.address, process.web_port)
            assert health is not None and health["ok"] and health["role"] == "web", health


async def test_calls_through_the_edge_land_on_both_nodes_and_the_ivr_answers(
        bed: Bed) -> None:
    settings = bed.settings
    before = counts(settings)
    results = await calls(settings, 2, first=500)
    assert all(r.answered and r.ok for r in results), [r.stderr for r in results]
    after = counts(settings)
    assert all(after[n] - before[n] == 1 for n in after), (before, after)

    engine = make_engine(bed.database_url)
    sessions = make_session_factory(engine)
    kinds: list[str] = []
    try:
        async with asyncio.timeout(30):
            while True:  # the core writes the consultation once the call has ended
                found = [c for n in (500, 501)
                         for c in await find_consultations(sessions, phone=f"1390000{n:04d}")]
                kinds = [step["kind"] for c in found for step in c.steps]
                if any(c.ended_at is not None for c in found) and "ivr_connected" in kinds:
                    break
                await asyncio.sleep(0.2)  # polling the database, bounded by the timeout
    except TimeoutError:
        pytest.fail(f"no ended consultation with the IVR's steps within 30 s: {kinds}")
    finally:
        await engine.dispose()


def test_down_leaves_no_process(bed: Bed) -> None:
    _, report = status(bed)
    pids = [p["pid"] for p in report["parts"] if p.get("pid")]
    assert len(pids) == 7, report  # redis, edge, two nodes, three role processes
    stopped = hotline(bed.env, "cluster", "down", timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert [pid for pid in pids if is_alive(pid)] == []
    root = bed.settings.asterisk.root_dir
    assert pids_in_root(root) == [] and mounts_under(root) == []
    code, after = status(bed)
    assert code == 3 and not any(p["up"] for p in after["parts"] if p["name"] != "postgresql")
