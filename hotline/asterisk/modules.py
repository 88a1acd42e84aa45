"""Modules a running Asterisk should load after a reload.

``core reload`` rereads modules.conf but loads no module it newly lists (a trunk that
registers, TLS's SRTP, a ``load =`` line in the local modules file): those are loaded one by
one, so ``hotline asterisk up`` on a running Asterisk gives the same modules as a start.
"""

from __future__ import annotations

import re
from pathlib import Path

from hotline.asterisk.local_config import LOCAL_DIR, local_name

_LOAD = re.compile(r"^\s*load\s*=>?\s*([A-Za-z0-9_-]+\.so)\s*(?:;.*)?$", re.M)
_LISTED = re.compile(r"^([A-Za-z0-9_-]+\.so)\s", re.M)


def configured_modules(etc_dir: Path) -> list[str]:
    """The ``load =`` modules of modules.conf and of its local file, in order."""
    names: list[str] = []
    for path in (etc_dir / "modules.conf", etc_dir / LOCAL_DIR / local_name("modules")):
        try:
            names += _LOAD.findall(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    return list(dict.fromkeys(names))


def not_loaded(configured: list[str], module_show: str) -> list[str]:
    """Those of ``configured`` missing from ``module show``'s output."""
    loaded = set(_LISTED.findall(module_show))
    return [name for name in configured if name not in loaded]
