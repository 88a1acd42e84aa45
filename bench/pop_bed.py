"""The test bed of ``bench.pop_delay``: a private Asterisk 22 from the shared Debian root
(started only once the root is free, watched so another run cannot take it over unnoticed),
the hotline service in this process with the demo data and the bench agent, and the agent's
SIPp desk phone that rings and never answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from crm.agents import accounts as agents
from crm.demo_data import seed_demo
from hotline.asterisk import down, up
from hotline.asterisk.layout import Installation, chroot_installation
from hotline.asterisk.process import daemon_pid
from hotline.asterisk.rootfs import has_asterisk
from hotline.service import HotlineService, running_service
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings, free_tcp_port
from hotline.tools.phones import AgentPhone
from hotline.tools.sipp import SippProcess, free_udp_port, render_scenario

AGENT_LOGIN, AGENT_NAME, EXTENSION = "bench-pops", "压测坐席 Bench", "2004"
PASSWORD = "bench-pops-password"
RING_MS = 120_000
"""The desk phone rings longer than the queue's ring timeout (15 s): it never answers."""
ASTERISK_RETRY_S = 10.0


class RingingPhone(AgentPhone):
    """The agent's SIPp desk phone, ringing for up to ``max_calls`` calls (SIPp -m) and
    answering none of them (it rings longer than the queue's ring timeout)."""

    def __init__(self, settings: Settings, extension: str, *, max_calls: int) -> None:
        super().__init__(settings, extension, ring_ms=RING_MS)
        self.max_calls = max_calls

    async def _start_phone(self) -> None:
        self.port = free_udp_port()
        scenario = render_scenario("agent_phone.xml", self.workdir, user=self.extension,
                                   ring_ms=self.ring_ms, hold_ms=1)
        args = ["-sf", str(scenario), "-i", "127.0.0.1", "-p", str(self.port),
                "-mp", str(free_udp_port(4)), "-m", str(self.max_calls)]
        self._uas = await SippProcess.start("phone", self.workdir, args)
        await self._wait_listening()


class BedLost(Exception):
    """Another run stopped, restarted or reconfigured the Asterisk this run started."""


class SharedAsterisk:
    """Only one Asterisk can run from the shared Debian root, and other runs (test sessions,
    whose fault tests stop and start theirs) use it too. ``up`` would reload a running one
    under its owner, and ``down`` stops whatever runs there. So: start ours only once the
    root has been free for a while, notice if another run takes it over, and stop it only
    if it is still ours."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.asterisk.root_dir
        self.pid: int | None = None
        self.waited = 0.0
        """Seconds spent waiting for the root to be free."""
        self._config = ""
        self._installation: Installation | None = None

    def _running(self) -> int | None:
        if not has_asterisk(self.root):
            return None
        return daemon_pid(chroot_installation(self.root))

    async def wait_free(self, within: float, free_for: float) -> None:
        began = time.monotonic()
        deadline = began + within
        free_since: float | None = None
        reported: int | None = None
        while True:
            now = time.monotonic()
            pid = self._running()
            if pid is None:
                free_since = free_since or now
                if now - free_since >= free_for:
                    self.waited = now - began
                    return
            else:
                free_since = None
                if pid != reported:
                    print(f"an Asterisk runs from {self.root} (pid {pid}) for another run; "
                          f"waiting (up to {within:.0f} s in all)", flush=True)
                    reported = pid
            if now > deadline:
                raise SystemExit(f"the Asterisk root {self.root} was not free for "
                                 f"{free_for:.0f} s within {within:.0f} s; retry later")
            await asyncio.sleep(ASTERISK_RETRY_S if pid is not None else 1.0)

    async def start(self) -> None:
        await asyncio.to_thread(up, self.settings, lambda message: print(message, flush=True))
        self._installation = Installation.load(self.settings.state_dir)
        self.pid = self._running()
        self._config = self._config_digest()

    def _config_digest(self) -> str:
        if self._installation is None:
            return ""
        digest = hashlib.sha256()
        for name in ("pjsip.conf", "manager.conf", "extensions.conf", "queues.conf"):
            with contextlib.suppress(OSError):
                digest.update((self._installation.etc_dir / name).read_bytes())
        return digest.hexdigest()

    def problem(self) -> str | None:
        pid = self._running()
        if pid != self.pid:
            return (f"the Asterisk this run started (pid {self.pid}) was stopped or replaced "
                    f"(now {pid}) by another run using {self.root}")
        if self._config_digest() != self._config:
            return f"another run re-installed its configuration into {self.root}"
        return None

    async def watch(self, interval: float = 1.0) -> None:
        """Raise BedLost as soon as another run takes the Asterisk over."""
        while True:
            problem = self.problem()
            if problem is not None:
                raise BedLost(problem)
            await asyncio.sleep(interval)  # polling other processes: nothing to wait on

    async def stop(self) -> None:
        if self.pid is not None and self._running() == self.pid:
            await asyncio.to_thread(down, self.settings)
        elif self.pid is not None:
            print(f"not stopping the Asterisk in {self.root}: it is no longer ours", flush=True)


@contextlib.asynccontextmanager
async def test_bed(args: argparse.Namespace) -> AsyncIterator[
        tuple[HotlineService, SharedAsterisk]]:
    """Asterisk, then the service with demo data and the bench agent; all torn down after."""
    async with contextlib.AsyncExitStack() as stack:
        state = stack.enter_context(tempfile.TemporaryDirectory(
            prefix="hotline-bench-pops-", ignore_cleanup_errors=True))
        settings = asterisk_test_settings(Path(state))
        settings.web.port = free_tcp_port()
        settings.database.url = f"sqlite+aiosqlite:///{Path(state) / 'hotline.db'}"
        asterisk = SharedAsterisk(settings)
        await asterisk.wait_free(args.wait_asterisk, args.asterisk_free_for)
        stack.push_async_callback(asterisk.stop)
        await asterisk.start()
        service = await stack.enter_async_context(running_service(settings))
        await service.ami.wait_ready(10)
        await seed_demo(settings.database_url)
        await agents.create_agent(service.sessions, login=AGENT_LOGIN, display_name=AGENT_NAME,
                                  extension=EXTENSION, password=PASSWORD)
        if (problem := asterisk.problem()) is not None:
            raise BedLost(problem)
        yield service, asterisk
