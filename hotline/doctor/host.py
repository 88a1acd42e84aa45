"""This host: the hotline's ports free (or held by its own service), residents' data and
secrets readable by the service's user only, and room for recordings."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from crm.storage.private_files import PrivateTree
from hotline.asterisk.host import port_holder
from hotline.doctor.findings import Finding, fail, ok, warn
from hotline.paths import recording_store, service_trees, survey_comments_dir
from hotline.settings import Settings

MAX_ENTRIES = 20_000
"""Entries looked at per tree (a recordings tree can be large; the service tightens all)."""
DISK_FAIL_BYTES = 1 << 30
DISK_WARN_BYTES = 5 << 30
DISK_WARN_SHARE = 0.05
HEALTH_TIMEOUT = 2.0


def service_health(settings: Settings) -> dict[str, Any] | None:
    """The running service's /healthz, or None when nothing answers there."""
    url = f"http://{settings.web.host}:{settings.web.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT) as resp:
            data = json.load(resp)
    except urllib.error.HTTPError as exc:  # 503 still carries the report
        try:
            data = json.load(exc)
        except ValueError:
            return None
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_ports(settings: Settings) -> list[Finding]:
    return [_port_finding("web port", settings.web.host, settings.web.port, "web.port"),
            _port_finding("AudioSocket port", settings.audiosocket.host,
                          settings.audiosocket.port, "audiosocket.port")]


def _port_finding(check: str, host: str, port: int, key: str) -> Finding:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return fail(check, f"cannot bind {host}:{port}: {exc.strerror}",
                            f"set {key} (and its host) to an address of this machine")
        else:
            return ok(check, f"{host}:{port} is free for the service")
    holder = port_holder("tcp", port)
    pid = int(holder.rsplit("pid ", 1)[1].rstrip(")")) if holder and "pid " in holder else None
    if pid is not None and _is_hotline_service(pid):
        return ok(check, f"{host}:{port} is held by the hotline service ({holder})")
    return fail(check, f"{host}:{port} is in use by {holder or 'another program'}",
                f"stop that program, or set {key} to a free port")


def _is_hotline_service(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [Path(a.decode(errors="replace")).name for a in argv if a]
    return "serve" in words and any("hotline" in w for w in words)


def check_permissions(settings: Settings, config_file: Path | None,
                      extra_secret_files: tuple[Path, ...] = ()) -> list[Finding]:
    """Every file of residents' data or secrets no wider than the modes
    crm/storage/private_files.py gives them; the settings file not writable by others."""
    extra_trees = [PrivateTree(path) for path in extra_secret_files]
    trees = [*service_trees(settings), *_database_tree(settings), *extra_trees]
    wide: list[tuple[Path, int, int]] = []
    strangers: list[tuple[Path, int]] = []
    owner = _owner(settings.state_dir)
    looked = 0
    for tree in trees:
        for path, st in _walk(tree):
            looked += 1
            allowed = tree.dir_mode if stat.S_ISDIR(st.st_mode) else tree.file_mode
            mode = stat.S_IMODE(st.st_mode)
            if mode & ~allowed:
                wide.append((path, mode, allowed))
            if owner is not None and st.st_uid != owner and tree not in extra_trees:
                strangers.append((path, st.st_uid))
    found = []
    if strangers:
        path, uid = strangers[0]
        more = f" and {len(strangers) - 1} more" if len(strangers) > 1 else ""
        found.append(fail("ownership", f"{path} belongs to {_user(uid)}{more}, the state "
                          f"directory to {_user(owner)}: the service cannot use it (made by "
                          "a command run as another user?)",
                          f"chown -R {_user(owner)}: {settings.state_dir}; run commands as "
                          f"that user (sudo -u {_user(owner)} hotline ...)"))
    elif owner is not None:
        found.append(ok("ownership", f"the state's files belong to {_user(owner)}, as "
                        f"{settings.state_dir} does"))
    if wide:
        path, mode, allowed = wide[0]
        more = f" and {len(wide) - 1} more" if len(wide) > 1 else ""
        found.append(fail("permissions", f"{path} is {mode:04o}, wider than {allowed:04o}"
                          f"{more}: residents' data or secrets readable by other users",
                          f"chmod {mode & allowed:o} {path} (the service also tightens its "
                          "own files when it starts)"))
    else:
        found.append(ok("permissions", f"{looked} files of residents' data and secrets are "
                        "private to the service's user"))
    if config_file is not None and config_file.exists():
        mode = stat.S_IMODE(config_file.stat().st_mode)
        if mode & 0o022:
            found.append(fail("settings file", f"{config_file} is {mode:04o}: other users may "
                              "change the hotline's settings",
                              f"chown root:hotline {config_file}; chmod 640 {config_file}"))
        elif mode & 0o004 and _mentions_secrets(config_file):
            found.append(warn("settings file", f"{config_file} is readable by every user "
                              "and holds a secret or password",
                              f"move secrets to the secrets file, or chmod 640 {config_file}"))
        else:
            found.append(ok("settings file", f"{config_file} ({mode:04o})"))
    return found


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def _user(uid: int | None) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name if uid is not None else "?"
    except KeyError:
        return f"uid {uid}"


def _database_tree(settings: Settings) -> list[PrivateTree]:
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return []
    return [PrivateTree(Path(url.database))]


def _mentions_secrets(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(word in text for word in ("secret", "password", "@"))


def _walk(tree: PrivateTree) -> list[tuple[Path, os.stat_result]]:
    try:
        top = tree.path.lstat()
    except OSError:
        return []
    if stat.S_ISLNK(top.st_mode):
        return []
    entries = [(tree.path, top)]
    if not tree.recursive or not stat.S_ISDIR(top.st_mode):
        return entries
    for root, dirs, files in os.walk(tree.path):
        for name in [*dirs, *files]:
            if len(entries) >= MAX_ENTRIES:
                return entries
            path = Path(root, name)
            try:
                st = path.lstat()
            except OSError:
                continue
            if not stat.S_ISLNK(st.st_mode):
                entries.append((path, st))
    return entries


def check_disk(settings: Settings) -> list[Finding]:
    store = recording_store(settings)
    places = {"call recordings": store.host_dir if store else None,
              "survey comments": survey_comments_dir(settings),
              "state directory": settings.state_dir}
    found = []
    seen: set[int] = set()
    for label, path in places.items():
        existing = _existing_parent(path) if path else None
        if existing is None:
            found.append(warn(f"disk ({label})", "not reachable from this host",
                              "set asterisk.recordings_dir to where the recordings are"))
            continue
        device = existing.stat().st_dev
        if device in seen:
            continue
        seen.add(device)
        usage = shutil.disk_usage(existing)
        share = usage.free / usage.total if usage.total else 0.0
        detail = f"{usage.free / (1 << 30):.1f} GiB free ({share:.0%}) at {existing}"
        fix = (f"free space on the file system of {existing}, or move {label} to a larger "
               "one")
        if usage.free < DISK_FAIL_BYTES:
            found.append(fail(f"disk ({label})", detail, fix))
        elif usage.free < DISK_WARN_BYTES or share < DISK_WARN_SHARE:
            found.append(warn(f"disk ({label})", detail, fix))
        else:
            found.append(ok(f"disk ({label})", detail))
    return found


def _existing_parent(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None
