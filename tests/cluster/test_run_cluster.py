"""Issue 16, the test bed on one machine: ``hotline cluster up`` (as ``make run-cluster``
runs it) from a temporary state directory starts Redis, the SIP edge (real Kamailio), two
real Asterisk media nodes and the default ``[edge]``'s queue node and its standby from the
one root, and the role processes of the default plan (control linking every node's AMI and a
standby control, two IVR workers the dialplan tries in turn, two web nodes, real ``hotline
serve --role``) against a PostgreSQL database of the test's own. An agent's SIPp phone
registers through the edge's phones' port and the agent signs in, pauses and is ready again
at a web node's desk (acting on the queue node); two silent SIPp callers go through the edge
and land one on each media node; each is greeted by an IVR worker, which routes it to a
person over its AMI link to that caller's node; the media node hands it to the queue node,
where the agent answers it; one consultation each, whose IVR steps name the caller's node
and whose queue steps the queue node; every part reports up, the status names the control
that holds the lease; ``down`` leaves no process.

Every process and node of the plan gets its own address in 127.0.18.0/24 and free ports.
Every wait is for a condition, bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench.cluster_pops import Desk
from crm.consultations.service import find_consultations
from crm.storage.db import make_engine, make_session_factory
from hotline.asterisk.host import is_alive, mounts_under, pids_in_root
from hotline.cluster.plan import Plan, default_processes
from hotline.edge.settings import EdgeSettings, MediaNode
from hotline.liveness import fetch_health
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings, free_tcp_port
from hotline.tools.phones import AgentPhone, at_phones_port
from hotline.tools.sipp import CallResult, free_udp_port, place_call
from tests.cluster.cluster_cli import hotline, own_database
from tests.cluster.edge_bed import _skip_unless_possible, at_edge, counts, node_cli, wait_for

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(300)]

NET = "127.0.18"
UP_S = 240.0
"""Bound for ``hotline cluster up`` (two Asterisks, Kamailio, two IVR workers loading
speech)."""
QUEUED_S = 60.0
"""Bound for a silent caller to be greeted and routed to the queue."""
HELD_S = QUEUED_S + 60
"""Bound for a caller's SIPp (it stays on until Asterisk hangs up)."""
SIGN_IN_S = 30.0
"""Bound for the desk's sign-in, pause and ready to reach the queue nodes."""
AGENT, EXTENSION = "agent1", "2001"
"""The demo data's agent (``--seed-demo``) and the desk phone it signs in with."""
TALK_MS = 1500
"""How long the agent talks to each caller before hanging up."""


