"""Where an Asterisk installation keeps things, and how to run its binary.

Two kinds exist: the Debian-unstable root we build (``chroot``) and an Asterisk already
installed on the host (``system``). Paths in :class:`AsteriskDirs` are as Asterisk sees them;
:meth:`Installation.host_path` maps them to paths on the host.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

INSTANCE_FILE = "asterisk/instance.json"
NODES_DIR = "/var/lib/asterisk-nodes"
"""Inside a root: one directory per media node (asterisk.node_name) holding its own etc, run,
spool, log, lib and cache, so several Asterisks run from one root's binary and sounds."""


@dataclass(frozen=True)
class AsteriskDirs:
    etc: str = "/etc/asterisk"
    modules: str = "/usr/lib/x86_64-linux-gnu/asterisk/modules"
    varlib: str = "/var/lib/asterisk"
    data: str = "/usr/share/asterisk"
    spool: str = "/var/spool/asterisk"
    run: str = "/var/run/asterisk"
    log: str = "/var/log/asterisk"
    cache: str = "/var/cache/asterisk"
    sbin: str = "/usr/sbin"

    @property
    def writable(self) -> tuple[str, ...]:
        """Directories the daemon writes to (owned by the run-as user)."""
        return (self.varlib, self.spool, self.run, self.log, self.cache)


@dataclass(frozen=True)
class Installation:
    kind: Literal["chroot", "system"]
    root: Path
    """The chroot directory, or ``/`` for a system Asterisk."""
    binary: str
    """Path of the asterisk binary as seen inside ``root``."""
    dirs: AsteriskDirs
    config_file: str | None = None
    """``-C`` argument (system Asterisk uses a private config tree), or None for the default."""

    def host_path(self, inner: str | Path) -> Path:
        """Host path of ``inner``; symlinks inside a chroot resolve within the chroot."""
        return resolve_in_root(self.root, str(inner))

    def argv(self, *args: str) -> list[str]:
        """Command line that runs this Asterisk's binary with ``args``."""
        base = [self.binary]
        if self.config_file:
            base += ["-C", self.config_file]
        if self.kind == "chroot":
            base = ["chroot", str(self.root), *base]
        return [*base, *args]

    @property
    def pid_file(self) -> Path:
        return self.host_path(f"{self.dirs.run}/asterisk.pid")

    @property
    def control_socket(self) -> Path:
        return self.host_path(f"{self.dirs.run}/asterisk.ctl")

    @property
    def etc_dir(self) -> Path:
        return self.host_path(self.dirs.etc)

    def save(self, state_dir: Path) -> None:
        path = state_dir / INSTANCE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self) | {"root": str(self.root)}
        path.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> Installation | None:
        path = state_dir / INSTANCE_FILE
        try:
            data = json.loads(path.read_text())
            return cls(
                kind=data["kind"],
                root=Path(data["root"]),
                binary=data["binary"],
                dirs=AsteriskDirs(**data["dirs"]),
                config_file=data.get("config_file"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def resolve_in_root(root: Path, inner: str, _depth: int = 0) -> Path:
    """Map ``inner`` (absolute, as seen inside ``root``) to a host path.

    Symlinks are followed as the chroot would (``/var/run -> /run`` stays in the root);
    the last component is not required to exist.
    """
    if root == Path("/"):
        return Path(inner)
    current = root
    parts = [p for p in inner.split("/") if p and p != "."]
    for index, part in enumerate(parts):
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink() and _depth < 40:
            target = str(candidate.readlink())
            base = "/" if target.startswith("/") else "/" + str(current.relative_to(root))
            rest = "/".join(parts[index + 1 :])
            return resolve_in_root(root, f"{base}/{target}/{rest}", _depth + 1)
        current = candidate
    return current


def find_modules_dir(root: Path) -> str | None:
    """The module directory under ``root`` (multiarch or plain layout), as an inner path."""
    candidates = sorted(root.glob("usr/lib/*/asterisk/modules"))
    candidates += [root / "usr/lib/asterisk/modules", root / "usr/lib64/asterisk/modules"]
    for path in candidates:
        if (path / "chan_pjsip.so").exists():
            return "/" + str(path.relative_to(root))
    return None


def chroot_installation(root: Path) -> Installation:
    modules = find_modules_dir(root) or AsteriskDirs.modules
    return Installation(
        kind="chroot", root=root, binary="/usr/sbin/asterisk", dirs=AsteriskDirs(modules=modules)
    )


def node_installation(inst: Installation, node: str) -> Installation:
    """``inst``'s binary, modules and sounds with media node ``node``'s own configuration and
    writable directories (``asterisk -C <node>/etc/asterisk.conf``). A system Asterisk keeps
    its private tree in the node's own state directory already."""
    if inst.kind != "chroot" or not node:
        return inst
    top = f"{NODES_DIR}/{node}"
    dirs = replace(inst.dirs, etc=f"{top}/etc", varlib=f"{top}/lib", spool=f"{top}/spool",
                   run=f"{top}/run", log=f"{top}/log", cache=f"{top}/cache")
    return replace(inst, dirs=dirs, config_file=f"{top}/etc/asterisk.conf")
