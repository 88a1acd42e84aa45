"""Host-side helpers for running Asterisk: processes, mounts, ports, users.

Everything here is Linux specific and reads /proc; nothing runs at import time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hotline.asterisk.errors import AsteriskError, PortInUseError

MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class Identity:
    user: str
    group: str
    uid: int
    gid: int


def lookup_identity(root: Path, user: str) -> Identity | None:
    """The user and its primary group from ``root``'s /etc/passwd and /etc/group."""
    passwd = _read_colon_file(root / "etc/passwd")
    entry = passwd.get(user)
    if entry is None:
        return None
    uid, gid = int(entry[1]), int(entry[2])
    groups = {int(fields[1]): name for name, fields in _read_colon_file(root / "etc/group").items()}
    return Identity(user=user, group=groups.get(gid, str(gid)), uid=uid, gid=gid)


def _read_colon_file(path: Path) -> dict[str, list[str]]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    table = {}
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            table[fields[0]] = fields[1:]
    return table


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


# --- processes -------------------------------------------------------------------------


def process_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (``Z`` for a zombie) or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def is_alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def process_root(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/root"))
    except OSError:
        return None


def pids_in_root(root: Path, argument: str | None = None) -> list[int]:
    """Every live process whose root directory is ``root`` (i.e. runs in that chroot); with
    ``argument``, only those that have it on their command line."""
    target = root.resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and process_root(int(entry.name)) == target:
            if is_alive(int(entry.name)) and (
                    argument is None or argument in process_argv(int(entry.name))):
                found.append(int(entry.name))
    return found


def process_argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait (without polling) until ``pid`` exits; True if it did within ``timeout``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return bool(readable) or not is_alive(pid)


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# --- mounts ----------------------------------------------------------------------------


def mount_points() -> list[str]:
    with MOUNTINFO.open(encoding="utf-8") as fh:
        return [_unescape(line.split()[4]) for line in fh]


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first (the order to unmount them)."""
    prefix = str(path.resolve())
    points = [p for p in mount_points() if p == prefix or p.startswith(prefix + "/")]
    return sorted(set(points), key=len, reverse=True)


def mount_proc(target: Path) -> None:
    if str(target.resolve()) in mount_points():
        return
    run(["mount", "-t", "proc", "proc", str(target)], timeout=10)


def unmount_all(path: Path, *, keep_root: bool = False) -> None:
    """Unmount everything mounted below ``path`` (and ``path`` itself unless keep_root)."""
    top = str(path.resolve())
    for point in mounts_under(path):
        if keep_root and point == top:
            continue
        result = subprocess.run(
            ["umount", point], capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode != 0:
            # Busy (a process outside our control looks into it): detach it lazily.
            run(["umount", "-l", point], timeout=10)


# --- ports -----------------------------------------------------------------------------


def check_port_free(host: str, port: int, kind: int, label: str) -> None:
    """Raise PortInUseError naming the holder if ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise AsteriskError(f"cannot bind {label} {host}:{port}: {exc}") from exc
            proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
            holder = port_holder(proto, port)
            raise PortInUseError(
                f"{label} port {proto}/{port} on {host} is already in use"
                f"{' by ' + holder if holder else ''}; stop that program or choose another "
                "port in the settings"
            ) from None


def port_holder(proto: str, port: int) -> str | None:
    """``name (pid N)`` of the process listening on ``proto``/``port``, from ``ss``."""
    flag = "-lpnu" if proto == "udp" else "-lpnt"
    try:
        out = subprocess.run(
            ["ss", "-H", flag, f"sport = :{port}"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return f"{match.group(1)} (pid {match.group(2)})" if match else None


# --- commands --------------------------------------------------------------------------


def run(argv: list[str], *, timeout: float) -> str:
    """Run a command to completion; raise AsteriskError with its output if it fails."""
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=timeout,
            check=False, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise AsteriskError(f"{' '.join(argv)} did not finish within {timeout:.0f} s") from None
    except FileNotFoundError as exc:
        raise AsteriskError(f"{argv[0]} is not installed: {exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise AsteriskError(f"{' '.join(argv)} failed ({result.returncode}): {detail}")
    return result.stdout


def deadline(timeout: float) -> float:
    return time.monotonic() + timeout


def remaining(until: float) -> float:
    return max(0.0, until - time.monotonic())


# --- identity isolation ----------------------------------------------------------------

HOST_ACCOUNT = "hotline-asterisk"


def host_account(name: str = HOST_ACCOUNT) -> tuple[int, int]:
    """A dedicated system account on the host (created once) whose ids Asterisk runs under."""
    import grp
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
        entry = pwd.getpwnam(name)
    return entry.pw_uid, grp.getgrgid(entry.pw_gid).gr_gid


def isolate_identity(root: Path, user: str) -> Identity | None:
    """Give the chroot's ``user`` the ids of a dedicated host account.

    The chroot's package scripts pick system ids that, on the host, can belong to another
    service (here the chroot's asterisk uid 101 was the host's postgres): running Asterisk
    under it would hand it that service's files. Rewrites the chroot's passwd/group entries
    and re-owns the files that had the old ids.
    """
    current = lookup_identity(root, user)
    if current is None:
        return None
    uid, gid = host_account()
    if (current.uid, current.gid) == (uid, gid):
        return current
    _rewrite_ids(root / "etc/passwd", user, uid, gid)
    _rewrite_ids(root / "etc/group", current.group, gid, None)
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in ("proc", "sys", "dev")]
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            new_uid = uid if st.st_uid == current.uid else -1
            new_gid = gid if st.st_gid == current.gid else -1
            if new_uid != -1 or new_gid != -1:
                os.chown(path, new_uid, new_gid, follow_symlinks=False)
    return lookup_identity(root, user)


def _rewrite_ids(path: Path, name: str, first: int, second: int | None) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == name and len(fields) > 3:
            fields[2] = str(first)
            if second is not None:
                fields[3] = str(second)
            lines[i] = ":".join(fields)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
