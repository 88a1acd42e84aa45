"""The test bed's supervisor (hotline/cluster/supervisor.py) with real processes: ``hotline
cluster up`` of a small plan (Kamailio, one media node and no queue node, Redis, the test
PostgreSQL server; control, a standby control, one IVR worker: the plan must serve
AudioSocket) starts the supervisor. The control lease holder is killed with SIGKILL: the
standby takes the lease, and the killed control runs again (a new pid) as the standby; the
IVR worker, killed at the same moment, serves again; the status counts the restarts. A
second ``up`` keeps the one supervisor; ``down`` stops it first, then the standby before
the holder, and leaves no process behind. The seconds from the kill to the takeover and to
each return are printed (``-s``).

Every process and node gets its own address in 127.0.19.0/24 (bench/cluster.py's block; no
other test uses it) and free ports. Every wait is for a condition, bounded."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from hotline.asterisk.host import is_alive, mounts_under, pids_in_root
from hotline.cluster import processes, supervisor, watchdog
from hotline.cluster.lease_holder import holder_pid, lease_holder
from hotline.cluster.plan import CLUSTER_LINKS, Plan, RoleProcess
from hotline.edge.settings import MediaNode
from hotline.roles.control_lease import STANDBY_LINE
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings, free_tcp_port
from hotline.tools.sipp import free_udp_port
from tests.cluster.cluster_cli import hotline, own_database
from tests.cluster.edge_bed import _skip_unless_possible, wait_for

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(400)]

NET = "127.0.19"
UP_S = 240.0
"""Bound for ``hotline cluster up`` (an Asterisk, Kamailio, an IVR worker loading speech)."""
LEASE_MS = 3000
"""A shorter control lease than the default 6 s: the takeover scales with it."""
BACK_S = 60.0
"""Bound for the takeover and the killed control's return (the lease lapses within 4/3 of
its ttl; the supervisor's first delay is 1 s)."""
STREAM = "hotline:call-events"


@dataclass
class Bed:
    settings: Settings
    env: dict[str, str]
    plan: Plan
    up_output: str
    others_in_root: set[int]


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with own_database("hotline_test_supervisor") as url:
        yield url


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Bed]:
    state = tmp_path_factory.mktemp("supervised-cluster")
    media = MediaNode(name="media-1", address=f"{NET}.2",
                      sip_port=free_udp_port(host=f"{NET}.2"), ami_port=free_tcp_port(f"{NET}.2"),
                      rtp_start=22000, rtp_end=22099)
    edge = {"address": f"{NET}.1", "port": free_udp_port(host=f"{NET}.1"),
            "sources": ["127.0.0.1"], "nodes": [media.model_dump()], "queue_nodes": []}
    env = {**os.environ, "HOTLINE_STATE_DIR": str(state),
           "HOTLINE_DATABASE__URL": database_url,
           "HOTLINE_EDGE__ADDRESS": edge["address"], "HOTLINE_EDGE__PORT": str(edge["port"]),
           "HOTLINE_EDGE__SOURCES": json.dumps(edge["sources"]),
           "HOTLINE_EDGE__NODES": json.dumps(edge["nodes"]), "HOTLINE_EDGE__QUEUE_NODES": "[]",
           "HOTLINE_BUS__CONTROL_LEASE_MS": str(LEASE_MS),
           "HOTLINE_SPEECH__PREWARM_PROMPTS": "false", "HOTLINE_CALLBACKS__ENABLED": "false"}
    settings = asterisk_test_settings(state)
    settings = settings.model_copy(update={"edge": settings.edge.model_validate(edge)})
    _skip_unless_possible(settings)
    plan = Plan(state / "cluster", f"{NET}.4", free_tcp_port(f"{NET}.4"), database_url, [
        RoleProcess("control", "control", f"{NET}.5", env=dict(CLUSTER_LINKS)),
        RoleProcess("control-2", "control", f"{NET}.10", env=dict(CLUSTER_LINKS)),
        RoleProcess("ivr-1", "ivr", f"{NET}.8", audiosocket_port=free_tcp_port(f"{NET}.8"),
                    health_port=free_tcp_port(f"{NET}.8"), env=dict(CLUSTER_LINKS))])
    plan.save()
    others = set(pids_in_root(settings.asterisk.root_dir))
    try:
        started = hotline(env, "cluster", "up", timeout=UP_S)
        assert started.returncode == 0, started.stdout + started.stderr
        yield Bed(settings, env, plan, started.stdout, others)
    finally:
        hotline(env, "cluster", "down", timeout=120)


def status(bed: Bed) -> tuple[int, dict[str, Any]]:
    done = hotline(bed.env, "cluster", "status", "--json")
    return done.returncode, json.loads(done.stdout)


def pid_of(bed: Bed, name: str) -> int | None:
    process = next(p for p in bed.plan.processes if p.name == name)
    return processes.live_pid(bed.plan, process)[0]


def holder(bed: Bed) -> int | None:
    value = lease_holder(bed.plan, STREAM)
    return None if value is None else holder_pid(value)


