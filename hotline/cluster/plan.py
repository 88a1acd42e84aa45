"""What the test bed runs and where: the cluster's settings file.

The plan lists the role processes (``hotline serve --role ROLE``), each on its own loopback
address with its own ports and state directory, in start order; Redis and the database; the
SIP edge and media nodes come from ``[edge]``. ``hotline cluster up`` writes the default plan
to ``<state_dir>/cluster/cluster.json`` the first time and reads that file from then on, so a
new part (a queue node, a standby control, a third IVR worker) is one more entry there or
in ``default_processes`` below.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hotline.settings import Settings

PLAN_FILE = "cluster.json"


class PlanError(ValueError):
    """The plan file cannot be used (its message says which entry and why)."""


@dataclass(frozen=True)
class RoleProcess:
    """One ``hotline serve --role ROLE`` process of the cluster."""

    name: str
    role: str
    address: str
    web_port: int | None = None
    """Its desk/console/API (and /healthz) port; None for a role with no web app."""
    audiosocket_port: int | None = None
    """The AudioSocket port it serves calls on (the media nodes connect here)."""
    health_port: int | None = None
    """An IVR worker's /healthz and /metrics port (``[audiosocket] health_port``)."""
    media_node: str = ""
    """The node (of ``[edge] nodes`` or ``queue_nodes``) whose AMI it logs in to ('': a web
    node's is the queue node when there is one, every other's the first media node;
    hotline.cluster.processes.ami_node)."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra HOTLINE_* settings for this process alone."""


@dataclass(frozen=True)
class Plan:
    directory: Path
    redis_address: str
    redis_port: int
    database_url: str
    processes: list[RoleProcess]

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_address}:{self.redis_port}/0"

    def process_dir(self, process: RoleProcess) -> Path:
        return self.directory / "processes" / process.name

    def log_file(self, process: RoleProcess) -> Path:
        return self.process_dir(process) / "log" / "hotline.log"

    def serving_audiosocket(self) -> RoleProcess:
        """The process the media nodes' dialplan connects AudioSocket to."""
        for process in self.processes:
            if process.audiosocket_port is not None:
                return process
        raise PlanError("no process of the plan serves AudioSocket (a core or ivr role)")

    def ivr_workers(self) -> list[str]:
        """Where the media nodes' dialplan connects AudioSocket, tried in turn: every
        process of the plan that serves it, ``address:port``."""
        return [f"{p.address}:{p.audiosocket_port}" for p in self.processes
                if p.audiosocket_port is not None]

    def save(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / PLAN_FILE
        data = {"redis": {"address": self.redis_address, "port": self.redis_port},
                "database_url": self.database_url,
                "processes": [asdict(p) for p in self.processes]}
        path.write_text(json.dumps(data, indent=2) + "\n")
        path.chmod(0o600)  # the database URL may hold a password
        return path


CLUSTER_LINKS = {"HOTLINE_EDGE__CONTROL_LINKS": "true"}
"""Control links every media node's AMI (a call tracker each); an IVR worker sets channel
variables over a link to the node the call is on (hotline/roles/node_links.py)."""


def default_processes() -> list[RoleProcess]:
    """Control (first: it migrates the database) and a standby control (it waits for the
    control lease and takes over when the first is gone), two IVR workers the media nodes'
    dialplan tries in turn, and two web nodes (their ``[ami]`` at the queue node: the
    queue node and its standby are Asterisks of ``[edge] queue_nodes``, started with the
    media nodes)."""
    return [
        RoleProcess("control", "control", "127.0.0.5", env=dict(CLUSTER_LINKS)),
        RoleProcess("control-2", "control", "127.0.0.10", env=dict(CLUSTER_LINKS)),
        RoleProcess("ivr-1", "ivr", "127.0.0.8", audiosocket_port=9092, health_port=9093,
                    env=dict(CLUSTER_LINKS)),
        RoleProcess("ivr-2", "ivr", "127.0.0.9", audiosocket_port=9092, health_port=9093,
                    env=dict(CLUSTER_LINKS)),
        RoleProcess("web-1", "web", "127.0.0.6", web_port=8080),
        RoleProcess("web-2", "web", "127.0.0.7", web_port=8080),
    ]


def default_plan(settings: Settings, database_url: str) -> Plan:
    return Plan(cluster_dir(settings), "127.0.0.4", 6390, database_url, default_processes())


def cluster_dir(settings: Settings) -> Path:
    return settings.state_dir / "cluster"


def load(settings: Settings) -> Plan | None:
    """The plan file under the state directory, or None when there is none yet."""
    directory = cluster_dir(settings)
    path = directory / PLAN_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise PlanError(f"{path}: not JSON ({exc})") from None
    try:
        processes = [RoleProcess(**entry) for entry in data["processes"]]
        plan = Plan(directory, str(data["redis"]["address"]), int(data["redis"]["port"]),
                    str(data["database_url"]), processes)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"{path}: {exc!r} (expected redis, database_url, processes)") from None
    check(plan, settings, path)
    return plan


def check(plan: Plan, settings: Settings, where: Path) -> None:
    names = [p.name for p in plan.processes]
    if len(set(names)) != len(names):
        raise PlanError(f"{where}: process names must differ ({names})")
    nodes = {n.name for n in settings.edge.nodes + settings.edge.queue_nodes}
    for p in plan.processes:
        if not p.address.startswith("127."):
            raise PlanError(f"{where}: process {p.name}: {p.address} is not a loopback address")
        if p.media_node and p.media_node not in nodes:
            raise PlanError(f"{where}: process {p.name}: no media or queue node "
                            f"{p.media_node!r} (nodes: {', '.join(sorted(nodes))})")
    plan.serving_audiosocket()
