"""Background start and stop of the whole hotline (``hotline up`` / ``hotline down``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crm.storage.private_files import (
    ASTERISK_UMASK,
    SERVICE_UMASK,
    open_private,
    private_dir,
    umask,
    write_private,
)
from hotline.liveness import Recorded, check_recorded, describe_health, fetch_health
from hotline.settings import Settings

READY_TIMEOUT = 30.0
"""Seconds ``hotline up`` waits, once the service answers, for it to report healthy (its AMI
login)."""


class DaemonError(Exception):
    pass


def _pidfile(settings: Settings) -> Path:
    return settings.state_dir / "hotline.pid"


def _logfile(settings: Settings) -> Path:
    return settings.state_dir / "log" / "hotline.log"


@dataclass(frozen=True)
class ServiceState:
    """The truth about the service: its live process (if ``hotline up`` started one that
    still runs), what its health endpoint answers, and why a recorded pid does not count."""

    pid: int | None
    health: dict[str, Any] | None
    stale: str | None = None
    """Why the pid file's process is not the running service (exited, zombie, reused)."""

    @property
    def serving(self) -> bool:
        return self.health is not None and bool(self.health.get("ok"))


def _recorded(settings: Settings) -> Recorded | None:
    try:
        return Recorded.parse(_pidfile(settings).read_text())
    except FileNotFoundError:
        return None


def _health(settings: Settings) -> dict[str, Any] | None:
    return fetch_health(settings.web.host, settings.web.port)


def service_state(settings: Settings) -> ServiceState:
    recorded = _recorded(settings)
    stale = None
    pid = None
    if recorded is not None:
        stale = check_recorded(recorded)
        pid = recorded.pid if stale is None else None
    elif _pidfile(settings).exists():
        stale = f"{_pidfile(settings)} holds no pid"
    return ServiceState(pid, _health(settings), stale)


def _wait_health(settings: Settings, until: float, *, ok: bool,
                 proc: subprocess.Popen[bytes] | None = None,
                 pid: int | None = None) -> dict[str, Any] | None:
    """Poll /healthz until it answers (``ok``: until it answers healthy) or ``until`` (a
    monotonic time) passes; stop early when the process has exited."""
    health = None
    while True:
        health = _health(settings)
        if health is not None and (health.get("ok") or not ok):
            return health
        if proc is not None and proc.poll() is not None:
            return health
        if pid is not None and check_recorded(Recorded(pid)) is not None:
            return health
        if time.monotonic() >= until:
            return health
        time.sleep(0.2)  # polling an external process's readiness, bounded by the deadline


def start_service(settings: Settings, *, timeout: float = 60.0) -> int:
    """Start ``hotline serve`` detached and wait until its health endpoint answers; a service
    ``hotline up`` started before that still runs is kept, a dead one replaced."""
    state = service_state(settings)
    if state.pid is not None:
        health = state.health or _wait_health(settings, time.monotonic() + timeout, ok=False,
                                              pid=state.pid)
        if health is None:
            raise DaemonError(
                f"hotline service pid {state.pid} runs but does not answer on "
                f"http://{settings.web.host}:{settings.web.port}/healthz; stop it with "
                f"`hotline down` and see {_logfile(settings)}")
        print(f"hotline service already running (pid {state.pid}, health: "
              f"{describe_health(health)})")
        return state.pid
    if state.stale is not None:
        print(f"hotline service not running: {state.stale}; starting a new one")
        _pidfile(settings).unlink(missing_ok=True)
    if state.health is not None:
        raise DaemonError(
            f"another hotline service (not started by `hotline up` with this state directory) "
            f"answers on port {settings.web.port}: stop it, or set web.port")
    log_path = _logfile(settings)
    private_dir(log_path.parent)  # the log names callers: owner only
    with open_private(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hotline.cli", "serve"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=os.environ.copy(),
                                umask=SERVICE_UMASK)
    write_private(_pidfile(settings), Recorded.of(proc.pid).render())
    health = _wait_health(settings, time.monotonic() + timeout, ok=False, proc=proc)
    if proc.poll() is not None:
        _pidfile(settings).unlink(missing_ok=True)
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise DaemonError("hotline service exited during start-up; last log lines:\n"
                          + "\n".join(tail))
    if health is None:
        raise DaemonError(f"hotline service did not answer on port {settings.web.port} "
                          f"within {timeout:.0f} s; see {log_path}")
    return proc.pid