async def test_a_hung_ivr_worker_is_aborted_and_serves_again(bed: Bed) -> None:
    """SIGSTOP stands for a hang (the process lives, its event loop no longer turns): its
    watchdog pings stop, and the supervisor aborts it and starts it again."""
    await wait_for(lambda: supervisor.read_state(bed.plan).get("processes", {})
                   .get("ivr-1", {}).get("pinging"), BACK_S,
                   "the supervisor hearing ivr-1's watchdog pings")
    hung = pid_of(bed, "ivr-1")
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)
    back = await wait_for(
        lambda: pid_of(bed, "ivr-1") not in (None, hung)
        and supervisor.read_state(bed.plan)["processes"]["ivr-1"]["state"] == "watched",
        BACK_S + watchdog.WATCHDOG_S, "the hung IVR worker serving again")
    print(f"\nivr-1 stopped (SIGSTOP): serving again as a new process {back:.2f} s later "
          f"(watchdog {watchdog.WATCHDOG_S:.0f} s)")
    assert not is_alive(hung)
    said = supervisor.log_file(bed.plan).read_text()
    assert "supervisor: ivr-1 exited (hung: no watchdog ping for " in said, said
    assert f"killed (pid {hung}: no exit within" in said, said  # a stopped process: SIGKILL


async def test_a_killed_lease_holder_comes_back_as_the_standby(bed: Bed) -> None:
    assert "supervisor: started (pid " in bed.up_output, bed.up_output
    watching = supervisor.running_pid(bed.plan)
    assert watching is not None
    code, report = status(bed)
    assert code == 0 and report["control_lease"] == "held by control", report
    assert report["supervisor"]["running"], report["supervisor"]
    killed, standby = pid_of(bed, "control"), pid_of(bed, "control-2")
    worker = pid_of(bed, "ivr-1")
    assert killed is not None and standby is not None and holder(bed) == killed
    assert worker is not None

    os.kill(killed, signal.SIGKILL)
    os.kill(worker, signal.SIGKILL)  # at once: the supervisor starts each in its own time
    taken = await wait_for(lambda: holder(bed) == standby, BACK_S,
                           "control-2 holding the lease")
    log = bed.plan.log_file(bed.plan.processes[0])
    # Back as the standby: a new process, which stands by for control-2 (the supervisor
    # counts it started once it says so).
    back = await wait_for(
        lambda: pid_of(bed, "control") not in (None, killed)
        and supervisor.read_state(bed.plan)["processes"]["control"]["state"] == "watched",
        BACK_S, "the killed control running again")
    worker_back = await wait_for(
        lambda: pid_of(bed, "ivr-1") not in (None, worker)
        and supervisor.read_state(bed.plan)["processes"]["ivr-1"]["state"] == "watched",
        BACK_S, "the killed IVR worker serving again")
    print(f"\ncontrol lease {LEASE_MS} ms: control-2 held it {taken:.2f} s after the kill; "
          f"control ran again as the standby {taken + back:.2f} s after the kill; ivr-1 "
          f"served again {taken + back + worker_back:.2f} s after it")
    assert f"{STANDBY_LINE} " in log.read_text().split("hotline control up")[-1]
    assert holder(bed) == standby  # it did not take the lease back
    said = supervisor.log_file(bed.plan).read_text()
    assert f"supervisor: control exited (pid {killed} has " in said, said

    code, report = status(bed)
    parts = {p["name"]: p for p in report["parts"]}
    assert code == 0 and report["control_lease"] == "held by control-2", report
    assert parts["control"]["health"] == "ok (standby, lease held by control-2)", parts
    assert (parts["control"]["restarts"], parts["control-2"]["restarts"],
            parts["ivr-1"]["restarts"]) == (1, 0, 2), parts  # ivr-1: hung, then killed
    assert parts["ivr-1"]["up"] and parts["ivr-1"]["health"] == "ok", parts["ivr-1"]
    said = hotline(bed.env, "cluster", "status").stdout
    assert f"  supervisor: running (pid {watching}); restarts: control 1, ivr-1 2\n" in said, said

    again = hotline(bed.env, "cluster", "up", timeout=UP_S)  # keeps the one supervisor
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"supervisor: already running (pid {watching})" in again.stdout, again.stdout
    assert supervisor.running_pid(bed.plan) == watching

    pids = [p["pid"] for p in report["parts"] if p.get("pid")] + [watching]
    assert len(pids) == 7, report  # redis, edge, media-1, three role processes, supervisor
    stopped = hotline(bed.env, "cluster", "down", timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout.startswith(f"supervisor: stopped (pid {watching})"), stopped.stdout
    assert "killed" not in stopped.stdout, stopped.stdout  # each stopped by its SIGTERM
    # The standby first: it took no lease from control-2 while that stopped.
    assert stopped.stdout.index("\ncontrol: ") < stopped.stdout.index("\ncontrol-2: ")
    assert "holding the lease" not in log.read_text().split(STANDBY_LINE)[-1]
    assert [pid for pid in pids if is_alive(pid)] == []
    root = bed.settings.asterisk.root_dir
    assert set(pids_in_root(root)) - bed.others_in_root == set()
    assert bed.others_in_root or mounts_under(root) == []
    assert supervisor.running_pid(bed.plan) is None
