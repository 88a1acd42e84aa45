"""The test bed's supervisor: the role processes of the plan started again when they exit
without ``hotline cluster down``, as systemd's ``Restart=`` does on real machines
(deploy/systemd/hotline@.service).

``hotline cluster up`` starts it (``hotline cluster supervise``, detached, its pid file, log
and state under ``<cluster>/supervisor/``) once every process serves; a second ``up`` keeps
the running one. Every second it checks each process of the plan (hotline/liveness.py: the
recorded process itself, not a pid that merely exists). One that has exited is started
again after a growing delay (1 s, 2 s, 4 s ... at most 30 s: RestartSec, doubled per exit of
the last 60 s); the fifth exit within 60 s ends the restarts of that process (systemd's
StartLimitBurst / StartLimitIntervalSec) with a log line, and ``cluster status`` shows the
count of restarts and "gave up". A process started again (by ``cluster up``) after the
supervisor gave up is watched afresh. The supervisor is not the processes' parent (``up``
started them), so it cannot see how they exited: every exit counts, as with
``Restart=always``; ``cluster down`` stops the supervisor first, so nothing it stops comes
back.

A process that stops pinging is hung (hotline/cluster/watchdog.py): it is aborted and then
started again like one that exited.

A control that held the lease is started again only once the lease is no longer its own and
another control of the plan has taken it (or, at the latest, twice the lease's ttl after the
exit): it comes back as the standby instead of racing the standby for the lease.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from crm.storage.private_files import SERVICE_UMASK, open_private, private_dir, write_private
from hotline.cluster import processes, watchdog
from hotline.cluster.lease_holder import holder_pid, lease_holder
from hotline.cluster.plan import Plan, RoleProcess
from hotline.liveness import Recorded, check_recorded, process_info
from hotline.settings import Settings

log = logging.getLogger(__name__)

TICK_S = 1.0
"""How often every process is checked."""
READY_S = 30.0
"""Seconds the supervisor has to say it watches, after ``cluster up`` started it."""
STOP_S = 10.0
"""Seconds it has to exit after SIGTERM before it is killed."""
ABORT_S = 5.0
"""Seconds a hung process has to exit after SIGABRT (its stacks written) before SIGKILL."""
ARGV = ("hotline.cli", "cluster", "supervise")


@dataclass(frozen=True)
class RestartPolicy:
    """systemd's Restart= with RestartSec, StartLimitBurst and StartLimitIntervalSec, and a
    delay that doubles with each exit of the interval (capped)."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    burst: int = 5
    interval_s: float = 60.0


@dataclass
class Restarts:
    """One process's exits and restarts under a policy (times from a monotonic clock)."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    exits: list[float] = field(default_factory=list)
    """When it exited, within the policy's interval."""
    restarts: int = 0
    gave_up: bool = False

    def exited(self, now: float) -> float | None:
        """Count an exit at ``now``: the delay before the next start, or None when this is
        the burst's last exit of the interval (given up)."""
        self.exits = [t for t in self.exits if now - t < self.policy.interval_s] + [now]
        if len(self.exits) >= self.policy.burst:
            self.gave_up = True
            return None
        return min(self.policy.first_delay_s * 2 ** (len(self.exits) - 1),
                   self.policy.max_delay_s)

    def start_again(self) -> None:
        """It was started again by someone else (``cluster up``): watched afresh."""
        self.exits, self.gave_up = [], False


def directory(plan: Plan) -> Path:
    return plan.directory / "supervisor"


def pid_file(plan: Plan) -> Path:
    return directory(plan) / "supervisor.pid"


def state_file(plan: Plan) -> Path:
    return directory(plan) / "state.json"


def log_file(plan: Plan) -> Path:
    return directory(plan) / "supervisor.log"


def running_pid(plan: Plan) -> int | None:
    """The supervisor's pid while it runs (the recorded process itself: its start time and
    command line), else None."""
    try:
        recorded = Recorded.parse(pid_file(plan).read_text())
    except FileNotFoundError:
        return None
    if recorded is None:
        return None
    info = process_info(recorded.pid)
    if info is None or info.dead or (recorded.start_ticks is not None
                                     and info.start_ticks != recorded.start_ticks):
        return None
    return recorded.pid if all(word in info.argv for word in ARGV) else None


