"""Include points for the operator's own Asterisk configuration.

Rendering overwrites the hotline's files, so an operator never edits them: each of
:data:`INCLUDED` ends with ``#tryinclude <etc>/hotline-local/<name>_local.conf``. The
``hotline-local`` folder and its files are created when missing (a comment saying what they
are for) and never written again, so additions there survive every re-rendering; they take
effect at the next ``hotline asterisk up`` (a reload when Asterisk runs).
"""

from __future__ import annotations

import os
from pathlib import Path

from hotline.asterisk.layout import AsteriskDirs

LOCAL_DIR = "hotline-local"
INCLUDED = ("pjsip", "extensions", "queues", "modules", "manager")
"""The rendered files (without .conf) that include a local file."""


def local_name(name: str) -> str:
    return f"{name}_local.conf"


def include_line(dirs: AsteriskDirs, name: str) -> str:
    """The last line of ``<name>.conf``: the local file, if it exists."""
    return f"#tryinclude {dirs.etc}/{LOCAL_DIR}/{local_name(name)}"


def _seed(name: str) -> str:
    return (
        f"; Local additions to {name}.conf, included at its end. The hotline creates this\n"
        "; file once and never overwrites it; apply changes with `hotline asterisk up`.\n"
        "; Sections named like the hotline's add to them (extensions.conf contexts such as\n"
        "; [hotline-inbound]); new sections stand alone.\n"
    )


def ensure_local_files(etc_dir: Path, gid: int | None = None) -> list[Path]:
    """Create ``<etc_dir>/hotline-local`` and its files where missing; return those created.

    Existing files are left exactly as they are. Files are 0640 (readable by group ``gid``,
    Asterisk's, when given: a local pjsip.conf may hold a password), the folder 0750/0755.
    """
    folder = etc_dir / LOCAL_DIR
    created = []
    if not folder.is_dir():
        folder.mkdir(parents=True, mode=0o750 if gid is not None else 0o755)
        if gid is not None:
            os.chown(folder, 0, gid)
    for name in INCLUDED:
        path = folder / local_name(name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(_seed(name))
        if gid is not None:
            os.chown(path, 0, gid)
        created.append(path)
    return created
