"""The cluster's plan file (hotline/cluster/plan.py): written by ``hotline cluster up``, read
back by every verb, and refused with a message naming the entry when it cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hotline.cluster import plan as plans
from hotline.cluster import processes
from hotline.cluster.plan import Plan, PlanError, RoleProcess
from hotline.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path)


def test_the_default_plan_round_trips_with_every_process_on_its_own_address(
        settings: Settings) -> None:
    made = plans.default_plan(settings, "postgresql+asyncpg://u:p@127.0.0.1:5432/h")
    path = made.save()
    assert path == settings.state_dir / "cluster" / "cluster.json"
    assert path.stat().st_mode & 0o077 == 0  # the URL may hold a password
    loaded = plans.load(settings)
    assert loaded == made
    addresses = [p.address for p in loaded.processes] + [loaded.redis_address]
    addresses += [n.address for n in settings.edge.nodes + settings.edge.queue_nodes]
    assert len(set(addresses)) == len(addresses), addresses
    assert [(p.name, p.role) for p in loaded.processes] == [
        ("control", "control"), ("control-2", "control"), ("ivr-1", "ivr"), ("ivr-2", "ivr"),
        ("web-1", "web"), ("web-2", "web")]  # control first: it migrates the database; then
    # the standby control (it waits for the lease)
    assert loaded.ivr_workers() == ["127.0.0.8:9092", "127.0.0.9:9092"]  # the dialplan's list
    assert all(p.env.get("HOTLINE_EDGE__CONTROL_LINKS") == "true"  # a link per media node
               for p in loaded.processes if p.role in ("control", "ivr"))
    # An IVR worker's /healthz on a port of its own (a worker runs no web app).
    workers = [p for p in loaded.processes if p.role == "ivr"]
    assert [(p.web_port, p.health_port) for p in workers] == [(None, 9093), (None, 9093)]
    env = processes.environment(loaded, workers[0], settings)
    assert env["HOTLINE_AUDIOSOCKET__HEALTH_PORT"] == "9093"


def test_the_default_cluster_has_the_city_wide_queue_and_desks_act_on_it(
        settings: Settings) -> None:
    """Issue 16's default cluster: a queue node and its standby (so a caller on either media
    node reaches any signed-in agent); the web nodes' [ami] is the queue node (sign-in and
    pause), control's and the IVR workers' the first media node (control's call tracker
    must not run at a queue node); a plan's media_node may name a queue node."""
    assert [(q.name, q.address) for q in settings.edge.queue_nodes] == [
        ("queue-1", "127.0.0.12"), ("queue-2", "127.0.0.13")]
    made = plans.default_plan(settings, "postgresql://x")
    ami = {p.name: (env["HOTLINE_AMI__HOST"], env["HOTLINE_AMI__PORT"]) for p in made.processes
           if (env := processes.environment(made, p, settings))}
    assert ami == {"control": ("127.0.0.2", "5038"), "control-2": ("127.0.0.2", "5038"),
                   "ivr-1": ("127.0.0.2", "5038"), "ivr-2": ("127.0.0.2", "5038"),
                   "web-1": ("127.0.0.12", "5038"), "web-2": ("127.0.0.12", "5038")}
    on_standby = RoleProcess("web-3", "web", "127.0.0.14", web_port=8080, media_node="queue-2")
    assert processes.environment(made, on_standby, settings)["HOTLINE_AMI__HOST"] == "127.0.0.13"
    plans.check(Plan(made.directory, made.redis_address, made.redis_port, made.database_url,
                     [*made.processes, on_standby]), settings, made.directory)
    # Without a queue node (queue_nodes = []), every process's [ami] is the first media node.
    alone = settings.model_copy(update={"edge": settings.edge.model_copy(
        update={"queue_nodes": []})})
    web = next(p for p in made.processes if p.role == "web")
    assert processes.environment(made, web, alone)["HOTLINE_AMI__HOST"] == "127.0.0.2"


def test_no_plan_yet_is_none(settings: Settings) -> None:
    assert plans.load(settings) is None


def write(settings: Settings, data: object) -> None:
    directory = settings.state_dir / "cluster"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cluster.json").write_text(json.dumps(data))


def base(processes: list[dict[str, object]]) -> dict[str, object]:
    return {"redis": {"address": "127.0.0.4", "port": 6390}, "database_url": "postgresql://x",
            "processes": processes}


CORE = {"name": "core", "role": "core", "address": "127.0.0.5", "audiosocket_port": 9092}


@pytest.mark.parametrize(("processes", "said"), [
    ([CORE, {**CORE, "audiosocket_port": 9093}], "process names must differ"),
    ([{**CORE, "address": "10.0.0.5"}], "not a loopback address"),
    ([{**CORE, "media_node": "media-9"}], "no media or queue node 'media-9'"),
    ([{"name": "web-1", "role": "web", "address": "127.0.0.6", "web_port": 8080}],
     "no process of the plan serves AudioSocket"),
    ([{**CORE, "colour": "red"}], "unexpected keyword"),
])
def test_a_plan_that_cannot_be_used_is_refused_with_the_reason(
        settings: Settings, processes: list[dict[str, object]], said: str) -> None:
    write(settings, base(processes))
    with pytest.raises(PlanError, match=said):
        plans.load(settings)


def test_a_plan_that_is_not_json_is_refused(settings: Settings) -> None:
    (settings.state_dir / "cluster").mkdir(parents=True)
    (settings.state_dir / "cluster" / "cluster.json").write_text("{")
    with pytest.raises(PlanError, match="not JSON"):
        plans.load(settings)


def test_a_process_added_to_the_file_is_started_with_the_others(settings: Settings) -> None:
    """Data-driven: one more entry (an IVR worker) is one more process of the plan."""
    made = plans.default_plan(settings, "postgresql://x")
    grown = Plan(made.directory, made.redis_address, made.redis_port, made.database_url,
                 [*made.processes, RoleProcess("ivr-3", "ivr", "127.0.0.11",
                                               audiosocket_port=9092)])
    grown.save()
    loaded = plans.load(settings)
    assert loaded is not None and [p.name for p in loaded.processes][-1] == "ivr-3"
    assert loaded.log_file(loaded.processes[-1]) == (
        settings.state_dir / "cluster" / "processes" / "ivr-3" / "log" / "hotline.log")
