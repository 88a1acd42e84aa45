"""One role process of the cluster (``hotline serve --role ROLE``), started detached with its
own state directory, pid file and log, like ``hotline up`` starts the one-box service; alive
only while the recorded process runs (hotline/liveness.py), serving once its health says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crm.storage.private_files import SERVICE_UMASK, open_private, private_dir, write_private
from hotline.cluster import watchdog
from hotline.cluster.plan import Plan, RoleProcess
from hotline.edge.settings import MediaNode
from hotline.liveness import Recorded, check_recorded, describe_health, fetch_health
from hotline.roles.control_lease import STANDBY_LINE
from hotline.settings import Settings

START_TIMEOUT = 120.0
"""Seconds a process has to serve after it was started (a core loads the speech models)."""
STOP_TIMEOUT = 20.0
"""Seconds a process has to exit after SIGTERM before it is killed."""
UP_LINE = {"core": "hotline core up", "web": "hotline web up",
           "control": "hotline control up", "ivr": "hotline ivr up"}
"""What a role logs once every part of it runs (a role without an entry: its health only)."""


class ProcessError(RuntimeError):
    """A role process did not start or serve; the message ends with its last log lines."""


def pid_file(plan: Plan, process: RoleProcess) -> Path:
    return plan.process_dir(process) / "hotline.pid"


def environment(plan: Plan, process: RoleProcess, base: Settings) -> dict[str, str]:
    """The process's settings: the invoking environment (HOTLINE_CONFIG included), the
    cluster's bus, database and media node, and its own address, ports and state."""
    node = ami_node(base, process)
    serving = plan.serving_audiosocket()
    env = {**os.environ,
           "HOTLINE_STATE_DIR": str(plan.process_dir(process)),
           "HOTLINE_BUS__KIND": "redis", "HOTLINE_BUS__REDIS_URL": plan.redis_url,
           "HOTLINE_DATABASE__URL": plan.database_url,
           "HOTLINE_AMI__HOST": node.address, "HOTLINE_AMI__PORT": str(node.ami_port),
           "HOTLINE_AMI__SECRET": base.ami.secret,
           "HOTLINE_AUDIOSOCKET__HOST": process.address,
           "HOTLINE_AUDIOSOCKET__PORT": str(process.audiosocket_port
                                            or serving.audiosocket_port),
           "HOTLINE_AUDIOSOCKET__ALLOWED_PEERS": '["127.0.0.0/8"]',
           "HOTLINE_WEB__HOST": process.address,
           "HOTLINE_ASTERISK__ROOT_DIR": str(base.asterisk.root_dir),
           "HOTLINE_EDGE__NODES_STATE_DIR": str(base.edge.nodes_state_dir or base.state_dir),
           "HOTLINE_SPEECH__PROMPT_CACHE_DIR": str(base.speech.prompt_cache_dir
                                                   or base.state_dir / "prompt-cache"),
           "HOTLINE_SPEECH__INSTALLED_MODELS_DIR": str(base.speech.installed_models_dir
                                                       or base.state_dir / "speech-models")}
    env |= watchdog.process_environment(plan.directory)  # pings for the supervisor
    if process.web_port is not None:
        env["HOTLINE_WEB__PORT"] = str(process.web_port)
    if process.health_port is not None:
        env["HOTLINE_AUDIOSOCKET__HEALTH_PORT"] = str(process.health_port)
    return env | process.env


def ami_node(base: Settings, process: RoleProcess) -> MediaNode:
    """The node whose AMI the process's ``[ami]`` logs in to: the plan's ``media_node``
    when it names one; else, for a web node of a cluster with a queue node, the queue node
    (the desks' sign-in and pause act on the queue agents are rung from); else the first
    media node (control's call tracker and an IVR worker's channel variables are a media
    node's business: a call tracker must never run at a queue node, docs/cluster.md)."""
    every = base.edge.nodes + base.edge.queue_nodes
    named = next((n for n in every if n.name == process.media_node), None)
    if named is not None:
        return named
    if process.role == "web" and base.edge.queue_nodes:
        return base.edge.queue_nodes[0]
    return base.edge.nodes[0]


@dataclass(frozen=True)
class ProcessState:
    name: str
    role: str
    pid: int | None
    serving: bool
    health: str
    """"ok", or what is wrong, in a few words."""
    stale: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "pid": self.pid, "running": self.pid
                is not None, "serving": self.serving, "health": self.health,
                **({"stale": self.stale} if self.stale else {})}


def _recorded(plan: Plan, process: RoleProcess) -> Recorded | None:
    try:
        return Recorded.parse(pid_file(plan, process).read_text())
    except FileNotFoundError:
        return None


def live_pid(plan: Plan, process: RoleProcess) -> tuple[int | None, str | None]:
    """The running process's pid (None when not running) and why a recorded one is stale."""
    recorded = _recorded(plan, process)
    if recorded is None:
        return None, None
    stale = check_recorded(recorded)
    return (recorded.pid, None) if stale is None else (None, stale)


def _listening(address: str, port: int) -> bool:
    """Whether a TCP socket listens on address:port (from /proc/net/tcp: no connection is
    made, so the AudioSocket server sees nothing)."""
    want = "".join(f"{int(octet):02X}" for octet in reversed(address.split("."))) \
        + f":{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] == want and line.split()[3] == "0A" for line in lines)