def start(plan: Plan) -> str:
    """Start the supervisor unless it runs; what was done, in a few words. Returns once it
    has written that it watches the plan's processes."""
    pid = running_pid(plan)
    if pid is not None:
        return f"already running (pid {pid})"
    private_dir(directory(plan))
    state_file(plan).unlink(missing_ok=True)
    with open_private(log_file(plan), "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *ARGV], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, umask=SERVICE_UMASK)
    write_private(pid_file(plan), Recorded.of(proc.pid).render())
    deadline = time.monotonic() + READY_S
    while read_state(plan).get("pid") != proc.pid:
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            pid_file(plan).unlink(missing_ok=True)
            raise processes.ProcessError(
                f"the supervisor did not start (see {log_file(plan)}): exit "
                f"{proc.returncode}")
        time.sleep(0.1)  # polling another process's readiness, bounded by the deadline
    return f"started (pid {proc.pid}; log {log_file(plan)})"


def stop(plan: Plan) -> str:
    """Stop the supervisor (SIGTERM, then SIGKILL); what was done, in a few words."""
    pid = running_pid(plan)
    pid_file(plan).unlink(missing_ok=True)
    if pid is None:
        return "was not running"

    def exited() -> bool:
        info = process_info(pid)
        return info is None or info.dead

    return processes.terminate(pid, STOP_S, exited, poll=0.05)


def read_state(plan: Plan) -> dict[str, Any]:
    try:
        data = json.loads(state_file(plan).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def annotate(parts: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    """Add to the status ``parts`` of the plan's processes their restarts (and "gave up");
    the supervisor's own status."""
    pid = running_pid(plan)
    watched = read_state(plan).get("processes", {}) if pid is not None else {}
    for part in parts:
        mine = watched.get(part["name"])
        if mine is None:
            continue
        part["restarts"] = mine["restarts"]
        if mine["gave_up"]:
            part["gave_up"] = True
            part["health"] += (f"; supervisor gave up after {mine['exits']} exits in "
                               f"{RestartPolicy().interval_s:.0f} s (start it with "
                               "`hotline cluster up`)")
    return {"running": pid is not None, "pid": pid, "log": str(log_file(plan))}


@dataclass
class Watched:
    process: RoleProcess
    restarts: Restarts
    pid: int | None
    """The pid it runs (or last ran) as."""
    launched: processes.Launched | None = None
    """Started by the supervisor and not yet serving."""
    launched_at: float = 0.0
    due: float | None = None
    """When it is to be started again (monotonic), while it waits to be."""
    exited_at: float = 0.0
    pinged_at: float | None = None
    """Its last watchdog ping (monotonic), once it sent one as this pid."""


class Supervisor:
    def __init__(self, plan: Plan, base: Settings, policy: RestartPolicy) -> None:
        self.plan, self.base = plan, base
        self.watched = [Watched(p, Restarts(policy), self._recorded_pid(p))
                        for p in plan.processes]
        self.children: list[subprocess.Popen[bytes]] = []
        private_dir(directory(plan))
        self.pings: watchdog.PingListener | None = None
        try:
            self.pings = watchdog.PingListener(plan.directory)
        except OSError as exc:
            log.warning("supervisor: cannot listen for watchdog pings (%s): a hung process "
                        "is not noticed", exc)

    def _recorded_pid(self, process: RoleProcess) -> int | None:
        try:
            recorded = Recorded.parse(processes.pid_file(self.plan, process).read_text())
        except FileNotFoundError:
            return None
        return recorded.pid if recorded else None

    def check(self, now: float) -> None:
        """One round: every process looked at once."""
        self.children = [c for c in self.children if c.poll() is None]  # reaped
        self._read_pings(now)
        for one in self.watched:
            self._check(one, now)
        self.save()

    def _read_pings(self, now: float) -> None:
        if self.pings is None:
            return
        by_pid = {one.pid: one for one in self.watched if one.pid is not None}
        for pid, message in self.pings.drain():
            one = by_pid.get(pid)
            if one is not None and ("WATCHDOG=1" in message or "READY=1" in message):
                one.pinged_at = now

    def _hung(self, one: Watched, now: float) -> bool:
        return one.pinged_at is not None and now - one.pinged_at > watchdog.WATCHDOG_S

    def _abort(self, one: Watched, now: float, pid: int) -> None:
        """A process that stopped pinging: SIGABRT (its stacks to its log), SIGKILL if that
        does not end it, then started again like any exit."""
        silent = now - (one.pinged_at or now)
        processes.pid_file(self.plan, one.process).unlink(missing_ok=True)
        said = processes.terminate(
            pid, ABORT_S, lambda: check_recorded(Recorded(pid)) is not None,
            first=signal.SIGABRT)
        one.pinged_at = None
        self._exited(one, now, f"hung: no watchdog ping for {silent:.0f} s; {said}; its "
                     f"stacks are in {self.plan.log_file(one.process)}")

    def _check(self, one: Watched, now: float) -> None:
        name = one.process.name
        if one.launched is not None:
            self._starting(one, now)
            return
        pid, stale = processes.live_pid(self.plan, one.process)
        if pid is not None:
            if pid != one.pid or one.due is not None or one.restarts.gave_up:
                if one.due is not None or one.restarts.gave_up:
                    log.info("supervisor: %s runs again (pid %s), started by someone else",
                             name, pid)
                    one.restarts.start_again()
                one.pid, one.due, one.pinged_at = pid, None, None
            elif self._hung(one, now):
                self._abort(one, now, pid)
            return
        if one.restarts.gave_up or one.due is not None:
            if one.due is not None and now >= one.due and not self._lease_pending(one, now):
                self._launch(one, now)
            return
        self._exited(one, now, f"{stale or 'not running'}")

    def _exited(self, one: Watched, now: float, why: str) -> None:
        delay = one.restarts.exited(now)
        one.exited_at = now
        policy = one.restarts.policy
        if delay is None:
            log.error("supervisor: %s exited (%s), %d times in %.0f s: gave up; it stays "
                      "down until `hotline cluster up` starts it", one.process.name, why,
                      len(one.restarts.exits), policy.interval_s)
            return
        one.due = now + delay
        log.warning("supervisor: %s exited (%s); starting it again in %.0f s", one.process.name,
                    why, delay)

    def _lease_pending(self, one: Watched, now: float) -> bool:
        """For a control: whether to wait for another control to take the lease first (the
        lease still names the exited process, or nobody holds it while another control of
        the plan runs), at most twice the ttl after the exit."""
        if one.process.role != "control":
            return False
        ttl_s = self.base.bus.control_lease_ms / 1000
        if now - one.exited_at > 2 * ttl_s:
            return False
        try:
            holder = lease_holder(self.plan, self.base.bus.stream)
        except redis.RedisError:
            return False
        if holder is None:
            return any(w is not one and w.process.role == "control"
                       and processes.live_pid(self.plan, w.process)[0] is not None
                       for w in self.watched)
        return one.pid is not None and holder_pid(holder) == one.pid

    def _launch(self, one: Watched, now: float) -> None:
        if processes.live_pid(self.plan, one.process)[0] is not None:
            return  # started by someone else meanwhile: seen at the next round
        # A SIGTERM (cluster down) only ends the loop (run's handler): the process is
        # recorded before the supervisor exits, so down stops it. (Not blocked here: a
        # child would inherit the blocked signal and ignore down's SIGTERM.)
        one.launched = processes.launch(self.plan, one.process, self.base)
        self.children.append(one.launched.proc)
        one.pid, one.due, one.launched_at = one.launched.proc.pid, None, now
        one.restarts.restarts += 1
        log.info("supervisor: %s started again (pid %s, restart %d)", one.process.name,
                 one.pid, one.restarts.restarts)

    def _starting(self, one: Watched, now: float) -> None:
        assert one.launched is not None
        try:
            serving = processes.serving_since(self.plan, one.process, one.launched)
        except processes.ProcessError:
            code = one.launched.proc.returncode
            one.launched = None
            self._exited(one, now, f"exit {code} during start-up; see "
                         f"{self.plan.log_file(one.process)}")
            return
        if serving:
            log.info("supervisor: %s serves again (pid %s)", one.process.name, one.pid)
            one.launched = None
        elif now - one.launched_at > processes.START_TIMEOUT:
            one.launched = None
            said = processes.stop(self.plan, one.process)
            self._exited(one, now, f"not serving within {processes.START_TIMEOUT:.0f} s: "
                         f"{said}")

    def save(self) -> None:
        write_private(state_file(self.plan), json.dumps({
            "pid": os.getpid(),
            "processes": {w.process.name: {
                "pid": w.pid, "restarts": w.restarts.restarts, "gave_up": w.restarts.gave_up,
                "exits": len(w.restarts.exits), "pinging": w.pinged_at is not None,
                "state": "gave up" if w.restarts.gave_up else "waiting to start"
                if w.due is not None else "starting" if w.launched else "watched"}
                for w in self.watched}}, indent=2) + "\n")


def run(plan: Plan, base: Settings, policy: RestartPolicy | None = None) -> int:
    """``hotline cluster supervise``: watch until SIGTERM or SIGINT."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    supervisor = Supervisor(plan, base, policy or RestartPolicy())
    supervisor.save()
    log.info("supervisor: watching %s (pid %s)",
             ", ".join(p.name for p in plan.processes), os.getpid())
    while not stopping.wait(TICK_S):
        try:
            supervisor.check(time.monotonic())
        except Exception:  # a round that failed (a full disk, say) is tried again
            log.exception("supervisor: a round failed; trying again in %.0f s", TICK_S)
    if supervisor.pings is not None:
        supervisor.pings.close()
    log.info("supervisor: stopped; the processes are left as they are")
    return 0
