"""Find or build the Asterisk we run: a system one on PATH, or a Debian-unstable root.

Debian 12 ships no Asterisk, so the hotline builds a minimal Debian unstable tree with
mmdebstrap (about 20-40 s, 340 MB) and runs Asterisk 22 from it with chroot. The tree is
built next to its final place and renamed at the end, so a half-built tree is never used.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hotline.asterisk.errors import (
    ArchiveUnreachableError,
    AsteriskError,
    MissingToolError,
    NotRootError,
    RootBuildError,
)
from hotline.asterisk.host import mounts_under
from hotline.settings import Settings

Progress = Callable[[str], None]

PACKAGES = ("asterisk", "asterisk-modules", "asterisk-core-sounds-en")
SUITE = "sid"
APT_DIR = Path("/etc/apt")
MIN_SYSTEM_MAJOR = 20
BUILD_TIMEOUT = 900.0
_UNREACHABLE = (
    "Failed to fetch",
    "Could not resolve",
    "Temporary failure resolving",
    "Could not connect",
    "Connection refused",
    "Connection timed out",
    "Unable to connect",
    "No route to host",
    "Network is unreachable",
    "does not have a Release file",
)
_VERSION = re.compile(r"Asterisk\s+(?:certified-)?(\d+)\.(\d+)")


@dataclass(frozen=True)
class SystemAsterisk:
    binary: Path
    version: str
    major: int


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise NotRootError(
            f"{action} needs root (chroot, mount and privilege drop); run it with sudo"
        )


def has_asterisk(root: Path) -> bool:
    return (root / "usr/sbin/asterisk").is_file()


def ensure_root(settings: Settings, progress: Progress = print) -> Path:
    """Return the Asterisk root directory, building it with mmdebstrap if it is missing."""
    root = settings.asterisk.root_dir
    if has_asterisk(root):
        return root
    require_root("building the Asterisk root")
    if shutil.which("mmdebstrap") is None:
        raise MissingToolError(
            "mmdebstrap is not installed; install it with: apt-get install mmdebstrap"
        )
    _clear_target(root)
    mirror = settings.asterisk.mirror or host_mirror()
    tmp = root.with_name(root.name + ".tmp")
    _remove_partial(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    progress(f"building the Asterisk root in {root} from {mirror} (takes about 30 s)")
    try:
        _run_mmdebstrap(mmdebstrap_argv(tmp, mirror), mirror, progress)
    except AsteriskError:
        with contextlib.suppress(OSError, AsteriskError):
            _remove_partial(tmp)
        raise
    if not has_asterisk(tmp):
        raise RootBuildError(f"mmdebstrap finished but {tmp}/usr/sbin/asterisk is missing")
    tmp.rename(root)
    progress(f"Asterisk root ready: {root}")
    return root


def mmdebstrap_argv(target: Path, mirror: str) -> list[str]:
    return [
        "mmdebstrap",
        "--variant=apt",
        "--aptopt=Acquire::Check-Valid-Until \"false\"",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        f"deb {mirror} {SUITE} main",
    ]


def _clear_target(root: Path) -> None:
    """An empty directory may be replaced; anything else is not ours to delete."""
    if not root.exists():
        return
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
        return
    raise RootBuildError(
        f"{root} exists but holds no usr/sbin/asterisk; remove it or set asterisk.root_dir "
        "to another path"
    )


def _remove_partial(tmp: Path) -> None:
    if not tmp.exists():
        return
    if mounts_under(tmp):
        raise RootBuildError(f"{tmp} still has file systems mounted under it; unmount them first")
    shutil.rmtree(tmp)


def _run_mmdebstrap(argv: list[str], mirror: str, progress: Progress) -> None:
    output: list[str] = []
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            output.append(line)
            if line.startswith(("I:", "E:", "W:")):
                progress(f"  {line}")
        try:
            rc = proc.wait(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise RootBuildError(f"mmdebstrap took longer than {BUILD_TIMEOUT:.0f} s") from None
    if rc != 0:
        raise _build_error(output, mirror)


def _build_error(output: list[str], mirror: str) -> AsteriskError:
    tail = "\n".join(output[-15:])
    if any(marker in line for line in output for marker in _UNREACHABLE):
        return ArchiveUnreachableError(
            f"the Debian archive {mirror} could not be reached; check the network or set "
            f"asterisk.mirror (HOTLINE_ASTERISK__MIRROR) to a reachable mirror.\n{tail}"
        )
    return RootBuildError(f"mmdebstrap failed:\n{tail}")


def host_mirror(apt_dir: Path = APT_DIR) -> str:
    """The first Debian archive URI in the host's apt sources (not a security archive)."""
    for uri in _apt_uris(apt_dir):
        if _is_debian_archive(uri):
            return uri.rstrip("/")
    raise AsteriskError(
        f"no Debian archive found in {apt_dir}/sources.list*; set asterisk.mirror "
        "(HOTLINE_ASTERISK__MIRROR), e.g. to the URI of your Debian mirror"
    )


def _is_debian_archive(uri: str) -> bool:
    path = uri.split("://", 1)[-1].rstrip("/")
    return path.endswith("/debian") and "security" not in path


def _apt_uris(apt_dir: Path) -> Iterable[str]:
    files = [apt_dir / "sources.list"]
    listing = apt_dir / "sources.list.d"
    if listing.is_dir():
        files += sorted(listing.iterdir())
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".sources":
            yield from _deb822_uris(text)
        elif path.name == "sources.list" or path.suffix == ".list":
            yield from _one_line_uris(text)


def _one_line_uris(text: str) -> Iterable[str]:
    for line in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0])
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "deb":
            yield fields[1]


def _deb822_uris(text: str) -> Iterable[str]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            yield from fields.get("uris", "").split()


def system_asterisk() -> SystemAsterisk | None:
    """An ``asterisk`` >= 20 on PATH, or None."""
    binary = shutil.which("asterisk")
    if binary is None:
        return None
    try:
        result = subprocess.run(
            [binary, "-V"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(result.stdout)
    if result.returncode != 0 or match is None:
        return None
    major = int(match.group(1))
    if major < MIN_SYSTEM_MAJOR:
        return None
    return SystemAsterisk(Path(binary), result.stdout.strip(), major)
