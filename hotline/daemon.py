"""Background start and stop of the whole hotline (``hotline up`` / ``hotline down``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from crm.storage.private_files import (
    ASTERISK_UMASK,
    SERVICE_UMASK,
    open_private,
    private_dir,
    umask,
    write_private,
)
from hotline.settings import Settings


class DaemonError(Exception):
    pass


def _pidfile(settings: Settings) -> Path:
    return settings.state_dir / "hotline.pid"


def _logfile(settings: Settings) -> Path:
    return settings.state_dir / "log" / "hotline.log"


def _running_pid(settings: Settings) -> int | None:
    try:
        pid = int(_pidfile(settings).read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def _health(settings: Settings) -> dict | None:
    url = f"http://{settings.web.host}:{settings.web.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        return json.load(exc)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def start_service(settings: Settings, *, timeout: float = 60.0) -> int:
    """Start ``hotline serve`` detached and wait until its web endpoint answers."""
    if (pid := _running_pid(settings)) is not None:
        print(f"hotline service already running (pid {pid})")
        return pid
    log_path = _logfile(settings)
    private_dir(log_path.parent)  # the log names callers: owner only
    with open_private(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hotline.cli", "serve"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=os.environ.copy(),
                                umask=SERVICE_UMASK)
    write_private(_pidfile(settings), str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise DaemonError("hotline service exited during start-up; last log lines:\n"
                              + "\n".join(tail))
        if _health(settings) is not None:
            return proc.pid
        time.sleep(0.2)  # polling an external process's readiness, bounded by the deadline
    raise DaemonError(f"hotline service did not answer on port {settings.web.port} "
                      f"within {timeout:.0f} s; see {log_path}")


def stop_service(settings: Settings, *, timeout: float = 15.0) -> None:
    pid = _running_pid(settings)
    if pid is None:
        _pidfile(settings).unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    _pidfile(settings).unlink(missing_ok=True)


def start_all(settings: Settings, *, with_asterisk: bool = True) -> None:
    if with_asterisk and settings.asterisk.mode == "embedded":
        from hotline.asterisk import process

        with umask(ASTERISK_UMASK):  # Asterisk inherits it: recordings 0640, no others
            process.up(settings)
    pid = start_service(settings)
    health = _health(settings) or {}
    a = settings.asterisk
    phones = "\n".join(f"{'':29}{ext}: {password}"
                       for ext, password in a.agent_passwords.items())
    print(f"""
The hotline is up (service pid {pid}, health: {"ok" if health.get("ok") else health}).

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


def stop_all(settings: Settings) -> None:
    stop_service(settings)
    if settings.asterisk.mode == "embedded":
        from hotline.asterisk import process

        process.down(settings)
    print("hotline stopped")
