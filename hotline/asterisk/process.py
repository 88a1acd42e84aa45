"""Start, stop and inspect the hotline's Asterisk.

``asterisk.mode = "embedded"`` runs Asterisk 22 from the Debian-unstable root (chroot) or,
when ``use_system_asterisk`` is on and one is installed, a system ``asterisk`` >= 20 with a
private configuration tree under ``<state_dir>/asterisk``. ``"external"`` means somebody
else runs Asterisk: ``up``/``down`` only check that its AMI answers.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crm.storage.private_files import ASTERISK_UMASK
from hotline.asterisk import host
from hotline.asterisk.errors import AmiUnreachableError, AsteriskError, StartupError
from hotline.asterisk.layout import (
    AsteriskDirs,
    Installation,
    chroot_installation,
    find_modules_dir,
    node_installation,
)
from hotline.asterisk.modules import configured_modules, not_loaded
from hotline.asterisk.render import install_config
from hotline.asterisk.rootfs import (
    SystemAsterisk,
    ensure_root,
    has_asterisk,
    require_root,
    system_asterisk,
)
from hotline.asterisk.sounds import install_sounds
from hotline.settings import Settings

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

CLI_TIMEOUT = 30.0
STOP_COMMAND_TIMEOUT = 10.0
KILL_WAIT = 5.0
_SOCKET_POLL = 0.05


# --- public API ------------------------------------------------------------------------


def up(settings: Settings, progress: Progress = print) -> None:
    """Start Asterisk with the rendered config (or reload it if it already runs)."""
    if settings.asterisk.mode == "external":
        banner = check_ami(settings)
        progress(f"external Asterisk: AMI answers on {_ami_address(settings)} ({banner})")
        return
    require_root("starting Asterisk")
    inst = _prepare_installation(settings, progress)
    inst.save(settings.state_dir)
    identity = _identity(inst, settings)
    if daemon_pid(inst) is not None:
        _install(settings, inst, identity)
        run_cli(inst, "core reload")
        for module in not_loaded(configured_modules(inst.etc_dir), run_cli(inst, "module show")):
            run_cli(inst, f"module load {module}")
        progress("Asterisk already running: configuration re-installed and reloaded")
        return
    _stop_leftovers(inst)
    _check_ports(settings)
    started = time.monotonic()
    try:
        _boot(settings, inst, identity)
    except AsteriskError:
        _stop(inst, settings.asterisk.boot_timeout)
        raise
    elapsed = time.monotonic() - started
    progress(f"Asterisk {_version(inst)} fully booted in {elapsed:.2f} s ({_describe(inst)})")


def down(settings: Settings) -> None:
    """Stop Asterisk, unmount what ``up`` mounted and leave no process behind."""
    if settings.asterisk.mode == "external":
        try:
            check_ami(settings)
        except AmiUnreachableError as exc:
            log.warning("external Asterisk: %s", exc)
        return
    inst = _existing_installation(settings)
    if inst is None:
        return
    require_root("stopping Asterisk")
    _stop(inst, settings.asterisk.boot_timeout)


def status(settings: Settings) -> dict[str, Any]:
    """running, pid, version, uptime (seconds), mode, kind (chroot/system) and root."""
    report: dict[str, Any] = {
        "mode": settings.asterisk.mode, "kind": None, "root": None,
        "running": False, "pid": None, "version": None, "uptime": None,
    }
    if settings.asterisk.mode == "external":
        try:
            report["ami_banner"] = check_ami(settings)
            report["running"] = True
        except AmiUnreachableError as exc:
            report["error"] = str(exc)
        return report
    inst = _existing_installation(settings)
    if inst is None:
        return report
    report |= {"kind": inst.kind, "root": str(inst.root)}
    pid = daemon_pid(inst)
    if pid is None:
        return report
    report |= {"running": True, "pid": pid, "version": _version(inst), "uptime": _uptime(inst)}
    return report


def cli(settings: Settings, command: str) -> str:
    """Run one Asterisk CLI command (``asterisk -rx``) and return its output."""
    if settings.asterisk.mode == "external":
        found = system_asterisk()
        if found is None:
            raise AsteriskError(
                "asterisk.mode is external and no asterisk binary is on PATH; use the "
                "console of the Asterisk you run"
            )
        return host.run([str(found.binary), "-rx", command], timeout=CLI_TIMEOUT)
    inst = _existing_installation(settings)
    if inst is None or daemon_pid(inst) is None:
        raise AsteriskError("Asterisk is not running; start it with `hotline asterisk up`")
    require_root("the Asterisk console")
    return run_cli(inst, command)


def check_ami(settings: Settings, timeout: float = 3.0) -> str:
    """Connect to AMI and return its banner; raise AmiUnreachableError otherwise."""
    address = _ami_address(settings)
    try:
        with socket.create_connection((settings.ami.host, settings.ami.port), timeout) as sock:
            banner = sock.makefile("rb").readline(200).decode("utf-8", "replace").strip()
    except OSError as exc:
        raise AmiUnreachableError(f"AMI at {address} is not reachable: {exc}") from exc
    if not banner.startswith("Asterisk Call Manager"):
        raise AmiUnreachableError(f"{address} answered {banner!r}, not an Asterisk AMI banner")
    return banner


def daemon_pid(inst: Installation) -> int | None:
    """PID of the running Asterisk daemon of ``inst`` (from its pid file), or None."""
    try:
        pid = int(inst.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if not host.is_alive(pid) or host.process_name(pid) != "asterisk":
        return None
    if host.process_root(pid) != inst.root.resolve():
        return None
    return pid


def _pid_written(inst: Installation) -> bool:
    try:
        return inst.pid_file.read_text().strip().isdigit()
    except OSError:
        return False


def run_cli(inst: Installation, command: str, timeout: float = CLI_TIMEOUT) -> str:
    return host.run(inst.argv("-rx", command), timeout=timeout)


# --- installation ----------------------------------------------------------------------


def _prepare_installation(settings: Settings, progress: Progress) -> Installation:
    found = system_asterisk() if settings.asterisk.use_system_asterisk else None
    if found is not None:
        progress(f"using the system Asterisk {found.binary} ({found.version})")
        return system_installation(settings, found)
    root = ensure_root(settings, progress)
    return node_installation(chroot_installation(root), settings.asterisk.node_name)


def _existing_installation(settings: Settings) -> Installation | None:
    saved = Installation.load(settings.state_dir)
    if saved is not None:
        return saved
    found = system_asterisk() if settings.asterisk.use_system_asterisk else None
    if found is not None:
        return system_installation(settings, found)
    if has_asterisk(settings.asterisk.root_dir):
        inst = chroot_installation(settings.asterisk.root_dir)
        return node_installation(inst, settings.asterisk.node_name)
    return None


def system_installation(settings: Settings, found: SystemAsterisk) -> Installation:
    """A system Asterisk with its own config, state and run directories in the state dir."""
    base = settings.state_dir.resolve() / "asterisk"
    data = "/usr/share/asterisk"
    if not Path(data, "sounds").is_dir() and Path("/var/lib/asterisk/sounds").is_dir():
        data = "/var/lib/asterisk"
    dirs = AsteriskDirs(
        etc=str(base / "etc"),
        modules=find_modules_dir(Path("/")) or AsteriskDirs.modules,
        varlib=str(base / "lib"),
        data=data,
        spool=str(base / "spool"),
        run=str(base / "run"),
        log=str(base / "log"),
        cache=str(base / "cache"),
        sbin=str(found.binary.parent),
    )
    return Installation(
        kind="system", root=Path("/"), binary=str(found.binary), dirs=dirs,
        config_file=str(base / "etc" / "asterisk.conf"),
    )


def _identity(inst: Installation, settings: Settings) -> host.Identity | None:
    """Whom Asterisk runs as: run_as_user if it exists (and can reach its files), else root."""
    user = settings.asterisk.run_as_user
    if not user or user == "root":
        return None
    if inst.kind == "chroot":
        identity = host.isolate_identity(inst.root, user)
    else:
        identity = host.lookup_identity(inst.root, user)
    if identity is None:
        log.warning("user %s does not exist in %s; running Asterisk as root", user, inst.root)
        return None
    if inst.kind == "system" and not _reachable_by(Path(inst.dirs.etc), identity):
        log.warning("%s cannot reach %s; running Asterisk as root", user, inst.dirs.etc)
        return None
    return identity


def _reachable_by(path: Path, identity: host.Identity) -> bool:
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == identity.uid:
            continue
        if not st.st_mode & (0o010 if st.st_gid == identity.gid else 0o001):
            return False
    return True


def _install(settings: Settings, inst: Installation, identity: host.Identity | None) -> None:
    _prepare_node_tree(inst, identity)
    gid = identity.gid if identity else None
    install_config(settings, inst.etc_dir, dirs=inst.dirs, gid=gid)
    install_sounds(settings, inst)


def _prepare_node_tree(inst: Installation, identity: host.Identity | None) -> None:
    """A media node's directory in the root: traversable, its etc readable by Asterisk's
    user (the root's own /etc/asterisk belongs to that user too)."""
    if inst.kind != "chroot" or inst.config_file is None:
        return
    etc = inst.etc_dir
    etc.mkdir(parents=True, exist_ok=True)
    for directory in (etc.parent.parent, etc.parent):
        directory.chmod(0o755)
    etc.chmod(0o750)
    if identity is not None:
        os.chown(etc, 0, identity.gid)


def _prepare_dirs(inst: Installation, identity: host.Identity | None) -> None:
    for inner in inst.dirs.writable:
        path = inst.host_path(inner)
        path.mkdir(parents=True, exist_ok=True)
        if identity is not None:
            host.chown_tree(path, identity.uid, identity.gid)


# --- start / stop ----------------------------------------------------------------------


def _check_ports(settings: Settings) -> None:
    host.check_port_free(
        settings.asterisk.bind_host, settings.asterisk.sip_port, socket.SOCK_DGRAM, "SIP"
    )
    host.check_port_free(settings.ami.host, settings.ami.port, socket.SOCK_STREAM, "AMI")


def _boot(settings: Settings, inst: Installation, identity: host.Identity | None) -> None:
    if inst.kind == "chroot":
        host.mount_proc(inst.host_path("/proc"))
    _install(settings, inst, identity)
    _prepare_dirs(inst, identity)
    for stale in (inst.pid_file, inst.control_socket):
        stale.unlink(missing_ok=True)
    _launch(inst, identity)
    _wait_booted(inst, settings.asterisk.boot_timeout)


def _launch(inst: Installation, identity: host.Identity | None) -> None:
    drop = ["-U", identity.user, "-G", identity.group] if identity else []
    argv = inst.argv(*drop)
    log.info("starting %s", " ".join(argv))
    try:
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, errors="replace", timeout=CLI_TIMEOUT,
            close_fds=True, check=False, umask=ASTERISK_UMASK,
        )
    except subprocess.TimeoutExpired:
        raise StartupError(f"{' '.join(argv)} did not detach within {CLI_TIMEOUT:.0f} s") from None
    if result.returncode != 0:
        raise StartupError(f"Asterisk failed to start ({result.returncode}): {result.stderr}")


