"""The test bed's watchdog: the role processes ping the supervisor as they would systemd.

Every process ``hotline cluster`` starts gets systemd's ``NOTIFY_SOCKET`` (an abstract
AF_UNIX name of its own per cluster directory, so no path length limit and nothing left on
disk) and ``WATCHDOG_USEC``; ``hotline serve`` then sends READY=1 and a ping every half
interval from its event loop (hotline/systemd_notify.py). The supervisor listens on that
name with SO_PASSCRED, so the kernel tells it which pid each datagram came from; a process
that pinged once and then goes ``WATCHDOG_S`` without a ping is hung (its loop stopped
turning): the supervisor aborts it (SIGABRT: faulthandler writes every thread's stack to
its log first), kills it if that does not end it, and starts it again like any exit.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
from pathlib import Path
from typing import Final

WATCHDOG_S: Final = 10.0
"""Seconds without a ping after which a process counts as hung (systemd's WatchdogSec; the
units use 30 s, the test bed less so that its tests are short)."""
_UCRED: Final = struct.Struct("3i")  # pid, uid, gid


def notify_name(directory: Path) -> str:
    """NOTIFY_SOCKET for the processes of the cluster in ``directory`` (``@`` = abstract)."""
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:20]
    return f"@hotline-cluster-{digest}"


def process_environment(directory: Path) -> dict[str, str]:
    return {"NOTIFY_SOCKET": notify_name(directory),
            "WATCHDOG_USEC": str(int(WATCHDOG_S * 1_000_000))}


class PingListener:
    """The supervisor's end: bound while it runs; ``drain`` returns (pid, message) for what
    arrived since the last call, never blocking."""

    def __init__(self, directory: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + notify_name(directory)[1:])
        self.sock.setblocking(False)

    def drain(self) -> list[tuple[int | None, str]]:
        got: list[tuple[int | None, str]] = []
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(_UCRED.size))
            except BlockingIOError:
                return got
            pid = None
            for level, kind, payload in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                    pid = _UCRED.unpack(payload[:_UCRED.size])[0]
            got.append((pid, data.decode(errors="replace")))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
