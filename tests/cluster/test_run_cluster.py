"""Issue 16, the test bed on one machine: ``hotline cluster up`` (as ``make run-cluster``
runs it) from a temporary state directory starts Redis, the SIP edge (real Kamailio), two
real Asterisk media nodes from the one root, and the role processes of the default plan
(control linking both nodes' AMI and a standby control, two IVR workers the dialplan tries
in turn, two web nodes, real ``hotline serve --role``) against a PostgreSQL database of the
test's own. Two silent SIPp callers go through the edge and land one on each node; each is
greeted by an IVR worker,
which routes it to the agent queue over its AMI link to that caller's node (the route reaches
the dialplan: the caller waits in that node's queue, ``ivr_route`` is ``agent``), one
consultation each, whose IVR steps name the caller's node; every part reports up, the status
names the control that holds the lease; ``down`` leaves no process.

Every process of the plan gets its own address in 127.0.18.0/24 and free ports. Every wait is
for a condition, bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from crm.consultations.service import find_consultations
from crm.storage.db import make_engine, make_session_factory
from hotline.asterisk.host import is_alive, mounts_under, pids_in_root
from hotline.cluster.plan import Plan, default_processes
from hotline.edge.settings import MediaNode
from hotline.liveness import fetch_health
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings, free_tcp_port
from hotline.tools.sipp import free_udp_port, place_call
from tests.cluster.edge_bed import _skip_unless_possible, at_edge, counts, node_cli, wait_for
from tests.conftest import _create_or_drop, _postgres_url

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(300)]

NET = "127.0.18"
UP_S = 240.0
"""Bound for ``hotline cluster up`` (two Asterisks, Kamailio, two IVR workers loading
speech)."""
QUEUED_S = 60.0
"""Bound for a silent caller to be greeted and routed to the queue."""
HELD_S = QUEUED_S + 60
"""Bound for a caller's SIPp (it stays on until Asterisk hangs up)."""


@dataclass
class Bed:
    settings: Settings
    env: dict[str, str]
    plan: Plan
    up_output: str
    database_url: str
    others_in_root: set[int]
    """Processes in the Asterisk root before `up` (e.g. the session's test bed)."""


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
           "HOTLINE_SPEECH__PREWARM_PROMPTS": "false",
           # The callers leave the queue unanswered: no callbacks dialled back to them.
           "HOTLINE_CALLBACKS__ENABLED": "false"}
    settings = asterisk_test_settings(state)  # the secrets every part shares
    settings = settings.model_copy(update={"edge": settings.edge.model_validate(edge)})
    _skip_unless_possible(settings)
    processes = [dataclasses.replace(  # the default plan, on the test's addresses and ports
        p, address=f"{NET}.{p.address.rsplit('.', 1)[1]}",
        web_port=p.web_port and free_tcp_port(f"{NET}.{p.address.rsplit('.', 1)[1]}"),
        audiosocket_port=p.audiosocket_port
        and free_tcp_port(f"{NET}.{p.address.rsplit('.', 1)[1]}"),
        health_port=p.health_port and free_tcp_port(f"{NET}.{p.address.rsplit('.', 1)[1]}"))
        for p in default_processes()]
    plan = Plan(state / "cluster", f"{NET}.4", free_tcp_port(f"{NET}.4"), database_url,
                processes)
    plan.save()  # the cluster's settings file, as `up` would generate it
    others = set(pids_in_root(settings.asterisk.root_dir))
    try:
        started = hotline(env, "cluster", "up", "--seed-demo", timeout=UP_S)
        assert started.returncode == 0, started.stdout + started.stderr
        yield Bed(settings, env, plan, started.stdout, database_url, others)
    finally:
        hotline(env, "cluster", "down", timeout=120)


def waiting_in_queue(settings: Settings, node: str) -> int:
    """Callers waiting in the node's queues (its own, with no queue node in the plan)."""
    return sum(int(n) for n in re.findall(r" has (\d+) calls? ",
                                          node_cli(settings, node, "queue show")))


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
                     "control", "control-2", "ivr-1", "ivr-2", "web-1", "web-2"], names
    assert code == 0 and report["up"], json.dumps(report, indent=2)
    assert report["control_lease"] == "held by control", report["control_lease"]
    health = {p["name"]: p["health"] for p in report["parts"]}
    assert health["control"] == "ok (holds the control lease)", health
    assert health["control-2"] == "ok (standby, lease held by control)", health
    said = hotline(bed.env, "cluster", "status")  # for a person: a line per part
    assert said.returncode == 0 and said.stdout.startswith("cluster: up"), said.stdout
    assert "  control lease: held by control\n" in said.stdout, said.stdout
    for part in report["parts"]:
        assert f"  {part['name']:11} up " in said.stdout, said.stdout
    for process in bed.plan.processes:
        if process.web_port:
            health = fetch_health(process.address, process.web_port)
            assert health is not None and health["ok"] and health["role"] == "web", health


