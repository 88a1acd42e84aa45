"""Files that hold residents' personal data, created readable only by the service's user.

The database, journals, logs, spoken survey comments, the prompt cache and secrets are
created owner-only (files 0600, directories 0700). Asterisk's recordings and logs are
read by the hotline through Asterisk's group, so Asterisk runs with ``ASTERISK_UMASK``
(files 0640, directories 0750) and nothing is ever readable by other users.

Two layers: a process umask (``hotline`` sets ``ASTERISK_UMASK`` for every command, so an
Asterisk it starts inherits it; the service sets ``SERVICE_UMASK`` while it runs), and
explicit modes where files are made (:func:`private_dir`, :func:`open_private`,
:func:`write_private`), which hold whatever the umask. Files and directories made earlier
with wider modes are tightened at start-up (:func:`tighten`), and each change is logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
SERVICE_UMASK = 0o077
"""The hotline service's own files: owner only."""
ASTERISK_UMASK = 0o027
"""Asterisk's files (recordings, its logs): the owner writes, its group reads, others
nothing. Also the umask of every ``hotline`` command, so an Asterisk it starts inherits it."""
ASTERISK_FILE_MODE = 0o640
ASTERISK_DIR_MODE = 0o750
LOGGED_PER_TREE = 20
"""Changes named one by one in the log per tree; more are summed up in one line."""
MAX_TIGHTEN_ENTRIES = 1_000_000
"""A bound on the entries one start-up pass looks at in one tree."""

_FLAGS = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
          "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
          "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL}


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block with the process umask ``mask``, restoring the previous one after."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def private_dir(path: Path, mode: int = DIR_MODE) -> Path:
    """``path`` as a directory no wider than ``mode``: created (with every missing parent)
    at ``mode`` whatever the umask, or tightened if it exists wider. Never widened."""
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made by someone else meanwhile
            directory.mkdir(mode)
        _chmod_narrower(directory, mode)
    if not missing:
        _chmod_narrower(path, mode)
    return path


def open_private(path: Path, mode: str = "w", *, encoding: str | None = None,
                 file_mode: int = FILE_MODE) -> IO[Any]:
    """Open ``path`` for writing (``mode`` w, a or x, with b for bytes); a new file is made
    ``file_mode`` whatever the umask, an existing wider one is tightened."""
    kind = mode.replace("b", "")
    if kind not in _FLAGS:
        raise ValueError(f"open_private writes only (w, a, x), not {mode!r}")
    fd = os.open(path, _FLAGS[kind] | getattr(os, "O_CLOEXEC", 0), file_mode)
    try:
        current = stat.S_IMODE(os.fstat(fd).st_mode)
        if current & ~file_mode:
            os.fchmod(fd, current & file_mode)
            log.warning("tightened %s from %04o to %04o", path, current, current & file_mode)
        return os.fdopen(fd, mode, encoding=encoding)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, data: str | bytes, *, file_mode: int = FILE_MODE) -> None:
    """Replace ``path`` atomically with ``data`` in a ``file_mode`` file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open_private(tmp, "wb", file_mode=file_mode) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def ensure_private_file(path: Path, file_mode: int = FILE_MODE) -> Path:
    """``path`` exists, no wider than ``file_mode`` (an empty file is made if missing)."""
    with open_private(path, "a", file_mode=file_mode):
        pass
    return path


@dataclass(frozen=True)
class Tightened:
    path: Path
    before: int
    after: int

    def __str__(self) -> str:
        return f"{self.path}: {self.before:04o} -> {self.after:04o}"


@dataclass(frozen=True)
class PrivateTree:
    """A file or directory tree whose entries must be no wider than the modes given."""

    path: Path
    file_mode: int = FILE_MODE
    dir_mode: int = DIR_MODE
    recursive: bool = True


def tighten(tree: PrivateTree) -> list[Tightened]:
    """Remove the bits wider than the tree's modes from ``tree.path`` (and, when recursive,
    everything below it; symbolic links are not followed). Each change is logged; entries
    that cannot be changed (not ours, a read-only mount) are logged once per tree."""
    changed: list[Tightened] = []
    denied: list[str] = []
    for path, st in _walk(tree):
        allowed = tree.dir_mode if stat.S_ISDIR(st.st_mode) else tree.file_mode
        current = stat.S_IMODE(st.st_mode)
        if not current & ~allowed:
            continue
        try:
            os.chmod(path, current & allowed, follow_symlinks=False)
        except OSError as exc:
            denied.append(f"{path}: {exc.strerror}")
            continue
        changed.append(Tightened(path, current, current & allowed))
        if len(changed) <= LOGGED_PER_TREE:
            log.warning("tightened %s from %04o to %04o (personal data is not for other "
                        "users)", path, current, current & allowed)
    if len(changed) > LOGGED_PER_TREE:
        log.warning("tightened %d entries under %s in all (the first %d named above)",
                    len(changed), tree.path, LOGGED_PER_TREE)
    if denied:
        log.warning("could not tighten %d entr%s under %s (first: %s)", len(denied),
                    "y" if len(denied) == 1 else "ies", tree.path, denied[0])
    return changed


def tighten_all(trees: list[PrivateTree]) -> list[Tightened]:
    changed: list[Tightened] = []
    for tree in trees:
        changed += tighten(tree)
    return changed


def _walk(tree: PrivateTree) -> Iterator[tuple[Path, os.stat_result]]:
    try:
        top = tree.path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(top.st_mode):
        return
    yield tree.path, top
    if not tree.recursive or not stat.S_ISDIR(top.st_mode):
        return
    seen = 0
    for root, dirs, files in os.walk(tree.path, followlinks=False):
        for name in [*dirs, *files]:
            seen += 1
            if seen > MAX_TIGHTEN_ENTRIES:
                log.warning("%s has more than %d entries; the rest is not checked",
                            tree.path, MAX_TIGHTEN_ENTRIES)
                return
            path = Path(root, name)
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if not stat.S_ISLNK(st.st_mode):
                yield path, st


def _chmod_narrower(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        path.chmod(current & mode)