def _logged_up(plan: Plan, process: RoleProcess, since: int) -> bool:
    """Whether the log says, past byte ``since`` (its size when the process started), that
    every part of the role runs; for a control after the plan's first, also that it waits
    as the standby (the first must be up: it migrates the database), and so for the first
    too while another control of the plan runs (it holds the lease: the first, restarted
    after it died, comes back as the standby)."""
    lines = [UP_LINE[process.role].encode()]
    if process.role == "control" and (process != _first_control(plan) or any(
            live_pid(plan, other)[0] is not None for other in plan.processes
            if other.role == "control" and other != process)):
        lines.append(STANDBY_LINE.encode())
    try:
        with plan.log_file(process).open("rb") as log:
            log.seek(since)
            logged = log.read()
    except FileNotFoundError:
        return False
    return any(line in logged for line in lines)


def _first_control(plan: Plan) -> RoleProcess | None:
    return next((p for p in plan.processes if p.role == "control"), None)


def state(plan: Plan, process: RoleProcess) -> ProcessState:
    pid, stale = live_pid(plan, process)
    if pid is None:
        return ProcessState(process.name, process.role, None, False,
                            f"not running ({stale})" if stale else "not running", stale)
    http_port = process.web_port if process.web_port is not None else process.health_port
    if http_port is not None:  # a web app's, or an IVR worker's health port
        health = fetch_health(process.address, http_port)
        if health is None:
            return ProcessState(process.name, process.role, pid, False,
                                f"http://{process.address}:{http_port}/healthz "
                                "does not answer")
        return ProcessState(process.name, process.role, pid, bool(health.get("ok")),
                            describe_health(health))
    if process.audiosocket_port is not None:  # a plan of before health_port
        if _listening(process.address, process.audiosocket_port):
            return ProcessState(process.name, process.role, pid, True,
                                f"ok (AudioSocket {process.address}:"
                                f"{process.audiosocket_port} listening)")
        return ProcessState(process.name, process.role, pid, False,
                            "AudioSocket not listening")
    return ProcessState(process.name, process.role, pid, True, "ok (runs)")


@dataclass
class Launched:
    """A role process just started: its process (a child of the starter) and where its log
    stood then (what it logs from there on says whether it is up)."""

    proc: subprocess.Popen[bytes]
    since: int


def launch(plan: Plan, process: RoleProcess, base: Settings) -> Launched:
    """Start the process detached (its own session) and record its pid; no waiting."""
    pid_file(plan, process).unlink(missing_ok=True)
    directory = plan.process_dir(process)
    private_dir(directory)
    secrets = base.state_dir / "secrets.toml"  # the same AMI and phone secrets as the nodes
    if secrets.exists() and not (directory / "secrets.toml").exists():
        shutil.copyfile(secrets, directory / "secrets.toml")
        (directory / "secrets.toml").chmod(0o600)
    log_path = plan.log_file(process)
    private_dir(log_path.parent)  # the log names callers: owner only
    since = log_path.stat().st_size if log_path.exists() else 0
    with open_private(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hotline.cli", "serve", "--role", process.role],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=environment(plan, process, base), umask=SERVICE_UMASK)
    write_private(pid_file(plan, process), Recorded.of(proc.pid).render())
    return Launched(proc, since)


def serving_since(plan: Plan, process: RoleProcess, launched: Launched) -> bool:
    """Whether the launched process is up (its log says so and its health agrees); raises
    :class:`ProcessError`, with its last log lines, when it has exited."""
    if launched.proc.poll() is not None:
        pid_file(plan, process).unlink(missing_ok=True)
        raise ProcessError(f"{process.name} (--role {process.role}) exited with "
                           f"{launched.proc.returncode} during start-up; its log ends:\n"
                           + _tail(plan.log_file(process)))
    logged = process.role not in UP_LINE or _logged_up(plan, process, launched.since)
    return logged and state(plan, process).serving


def start(plan: Plan, process: RoleProcess, base: Settings,
          timeout: float = START_TIMEOUT) -> int:
    """Start the process (a running one is kept) and return its pid once it serves."""
    pid, _ = live_pid(plan, process)
    if pid is not None:
        return pid
    launched = launch(plan, process, base)
    deadline = time.monotonic() + timeout
    while not serving_since(plan, process, launched):
        if time.monotonic() > deadline:
            raise ProcessError(f"{process.name} (--role {process.role}) does not serve "
                               f"within {timeout:.0f} s: {state(plan, process).health}; "
                               f"its log ends:\n" + _tail(plan.log_file(process)))
        time.sleep(0.2)  # polling another process's readiness, bounded by the deadline
    return launched.proc.pid


def stop(plan: Plan, process: RoleProcess, timeout: float = STOP_TIMEOUT) -> str:
    """Stop it (SIGTERM, then SIGKILL after ``timeout``); what was done, in a few words."""
    pid, stale = live_pid(plan, process)
    pid_file(plan, process).unlink(missing_ok=True)
    if pid is None:
        return f"was not running ({stale})" if stale else "was not running"
    return terminate(pid, timeout, lambda: check_recorded(Recorded(pid)) is not None)


def terminate(pid: int, timeout: float, exited: Callable[[], bool], poll: float = 0.1,
              first: signal.Signals = signal.SIGTERM) -> str:
    """SIGTERM (or ``first``) ``pid``, then SIGKILL when ``exited()`` is still false
    ``timeout`` seconds later; what was done, in a few words (the role processes and the
    supervisor)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first)
    deadline = time.monotonic() + timeout
    while not exited():
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return f"killed (pid {pid}: no exit within {timeout:.0f} s of {first.name})"
        time.sleep(poll)  # polling another process's exit, bounded by the deadline
    return f"stopped (pid {pid})"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