async def test_calls_on_both_nodes_are_served_by_the_ivr_workers(bed: Bed) -> None:
    settings = bed.settings
    before = counts(settings)
    numbers = ["13900000500", "13900000501"]
    callers = [asyncio.ensure_future(place_call(  # silent callers, on until Asterisk hangs up
        at_edge(settings), caller_number=n, hold_ms=int(HELD_S * 1000), wait_for_bye=True))
        for n in numbers]
    engine = make_engine(bed.database_url)
    sessions = make_session_factory(engine)
    found: dict[str, list[Any]] = {}

    async def consultations(done: Callable[[list[Any]], bool], within: float,
                            what: str) -> None:
        """Poll the database until ``done`` holds for both callers' consultations."""
        try:
            async with asyncio.timeout(within):
                while True:
                    for number in numbers:
                        found[number] = await find_consultations(sessions, phone=number)
                    if all(done(found[n]) for n in numbers):
                        return
                    await asyncio.sleep(0.2)  # polling the database, bounded by the timeout
        except TimeoutError:
            pytest.fail(f"{what} within {within:.0f} s: " + repr(
                {n: [(c.call_id, c.ended_at, c.ivr_route, [step["kind"] for step in c.steps])
                     for c in found.get(n, [])] for n in numbers}))

    try:
        await consultations(lambda cs: any(step["kind"] == "route" for c in cs
                                           for step in c.steps),
                            QUEUED_S, "not both callers routed by an IVR worker")
        for node in counts(settings):  # the dialplan read the route: a caller in its queue
            await wait_for(lambda node=node: waiting_in_queue(settings, node) == 1, 20,
                           f"a caller in {node}'s queue")
    finally:
        for node in counts(settings):  # the caller's own BYE would need the edge's route set
            await asyncio.to_thread(node_cli, settings, node, "channel request hangup all")
        results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True),
                                         30)
    try:
        assert all(not isinstance(r, BaseException) and r.answered and r.hung_up_by == "remote"
                   for r in results), results
        after = counts(settings)
        assert all(after[n] - before[n] == 1 for n in after), (before, after)  # one each
        await consultations(lambda cs: len(cs) == 1 and cs[0].ended_at is not None, 30,
                            "not one ended consultation per caller")
        for number in numbers:
            consultation = found[number][0]
            kinds = [step["kind"] for step in consultation.steps]
            # "queued" once: media-1's from control's [ami] link, media-2's from control's
            # link to it (no queue node in the plan: a queue tracker per media node).
            for kind in ("ivr_connected", "route", "queued"):
                assert kinds.count(kind) == 1, (number, kind, kinds)
            # Set by a worker over its AMI link to the caller's node: the dialplan read it.
            assert consultation.ivr_route == "agent", (number, consultation.ivr_route)
        # The IVR's steps name the node the call is on (the worker learnt it from the call's
        # CallStarted): one caller on each node, so one call's steps name media-2.
        nodes: dict[str, Any] = {}
        for number in numbers:
            named = {step["detail"].get("node") for step in found[number][0].steps
                     if step["kind"] in ("ivr_connected", "prompt", "route")}
            assert len(named) == 1, (number, found[number][0].steps)
            nodes[number] = named.pop()
        assert sorted(str(n) for n in nodes.values()) == ["media-1", "media-2"], nodes
    finally:
        await engine.dispose()


def test_down_leaves_no_process(bed: Bed) -> None:
    _, report = status(bed)
    pids = [p["pid"] for p in report["parts"] if p.get("pid")]
    assert len(pids) == 10, report  # redis, edge, two nodes, six role processes
    stopped = hotline(bed.env, "cluster", "down", timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert [pid for pid in pids if is_alive(pid)] == []
    root = bed.settings.asterisk.root_dir
    assert set(pids_in_root(root)) - bed.others_in_root == set()
    assert bed.others_in_root or mounts_under(root) == []
    code, after = status(bed)
    assert code == 3 and not any(p["up"] for p in after["parts"] if p["name"] != "postgresql")
