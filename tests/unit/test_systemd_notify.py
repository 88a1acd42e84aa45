"""hotline.systemd_notify against a real AF_UNIX datagram socket, as systemd listens on one:
the messages, the abstract namespace, the watchdog's interval and pings, and nothing at all
outside systemd."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline import systemd_notify


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket and its NOTIFY_SOCKET value (a short path: AF_UNIX paths are
    limited to 108 bytes, pytest's tmp_path can be longer)."""
    with tempfile.TemporaryDirectory(prefix="sd", dir="/tmp") as d:
        path = str(Path(d) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(10)
            yield sock, path


def test_a_message_reaches_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert systemd_notify.notify("READY=1\nSTATUS=serving", {"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving"


def test_the_abstract_namespace() -> None:
    name = f"hotline-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert systemd_notify.notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_outside_systemd_nothing_is_sent() -> None:
    assert not systemd_notify.notify("READY=1", {})
    assert systemd_notify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) is None


def test_a_socket_nobody_listens_on_is_logged_not_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "hotline.systemd_notify"):
        assert not systemd_notify.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert "not sent" in caplog.text


@pytest.mark.parametrize(("env", "interval"), [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),                       # WatchdogSec=30s
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "junk"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({}, None),
])
def test_the_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert systemd_notify.watchdog_interval({"NOTIFY_SOCKET": "/run/x", **env}) == interval


def test_the_watchdog_meant_for_this_process() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "4000000",
           "WATCHDOG_PID": str(os.getpid())}
    assert systemd_notify.watchdog_interval(env) == 2.0


async def test_pings_come_from_the_event_loop(listener: tuple[socket.socket, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = listener
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    loop = asyncio.get_running_loop()
    watchdog = await systemd_notify.serving("all")
    assert watchdog is not None
    received = [await asyncio.wait_for(loop.sock_recv(sock, 4096), 10) for _ in range(3)]
    await systemd_notify.stopping(watchdog)
    assert received[0].startswith(b"READY=1\nSTATUS=serving (role all)")
    assert received[1:] == [b"WATCHDOG=1", b"WATCHDOG=1"]
    rest = []
    while (data := await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)) != b"STOPPING=1":
        rest.append(data)
    assert set(rest) <= {b"WATCHDOG=1"} and watchdog.cancelled()