def _wait_booted(inst: Installation, timeout: float) -> None:
    until = host.deadline(timeout)
    while not inst.control_socket.exists():
        if host.remaining(until) == 0:
            raise StartupError(
                f"Asterisk did not open its console socket within {timeout:.0f} s; "
                f"see {_messages_log(inst)}\n{_log_tail(inst)}"
            )
        # A pid file Asterisk has created but not yet written is no sign of an exit.
        if _pid_written(inst) and daemon_pid(inst) is None:
            raise StartupError(f"Asterisk exited during start-up:\n{_log_tail(inst)}")
        time.sleep(_SOCKET_POLL)
    try:
        run_cli(inst, "core waitfullybooted", timeout=max(host.remaining(until), 1.0))
    except AsteriskError as exc:
        raise StartupError(f"Asterisk did not finish booting: {exc}\n{_log_tail(inst)}") from exc


def _stop(inst: Installation, timeout: float) -> None:
    pid = daemon_pid(inst)
    if pid is not None:
        try:
            run_cli(inst, "core stop now", timeout=STOP_COMMAND_TIMEOUT)
        except AsteriskError as exc:
            log.warning("core stop now failed (%s); killing pid %d", exc, pid)
        if not host.wait_exit(pid, timeout):
            log.warning("Asterisk pid %d did not exit within %.0f s; killing it", pid, timeout)
            host.kill(pid)
            host.wait_exit(pid, KILL_WAIT)
    _stop_leftovers(inst)
    if inst.kind == "chroot" and not host.pids_in_root(inst.root):
        # The root's /proc is shared by the media nodes run from it: the last one unmounts.
        host.unmount_all(inst.root, keep_root=True)
    inst.pid_file.unlink(missing_ok=True)
    inst.control_socket.unlink(missing_ok=True)


