"""Start, stop and inspect the edge's Kamailio: a process of the project, not the system
service.

Kamailio runs in the foreground (``-DD -E``) as a child we start in its own session, with its
log in ``<state_dir>/edge/kamailio.log``, its pid in our pid file and its control socket in
our runtime directory; it drops to the ``kamailio`` user when the Debian package made one.
Before starting, the configuration must pass ``kamailio -c`` and the edge's port be free.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from typing import Any

from hotline.asterisk import host
from hotline.asterisk.errors import AsteriskError, PortInUseError
from hotline.edge.config import EdgeFiles, install
from hotline.settings import Settings

log = logging.getLogger(__name__)

USER = "kamailio"
SHM_MB = 32
PKG_MB = 4
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
CHECK_TIMEOUT = 15.0


class EdgeError(AsteriskError):
    """The SIP edge could not be configured, started, stopped or asked."""


@dataclass(frozen=True)
class Destination:
    """One media node as the dispatcher sees it: ``flags`` A(ctive)/I(nactive),
    P(robing), X (not probing), D(isabled)."""

    uri: str
    name: str
    flags: str

    @property
    def active(self) -> bool:
        return self.flags.startswith("A")


def binary() -> str:
    found = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/sbin")
    if found is None:
        raise EdgeError("kamailio is not installed: apt-get install kamailio "
                        "(scripts/bootstrap.sh installs it)")
    return found


def _kamcmd() -> str:
    found = shutil.which("kamcmd") or shutil.which("kamcmd", path="/usr/sbin:/sbin")
    if found is None:
        raise EdgeError("kamcmd is not installed (it comes with the kamailio package)")
    return found


def _group() -> int | None:
    try:
        return grp.getgrnam(USER).gr_gid
    except KeyError:
        return None


def argv(files: EdgeFiles) -> list[str]:
    drop = ["-u", USER, "-g", USER] if _group() is not None and os.geteuid() == 0 else []
    return [binary(), "-f", str(files.config), "-DD", "-E", "-m", str(SHM_MB), "-M",
            str(PKG_MB), "-Y", str(files.run_dir), *drop]


def check_config(files: EdgeFiles) -> None:
    """``kamailio -c``: raise EdgeError with Kamailio's own words if the config is bad."""
    result = subprocess.run([binary(), "-c", "-f", str(files.config)], capture_output=True,
                            text=True, errors="replace", timeout=CHECK_TIMEOUT, check=False)
    if result.returncode != 0:
        detail = "\n".join(line for line in result.stderr.splitlines()
                           if "ERROR" in line or "CRITICAL" in line)
        raise EdgeError(f"the edge's configuration {files.config} fails `kamailio -c`:\n"
                        f"{detail or result.stderr[-2000:]}")


def pid(files: EdgeFiles) -> int | None:
    """The running edge's main pid (from our pid file, checked against /proc), or None."""
    try:
        found = int(files.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if not host.is_alive(found) or str(files.config) not in host.process_argv(found):
        return None
    return found


def up(settings: Settings) -> int:
    """Render, check and start the edge; return its pid. A running edge is left as it is."""
    files = EdgeFiles.of(settings)
    running = pid(files)
    if running is not None:
        return running
    install(settings, files, _group())
    check_config(files)
    edge = settings.edge
    try:
        host.check_port_free(edge.address, edge.port, socket.SOCK_DGRAM, "edge SIP")
    except PortInUseError as exc:
        raise EdgeError(str(exc)) from None
    files.ctl_socket.unlink(missing_ok=True)
    with files.log_file.open("ab") as out:
        proc = subprocess.Popen(argv(files), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True)
    files.pid_file.write_text(f"{proc.pid}\n")
    until = host.deadline(START_TIMEOUT)
    while not _answers(files):
        if proc.poll() is not None or host.remaining(until) == 0:
            _stop_group(proc.pid)
            files.pid_file.unlink(missing_ok=True)
            raise EdgeError(f"Kamailio did not start (see {files.log_file}):\n{_log_tail(files)}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.1)
    log.info("edge up: Kamailio pid %d on udp %s:%d", proc.pid, edge.address, edge.port)
    return proc.pid


def down(settings: Settings) -> None:
    """Stop the edge (its whole process group) and remove its pid file and socket."""
    files = EdgeFiles.of(settings)
    leader = pid(files) or _orphaned_group(files)
    if leader is not None:
        _stop_group(leader)
    files.pid_file.unlink(missing_ok=True)
    files.ctl_socket.unlink(missing_ok=True)


def _orphaned_group(files: EdgeFiles) -> int | None:
    """The pid file's process group when its main process died but workers of this edge
    (our config on their command line) still hold the port."""
    try:
        leader = int(files.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    members = [m for m in _group_members(leader) if str(files.config) in host.process_argv(m)]
    return leader if members else None


def _stop_group(leader: int) -> None:
    """SIGTERM to Kamailio's session (main process and workers), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader, sig)
        if host.wait_exit(leader, STOP_TIMEOUT if sig == signal.SIGTERM else 2.0):
            break
    with contextlib.suppress(ChildProcessError):
        os.waitpid(leader, os.WNOHANG)
    for member in _group_members(leader):
        host.kill(member)
        host.wait_exit(member, 2.0)


def _group_members(leader: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == leader and host.is_alive(int(entry)):
                    members.append(int(entry))
    return members


def _answers(files: EdgeFiles) -> bool:
    if not files.ctl_socket.exists():
        return False
    try:
        rpc(files, "core.uptime")
    except EdgeError:
        return False
    return True


def rpc(files: EdgeFiles, *command: str) -> str:
    """Run one RPC command over the edge's control socket (``kamcmd``)."""
    try:
        result = subprocess.run([_kamcmd(), "-s", f"unix:{files.ctl_socket}", *command],
                                capture_output=True, text=True, errors="replace", timeout=5,
                                check=False)
    except subprocess.TimeoutExpired:
        raise EdgeError(f"kamcmd {' '.join(command)} did not answer within 5 s") from None
    if result.returncode != 0:
        raise EdgeError(f"kamcmd {' '.join(command)} failed: {result.stderr or result.stdout}")
    return result.stdout


_DEST = re.compile(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+).*?DUID:\s*(\S*)", re.S)


def destinations(settings: Settings) -> list[Destination]:
    """The media nodes as the dispatcher sees them now (``dispatcher.list``)."""
    text = rpc(EdgeFiles.of(settings), "dispatcher.list")
    return [Destination(uri=m.group(1), name=m.group(3), flags=m.group(2))
            for m in _DEST.finditer(text)]


def status(settings: Settings) -> dict[str, Any]:
    files = EdgeFiles.of(settings)
    running = pid(files)
    report: dict[str, Any] = {
        "running": running is not None, "pid": running,
        "sip": f"udp {settings.edge.address}:{settings.edge.port}",
        "config": str(files.config), "log": str(files.log_file),
    }
    if running is not None:
        with contextlib.suppress(EdgeError):
            report["nodes"] = {d.name: d.flags for d in destinations(settings)}
    return report


def _log_tail(files: EdgeFiles, lines: int = 15) -> str:
    try:
        text = files.log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
