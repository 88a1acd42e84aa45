"""``hotline cluster up|down|status``: the test bed on one machine, in order.

Up: Redis, the database, the queue node and its standby, the media nodes and the SIP edge
(hotline/edge/cluster.py), then every role process of the plan in its order (the first,
control or a core, migrates the database before the web nodes open it), each waited for
until it serves; then the supervisor (hotline/cluster/supervisor.py: a role process that
exits is started again); then where each part is.
Down: the supervisor first, then the reverse. Status: each part's liveness (its process and
its health), and the restarts."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from typing import Any

from hotline.bus.redis_server import RedisServer, RedisServerError
from hotline.cluster import plan as plans
from hotline.cluster import postgres, processes, supervisor
from hotline.cluster.lease_holder import name_holder, stop_order
from hotline.cluster.plan import Plan
from hotline.edge import cluster as edge_cluster
from hotline.edge import kamailio, nodes
from hotline.settings import Settings

Progress = Callable[[str], None]


class ClusterError(RuntimeError):
    """The cluster could not be started; the message says which part and why."""


def plan_of(settings: Settings, *, create: bool) -> Plan | None:
    """The plan file under the state directory; with ``create``, the default one (written
    there) when there is none yet."""
    found = plans.load(settings)
    if found is not None or not create:
        return found
    directory = plans.cluster_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    made = plans.default_plan(settings, postgres.database_url(settings, directory))
    made.save()
    return made


def cluster_settings(settings: Settings, plan: Plan) -> Settings:
    """The settings the media nodes and the edge run with: state under the cluster's
    directory, AudioSocket at the processes that serve it (a list of IVR workers tried in
    turn when there are several), prompts and models shared."""
    serving = plan.serving_audiosocket()
    speech = settings.speech.model_copy(update={
        "prompt_cache_dir": settings.speech.prompt_cache_dir
        or settings.state_dir / "prompt-cache",
        "installed_models_dir": settings.speech.installed_models_dir
        or settings.state_dir / "speech-models"})
    audiosocket = settings.audiosocket.model_copy(update={
        "host": serving.address, "port": serving.audiosocket_port,
        "workers": plan.ivr_workers() if len(plan.ivr_workers()) > 1 else []})
    return settings.model_copy(update={"state_dir": plan.directory, "speech": speech,
                                       "audiosocket": audiosocket})


def redis_server(plan: Plan) -> RedisServer:
    return RedisServer(plan.directory / "redis", port=plan.redis_port, host=plan.redis_address)


def up(settings: Settings, progress: Progress = print, *, seed_demo: bool = False) -> int:
    plan = plan_of(settings, create=True)
    assert plan is not None
    base = cluster_settings(settings, plan)
    secrets = settings.state_dir / "secrets.toml"
    if secrets.exists() and not (plan.directory / "secrets.toml").exists():
        shutil.copyfile(secrets, plan.directory / "secrets.toml")
        (plan.directory / "secrets.toml").chmod(0o600)
    redis = redis_server(plan)
    if not redis.answers():
        redis.start()
        redis._process = None
    if not postgres.accepts_connections(plan.database_url):
        raise ClusterError(f"PostgreSQL does not accept connections at "
                           f"{postgres.where(plan.database_url)}")
    edge_cluster.up(base, progress=lambda message: None)
    for process in plan.processes:
        processes.start(plan, process, base)
    if seed_demo:  # control or the core (first) has migrated the database
        from crm.demo_data import seed_demo as seed

        added = asyncio.run(seed(plan.database_url, agent_password=settings.web.demo_password))
        progress(f"demo data: {added} records added (logins agent1, agent2, supervisor1, "
                 f"admin; password {settings.web.demo_password})")
    progress(f"supervisor: {supervisor.start(plan)}")  # restarts a process that exits
    progress(summary(settings, plan))
    return 0


def down(settings: Settings, progress: Progress = print) -> int:
    plan = plan_of(settings, create=False)
    if plan is None:
        progress("cluster: nothing to stop (no cluster plan under "
                 f"{plans.cluster_dir(settings)})")
        return 0
    base = cluster_settings(settings, plan)
    progress(f"supervisor: {supervisor.stop(plan)}")  # first: it would start them again
    for process in stop_order(plan, base.bus.stream):  # the lease holder after standbys
        progress(f"{process.name}: {processes.stop(plan, process)}")
    edge_cluster.down(base, progress=progress)
    try:
        redis_server(plan).stop()
        progress("redis stopped")
    except RedisServerError as exc:
        progress(f"redis: {exc}")
        return 1
    return 0


def status(settings: Settings) -> dict[str, Any]:
    """Every part: ``up`` true when its process runs and its health says it serves."""
    plan = plan_of(settings, create=False)
    if plan is None:
        return {"parts": [], "up": False, "plan": None}
    base = cluster_settings(settings, plan)
    redis = redis_server(plan)
    parts: list[dict[str, Any]] = []
    answers = redis.answers()
    parts.append({"name": "redis", "where": plan.redis_url, "pid": redis._pid(),
                  "up": answers, "health": "ok (PING)" if answers else "does not answer"})
    accepts = postgres.accepts_connections(plan.database_url)
    parts.append({"name": "postgresql", "where": postgres.where(plan.database_url),
                  "up": accepts,
                  "health": "ok (accepts connections)" if accepts else "refuses connections"})
    edge = kamailio.status(base)
    flags = {}
    if edge["running"]:
        flags = {d.name: d.flags for d in kamailio.destinations(base)}
    parts.append({"name": "edge", "where": edge["sip"], "pid": edge["pid"],
                  "up": bool(edge["running"]), "health": f"dispatcher {flags}"
                  if edge["running"] else "not running", "log": edge["log"]})
    for media in base.edge.nodes + base.edge.queue_nodes:
        node = nodes.status(base, media.name)
        probed = flags.get(media.name, "")
        parts.append({"name": media.name, "where": node["sip"], "pid": node["pid"],
                      "up": bool(node["running"]) and probed.startswith("A"),
                      "health": f"dispatcher flags {probed or '-'}",
                      "log": str(nodes.log_dir(base, media.name))})
    for process in plan.processes:
        mine = processes.state(plan, process)
        parts.append({**mine.as_dict(), "where": _where(process), "up": mine.serving,
                      "log": str(plan.log_file(process))})
    lease = name_holder(parts, plan, base.bus.stream) if answers else "unknown (no Redis)"
    return {"parts": parts, "up": all(p["up"] for p in parts),
            "plan": str(plan.directory / plans.PLAN_FILE), "control_lease": lease,
            "supervisor": supervisor.annotate(parts, plan)}


def _where(process: plans.RoleProcess) -> str:
    if process.web_port is not None:
        return f"http://{process.address}:{process.web_port}/"
    health = (f", health http://{process.address}:{process.health_port}/healthz"
              if process.health_port is not None else "")
    return f"AudioSocket {process.address}:{process.audiosocket_port}{health}"


def summary(settings: Settings, plan: Plan) -> str:
    base = cluster_settings(settings, plan)
    edge = base.edge
    lines = ["", "The cluster is up.", "",
             f"  SIP edge (Kamailio):  udp {edge.address}:{edge.port}  (call "
             f"{base.asterisk.hotline_number} here)   log "
             f"{kamailio.EdgeFiles.of(base).log_file}"]
    for media in edge.nodes:
        lines.append(f"  media node {media.name}: SIP udp {media.address}:{media.sip_port}, "
                     f"AMI {media.address}:{media.ami_port}   logs "
                     f"{nodes.log_dir(base, media.name)}")
    for n, queue in enumerate(edge.queue_nodes):
        lines.append(f"  {'queue node' if n == 0 else 'its standby'} {queue.name}: SIP udp "
                     f"{queue.address}:{queue.sip_port}, AMI {queue.address}:{queue.ami_port}"
                     f"   logs {nodes.log_dir(base, queue.name)}")
    if edge.queue_nodes:
        lines.append(f"  agents' phones: register at udp {edge.address}:{edge.phone_port} "
                     f"(the edge sends them to {edge.queue_nodes[0].name}); desks sign in "
                     f"on the web nodes, which act on {edge.queue_nodes[0].name}")
    for process in plan.processes:
        if process.web_port is not None:
            url = f"http://{process.address}:{process.web_port}"
            where = f"desk {url}/desk  console {url}/console"
        else:
            where = _where(process)
        lines.append(f"  {process.name} (--role {process.role}): {where}   log "
                     f"{plan.log_file(process)}")
    lines += [f"  Redis:       {plan.redis_url}   log {plan.directory / 'redis' / 'redis.log'}",
              f"  PostgreSQL:  {postgres.where(plan.database_url)}",
              f"  Plan (edit to add processes): {plan.directory / plans.PLAN_FILE}",
              "  Status: .venv/bin/hotline cluster status     Stop everything: make stop", ""]
    return "\n".join(lines)


def command(settings: Settings, action: str, *, seed_demo: bool = False,
            as_json: bool = False) -> int:
    try:
        if action == "up":
            return up(settings, seed_demo=seed_demo)
        if action == "down":
            return down(settings)
        if action == "supervise":  # started by `up`
            return supervise(settings)
        report = status(settings)
    except (plans.PlanError, postgres.DatabaseError, processes.ProcessError,
            RedisServerError, ClusterError) as exc:
        print(f"hotline cluster {action}: {exc}")
        return 1
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render_status(report))
    return 0 if report["up"] else 3


def supervise(settings: Settings) -> int:
    plan = plan_of(settings, create=False)
    if plan is None:
        print(f"hotline cluster supervise: no cluster plan under {plans.cluster_dir(settings)}")
        return 1
    return supervisor.run(plan, cluster_settings(settings, plan))


def supervisor_line(report: dict[str, Any]) -> str:
    """The supervisor's line of the status: whether it runs, each restarted process's
    count of restarts, and those it gave up on."""
    mine = report["supervisor"]
    if not mine["running"]:
        return "  supervisor: NOT running (a process that exits stays down)"
    restarted = ", ".join(f"{p['name']} {p['restarts']}" for p in report["parts"]
                          if p.get("restarts"))
    gave_up = ", ".join(p["name"] for p in report["parts"] if p.get("gave_up"))
    return (f"  supervisor: running (pid {mine['pid']}); restarts: {restarted or 'none'}"
            + (f"; gave up on {gave_up}" if gave_up else ""))


def render_status(report: dict[str, Any]) -> str:
    """One line per part, as ``hotline status`` says it: up or down, pid, where, health."""
    if report["plan"] is None:
        return "cluster: not set up (no plan; `hotline cluster up` writes one)"
    lines = [f"cluster: {'up' if report['up'] else 'NOT all up'} (plan {report['plan']})"]
    if report.get("control_lease"):
        lines.append(f"  control lease: {report['control_lease']}")
    if report.get("supervisor"):
        lines.append(supervisor_line(report))
    for part in report["parts"]:
        pid = f"pid {part['pid']}" if part.get("pid") else "no process"
        lines.append(f"  {part['name']:11} {'up' if part['up'] else 'DOWN':4}  {pid:11}  "
                     f"{part['where']}  {part['health']}")
    return "\n".join(lines)