@dataclass
class Bed:
    settings: Settings
    env: dict[str, str]
    plan: Plan
    up_output: str
    database_url: str
    others_in_root: set[int]
    """Processes in the Asterisk root before `up` (e.g. the session's test bed)."""


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with own_database("hotline_test_cluster") as url:
        yield url


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Bed]:
    state = tmp_path_factory.mktemp("cluster-state")
    def moved(name: str, address: str) -> MediaNode:  # a default node, on the test's net
        here = f"{NET}.{address.rsplit('.', 1)[1]}"
        return MediaNode(name=name, address=here, sip_port=free_udp_port(host=here),
                         ami_port=free_tcp_port(here), rtp_start=21000, rtp_end=21099)

    default = EdgeSettings()  # the media nodes, the queue node and its standby
    nodes = [moved(n.name, n.address) for n in default.nodes]
    queue = [moved(q.name, q.address) for q in default.queue_nodes]
    edge = {"address": f"{NET}.1", "port": free_udp_port(host=f"{NET}.1"),
            "sources": ["127.0.0.1"], "nodes": [n.model_dump() for n in nodes],
            "queue_nodes": [q.model_dump() for q in queue],
            "phone_port": free_udp_port(host=f"{NET}.1"), "phone_sources": ["127.0.0.1"],
            "probe_interval": 1, "reply_timeout": 1.0}
    env = {**os.environ, "HOTLINE_STATE_DIR": str(state),
           "HOTLINE_DATABASE__URL": database_url,
           "HOTLINE_EDGE__ADDRESS": edge["address"], "HOTLINE_EDGE__PORT": str(edge["port"]),
           "HOTLINE_EDGE__SOURCES": json.dumps(edge["sources"]),
           "HOTLINE_EDGE__NODES": json.dumps(edge["nodes"]),
           "HOTLINE_EDGE__QUEUE_NODES": json.dumps(edge["queue_nodes"]),
           "HOTLINE_EDGE__PHONE_PORT": str(edge["phone_port"]),
           "HOTLINE_EDGE__PHONE_SOURCES": json.dumps(edge["phone_sources"]),
           "HOTLINE_EDGE__PROBE_INTERVAL": "1", "HOTLINE_EDGE__REPLY_TIMEOUT": "1.0",
           "HOTLINE_SPEECH__PREWARM_PROMPTS": "false",
           # Callbacks are not what this bed tests: none dialled back.
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
    first, standby = edge.queue_nodes
    assert f"queue node {first.name}: SIP udp {first.address}:{first.sip_port}" in out, out
    assert f"its standby {standby.name}: SIP udp {standby.address}:" in out, out
    assert f"agents' phones: register at udp {edge.address}:{edge.phone_port}" in out, out


def test_status_lists_every_part_up_and_both_web_nodes_are_healthy(bed: Bed) -> None:
    code, report = status(bed)
    names = [p["name"] for p in report["parts"]]
    assert names == ["redis", "postgresql", "edge", "media-1", "media-2", "queue-1", "queue-2",
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


def member_line(settings: Settings, node: str, extension: str) -> str | None:
    """The phone's line in the main queue's ``queue show`` on ``node`` (None: no member)."""
    shown = node_cli(settings, node, f"queue show {settings.asterisk.queue_name}")
    return next((line for line in shown.splitlines()
                 if re.search(rf"\bPJSIP/{extension}\b", line)), None)


async def test_callers_on_both_media_nodes_reach_an_agent_signed_in_at_a_desk(bed: Bed) -> None:
    """The default cluster's city-wide queue: agent1's phone registers through the edge's
    phones' port (the edge sends it to queue-1); agent1 signs in at web-2's desk (web nodes'
    [ami] is the queue node: QueueAdd on queue-1, mirrored on its standby by control), pauses
    and is ready again there. Two silent callers through the edge land one on each media
    node, are greeted by an IVR worker, routed to a person over its AMI link to the caller's
    node, handed to queue-1 and answered by agent1 one at a time; each pops on the desk; one
    ended consultation each, answered by agent1, its IVR steps naming its media node and its
    queue steps queue-1."""
    settings = bed.settings
    queue_node, standby = (q.name for q in settings.edge.queue_nodes)
    web = [p for p in bed.plan.processes if p.role == "web"][-1]
    before = counts(settings)
    numbers = ["13900000500", "13900000501"]
    desk = Desk(f"http://{web.address}:{web.web_port}")
    callers: list[asyncio.Future[CallResult]] = []

    def paused() -> bool | None:
        line = member_line(settings, queue_node, EXTENSION)
        return None if line is None else "paused" in line

    try:
        await desk.sign_in(settings.web.demo_password)
        # The phone registers after the desk is open: its state change is what the desk hears.
        async with AgentPhone(at_phones_port(settings), EXTENSION, hold_ms=TALK_MS):
            try:
                await desk.first(lambda m: m.get("type") == "status"
                                 and m["agent"]["status"] == "available", SIGN_IN_S)
            except TimeoutError:
                pytest.fail(f"the desk never said available: {desk.messages}; on "
                            f"{queue_node}: {member_line(settings, queue_node, EXTENSION)}")
            for node in (queue_node, standby):
                await wait_for(lambda node=node: member_line(settings, node, EXTENSION)
                               is not None, SIGN_IN_S, f"{EXTENSION} a member on {node}")
            await desk.pause(True)
            await wait_for(lambda: paused() is True, SIGN_IN_S, f"paused on {queue_node}")
            await desk.pause(False)
            await wait_for(lambda: paused() is False, SIGN_IN_S, f"ready on {queue_node}")
            callers = [asyncio.ensure_future(place_call(  # silent, on until Asterisk hangs up
                at_edge(settings), caller_number=n, hold_ms=int(HELD_S * 1000),
                wait_for_bye=True)) for n in numbers]
            results = await asyncio.wait_for(asyncio.gather(*callers), HELD_S + 10)
    finally:
        if not all(c.done() for c in callers):  # failed above: the callers' SIPp must end
            for node in counts(settings):
                await asyncio.to_thread(node_cli, settings, node, "channel request hangup all")
            await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 30)
        await desk.close()
    assert all(r.answered and r.hung_up_by == "remote" for r in results), results
    after = counts(settings)
    assert all(after[n] - before[n] == 1 for n in after), (before, after)  # one on each node

    engine = make_engine(bed.database_url)
    sessions = make_session_factory(engine)
    found: dict[str, list[Any]] = {}
    try:
        async with asyncio.timeout(30):
            while not all(len(found.get(n, [])) == 1 and found[n][0].ended_at is not None
                          and found[n][0].agent_login for n in numbers):
                for number in numbers:
                    found[number] = await find_consultations(sessions, phone=number)
                await asyncio.sleep(0.2)  # polling the database, bounded by the timeout
    except TimeoutError:
        pytest.fail("not one ended consultation per caller, answered: " + repr(
            {n: [(c.call_id, c.ended_at, c.agent_login, [step["kind"] for step in c.steps])
                 for c in found.get(n, [])] for n in numbers}))
    finally:
        await engine.dispose()
    nodes: dict[str, Any] = {}
    for number in numbers:
        consultation = found[number][0]
        kinds = [step["kind"] for step in consultation.steps]
        # Each once: the queue steps from control's link to the queue node (media nodes
        # hand their callers over and queue none themselves).
        for kind in ("ivr_connected", "route", "queued", "agent_answered"):
            assert kinds.count(kind) == 1, (number, kind, kinds)
        assert consultation.ivr_route == "agent", (number, consultation.ivr_route)
        assert consultation.agent_login == AGENT, (number, consultation.agent_login)
        assert {step["detail"].get("node") for step in consultation.steps
                if step["kind"] in ("queued", "agent_answered")} == {queue_node}, kinds
        # The IVR's steps name the node the call is on (the worker learnt it from the call's
        # CallStarted).
        named = {step["detail"].get("node") for step in consultation.steps
                 if step["kind"] in ("ivr_connected", "prompt", "route")}
        assert len(named) == 1, (number, consultation.steps)
        nodes[number] = named.pop()
    assert sorted(str(n) for n in nodes.values()) == ["media-1", "media-2"], nodes
    popped = {m["call"]["call_id"] for _, m in desk.messages if m.get("type") == "pop"}
    assert popped == {found[n][0].call_id for n in numbers}, popped


def test_down_leaves_no_process(bed: Bed) -> None:
    _, report = status(bed)
    pids = [p["pid"] for p in report["parts"] if p.get("pid")]
    assert len(pids) == 12, report  # redis, edge, four nodes, six role processes
    stopped = hotline(bed.env, "cluster", "down", timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert [pid for pid in pids if is_alive(pid)] == []
    root = bed.settings.asterisk.root_dir
    assert set(pids_in_root(root)) - bed.others_in_root == set()
    assert bed.others_in_root or mounts_under(root) == []
    code, after = status(bed)
    assert code == 3 and not any(p["up"] for p in after["parts"] if p["name"] != "postgresql")