def stop_service(settings: Settings, *, timeout: float = 15.0) -> str:
    """Stop the service ``hotline up`` started; what was done, in a sentence."""
    state = service_state(settings)
    pid = state.pid
    if pid is None:
        _pidfile(settings).unlink(missing_ok=True)
        said = (f"hotline service was not running ({state.stale}; pid file removed)"
                if state.stale else "hotline service was not running")
        if state.health is not None:
            said += (f"; but a service not started by `hotline up` answers on port "
                     f"{settings.web.port}")
        return said
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    how = "stopped"
    while check_recorded(Recorded(pid)) is None:  # gone or a zombie: stopped
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            how = f"killed (no exit within {timeout:.0f} s of SIGTERM)"
            break
        time.sleep(0.1)  # polling another process's exit, bounded by the deadline
    _pidfile(settings).unlink(missing_ok=True)
    return f"hotline service {how} (pid {pid})"


def start_all(settings: Settings, *, with_asterisk: bool = True) -> int:
    """``hotline up``: the exit status (0 only once the service answers healthy)."""
    if with_asterisk and settings.asterisk.mode == "embedded":
        from hotline.asterisk import process

        with umask(ASTERISK_UMASK):  # Asterisk inherits it: recordings 0640, no others
            process.up(settings)
    try:
        pid = start_service(settings)
    except DaemonError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    health = _wait_health(settings, time.monotonic() + READY_TIMEOUT, ok=True, pid=pid)
    if health is None or not health.get("ok"):
        print(f"hotline: the service (pid {pid}) runs but does not serve: "
              f"{describe_health(health) if health else 'its health endpoint went silent'}; "
              f"see {_logfile(settings)}", file=sys.stderr)
        return 1
    a = settings.asterisk
    phones = "\n".join(f"{'':29}{ext}: {password}"
                       for ext, password in a.agent_passwords.items())
    print(f"""
The hotline is up (service pid {pid}, health: {describe_health(health)}).

  Call it from a softphone: SIP account {a.softphone_user}, password {a.softphone_password},
  server {a.bind_host}:{a.sip_port} (UDP), then dial {a.hotline_number}.
  Or place a scripted call:  .venv/bin/hotline demo-call
  Calls so far:              .venv/bin/hotline consultations list
  Agent desk:                http://{settings.web.host}:{settings.web.port}/desk
                             demo logins agent1 (phone 2001), agent2 (2002), supervisor1,
                             admin; password {settings.web.demo_password}
  Agent phones (SIP account: own password, kept in {settings.state_dir / 'secrets.toml'}):
{phones}
  Asterisk console:          .venv/bin/hotline asterisk cli "core show channels"
  Logs:                      {_logfile(settings)}
  Stop everything:           make stop
""")
    return 0


def stop_all(settings: Settings) -> int:
    print(stop_service(settings))
    if settings.asterisk.mode == "embedded":
        from hotline.asterisk import process

        process.down(settings)
        print("asterisk stopped")
    return 0


def show_status(settings: Settings) -> int:
    """``hotline status``: 0 when the service serves, 3 when it does not run, 1 when it runs
    but is not healthy."""
    state = service_state(settings)
    where = f"http://{settings.web.host}:{settings.web.port}/healthz"
    if state.pid is None:
        print(f"hotline service: not running ({state.stale})" if state.stale
              else "hotline service: not running")
        if state.health is not None:
            print(f"  but a service not started by `hotline up` answers on {where}: "
                  f"{describe_health(state.health)}")
            return 0 if state.serving else 1
        return 3
    if state.health is None:
        print(f"hotline service: pid {state.pid} runs but {where} does not answer")
        return 1
    print(f"hotline service: pid {state.pid}, health {describe_health(state.health)}")
    return 0 if state.serving else 1
