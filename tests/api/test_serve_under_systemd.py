"""``hotline serve`` as a ``Type=notify`` unit with ``WatchdogSec=`` sees it: the real process,
started with systemd's NOTIFY_SOCKET and WATCHDOG_USEC, says READY=1 only once its web port
answers, pings the watchdog from its event loop, and says STOPPING=1 on SIGTERM before it
exits 0 (deploy/systemd/hotline.service). Embedded defaults (SQLite, the Korean model); no
Asterisk is needed: the AMI login keeps retrying on its own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_ready_watchdog_and_stopping_from_a_real_serve() -> None:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="sd", dir="/tmp") as d, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(Path(d) / "notify"))
        sock.setblocking(False)
        web_port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
        env.update(NOTIFY_SOCKET=str(Path(d) / "notify"), WATCHDOG_USEC="400000",
                   HOTLINE_STATE_DIR=str(Path(d) / "state"), HOTLINE_WEB__PORT=str(web_port),
                   HOTLINE_AMI__PORT=str(_free_port()),
                   HOTLINE_AUDIOSOCKET__PORT=str(_free_port()),
                   HOTLINE_SPEECH__PREWARM_PROMPTS="false")
        log = (Path(d) / "serve.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotline.cli", "serve", env=env, stdout=log,
            stderr=asyncio.subprocess.STDOUT)
        try:
            async def message() -> bytes:
                return await asyncio.wait_for(loop.sock_recv(sock, 4096), 90)

            ready = await message()
            assert ready.startswith(b"READY=1\n"), ready
            assert f"MAINPID={proc.pid}".encode() in ready
            health = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{web_port}/healthz")
            assert health.get("role") == "all", health  # the web port answered at READY
            assert [await message(), await message()] == [b"WATCHDOG=1"] * 2
            proc.send_signal(signal.SIGTERM)
            while (data := await message()) == b"WATCHDOG=1":
                pass
            assert data == b"STOPPING=1"
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            log.close()
            if proc.returncode not in (0, None):
                pytest.fail((Path(d) / "serve.log").read_text(errors="replace")[-3000:])


def _get_json(url: str) -> dict[str, object]:
    """The /healthz report; 503 (no AMI login here) still answers with it."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))