def _stop_leftovers(inst: Installation) -> None:
    """Kill processes still running inside our chroot (stale daemons, consoles, shells); a
    media node's (``-C`` its own asterisk.conf) only, leaving the other nodes of the root."""
    if inst.kind != "chroot":
        return
    for pid in host.pids_in_root(inst.root, inst.config_file):
        log.warning("killing leftover process %d (%s) in %s", pid, host.process_name(pid),
                    inst.root)
        host.kill(pid)
        host.wait_exit(pid, KILL_WAIT)


# --- reporting -------------------------------------------------------------------------


def _version(inst: Installation) -> str | None:
    try:
        out = run_cli(inst, "core show version")
    except AsteriskError:
        return None
    match = re.search(r"Asterisk\s+(\S+)", out)
    return match.group(1) if match else out.strip() or None


def _uptime(inst: Installation) -> int | None:
    try:
        out = run_cli(inst, "core show uptime seconds")
    except AsteriskError:
        return None
    match = re.search(r"System uptime:\s*(\d+)", out)
    return int(match.group(1)) if match else None


def _describe(inst: Installation) -> str:
    return f"chroot {inst.root}" if inst.kind == "chroot" else f"system {inst.binary}"


def _ami_address(settings: Settings) -> str:
    return f"{settings.ami.host}:{settings.ami.port}"


def _messages_log(inst: Installation) -> Path:
    return inst.host_path(f"{inst.dirs.log}/messages.log")


def _log_tail(inst: Installation, lines: int = 15) -> str:
    try:
        text = _messages_log(inst).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no Asterisk log yet)"
    return "\n".join(text.splitlines()[-lines:])
