"""systemd's service notifications (sd_notify(3)) for ``Type=notify`` units with a watchdog.

``hotline serve`` tells systemd when it serves (``READY=1``, so ``systemctl start`` returns
once the IVR, AMI control and web listen, and units ordered after it wait for that), when it
stops (``STOPPING=1``), and, while ``WatchdogSec=`` is set, that its event loop still turns
(``WATCHDOG=1`` every half of the watchdog interval, sent by a task on that loop). A process
whose loop hangs (a blocking call, a deadlock) stops pinging; systemd then kills it with
SIGABRT and ``Restart=on-failure`` starts it again: a hung process no longer sits on its
ports answering nothing (deploy/systemd/hotline.service, docs/operating.md).

Outside systemd (no ``NOTIFY_SOCKET``) every call here does nothing. The protocol is one
datagram per message on the AF_UNIX socket named by ``NOTIFY_SOCKET`` (a leading ``@`` is
the abstract namespace); ``WATCHDOG_USEC`` gives the interval and ``WATCHDOG_PID``, when
set, the process meant. Implemented here rather than with a binding (python-systemd needs
libsystemd's headers to build; the protocol is a few lines).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)
_failing = threading.Event()
"""The last notification could not be sent (the test bed's supervisor may not run)."""


def _address(env: Mapping[str, str]) -> str | None:
    path = env.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    return "\0" + path[1:] if path.startswith("@") else path


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` ("READY=1", "WATCHDOG=1", "STATUS=..."); False when there is no
    socket to send to or sending failed (logged: the service goes on either way)."""
    address = _address(os.environ if env is None else env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        if not _failing.is_set():  # said once, not every ping, until one goes through
            _failing.set()
            log.warning("systemd notification %r not sent to %r: %s (said once until one "
                        "is sent)", message.split("\n")[0], address.replace("\0", "@"), exc)
        return False
    if _failing.is_set():
        _failing.clear()
        log.info("systemd notifications reach %r again", address.replace("\0", "@"))
    return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two pings (half of ``WatchdogSec``), or None without a watchdog for
    this process."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", "0") or 0)
    except ValueError:
        log.warning("WATCHDOG_USEC/WATCHDOG_PID unreadable (%r, %r): no watchdog pings",
                    env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID"))
        return None
    if usec <= 0 or (pid and pid != os.getpid()) or _address(env) is None:
        return None
    return usec / 2 / 1_000_000


async def keep_watchdog(interval: float) -> None:
    """Ping every ``interval`` seconds from this event loop, until cancelled: the pings stop
    when the loop stops turning, which is what the watchdog is for."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)  # the ping's period, not a wait for an event


async def serving(role: str) -> asyncio.Task[None] | None:
    """Tell systemd the service serves; start the watchdog pings when asked for. The task
    (None without a watchdog) is to be cancelled when the service stops."""
    notify(f"READY=1\nSTATUS=serving (role {role})\nMAINPID={os.getpid()}")
    interval = watchdog_interval()
    if interval is None:
        return None
    log.info("systemd watchdog: a ping every %.1f s", interval)
    return asyncio.get_running_loop().create_task(keep_watchdog(interval),
                                                  name="systemd-watchdog")


async def stopping(watchdog: asyncio.Task[None] | None) -> None:
    notify("STOPPING=1")
    if watchdog is not None:
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
