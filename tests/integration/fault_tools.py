"""Tools for the fault-injection tests: callers the test hangs up when it chooses, cutting one
TCP connection, a ``hotline serve`` process whose log the test waits on, and a scratch
PostgreSQL database that can be made unavailable and brought back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType

from sqlalchemy.engine import make_url

from hotline.asterisk import cli
from hotline.asterisk.layout import Installation
from hotline.asterisk.process import daemon_pid
from hotline.reconciliation import call_record_path
from hotline.settings import Settings
from hotline.tools.sipp import CallResult, free_udp_port, place_call
from tests.integration.service_fixtures import service_settings

POLL = 0.1
"""How often a bounded wait re-checks state that announces no event (Asterisk, a database)."""


async def wait_until(check: Callable[[], bool | Awaitable[bool]], within: float,
                     what: str) -> None:
    """Wait, bounded, until ``check()`` holds (for state that sends no event to wait on)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(POLL)


async def asterisk_channels(bed: Settings) -> int:
    out = await asyncio.to_thread(cli, bed, "core show channels count")
    match = re.search(r"(\d+) active channels?", out)
    assert match, out
    return int(match.group(1))


def fault_settings(bed: Settings, tmp_path: Path) -> Settings:
    """A service of the test's own: fresh SQLite database and web port, and a state directory
    (so its event journal) that no other test shares; prompts are cached with the bed's."""
    settings = service_settings(bed, tmp_path)
    settings.state_dir = tmp_path / "state"
    settings.speech.prompt_cache_dir = (bed.speech.prompt_cache_dir
                                        or bed.state_dir / "prompt-cache")
    settings.speech.installed_models_dir = (bed.speech.installed_models_dir
                                            or bed.state_dir / "speech-models")
    settings.asterisk.call_record_file = call_record_path(bed)  # the bed's Asterisk's
    return settings


def kill_asterisk(bed: Settings) -> None:
    """SIGKILL the bed's Asterisk (started by this test session): a crash, no goodbye on AMI,
    no hang-up handlers. ``down`` then clears what it left behind."""
    installation = Installation.load(bed.state_dir)
    assert installation is not None, "the bed's Asterisk installation is unknown"
    pid = daemon_pid(installation)
    assert pid is not None, "the bed's Asterisk is not running"
    os.kill(pid, signal.SIGKILL)


# --- callers ---------------------------------------------------------------------------


class HeldCaller:
    """A SIPp caller that stays on the line until the test hangs it up (``hang_up``).

    Hanging up kills the caller's SIPp; ``place_call`` then sends the BYE from the caller's
    port, as a phone hanging up would. The result tells whether Asterisk had sent a BYE before
    (``hung_up_by == "remote"``): a caller our software dropped.
    """

    def __init__(self, settings: Settings, *, number: str, name: str = "", keys: str = "",
                 hold_s: float = 120.0) -> None:
        self.port = free_udp_port()
        self._task = asyncio.ensure_future(place_call(
            settings, caller_number=number, caller_name=name, keys=keys,
            hold_ms=int(hold_s * 1000), local_port=self.port))

    @property
    def done(self) -> bool:
        return self._task.done()

    def _sipp_pid(self) -> int | None:
        """Our SIPp child bound to this caller's port."""
        me = str(os.getpid())
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            except OSError:
                continue
            if ppid == me and argv[0].endswith(b"sipp") and b"-p" in argv:
                if argv[argv.index(b"-p") + 1] == str(self.port).encode():
                    return int(entry.name)
        return None

    async def hang_up(self, within: float = 10.0) -> CallResult:
        if not self._task.done():
            pid = self._sipp_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return await asyncio.wait_for(asyncio.shield(self._task), within)

    async def close(self) -> None:
        if not self._task.done():
            with contextlib.suppress(Exception):
                await self.hang_up()
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def __aenter__(self) -> HeldCaller:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


def no_bye_from_asterisk(result: CallResult) -> bool:
    """The caller was answered and Asterisk never hung up on it."""
    return result.answered and "remote_bye" not in result.events


# --- one TCP connection ----------------------------------------------------------------


def local_ports_to(remote_port: int, pid: int | None = None) -> list[int]:
    """Local ports of the established loopback TCP connections of ``pid`` (default: this
    process) to ``remote_port``."""
    pid = os.getpid() if pid is None else pid
    out = subprocess.run(["ss", "-Htnp", "state", "established", "dst",
                          f"127.0.0.1:{remote_port}"],
                         capture_output=True, text=True, check=True).stdout
    ports = []
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        local = line.split()[2]  # Recv-Q Send-Q Local Peer Process (state filtered out)
        ports.append(int(local.rsplit(":", 1)[1]))
    return ports


def cut_tcp(local_port: int, remote_port: int) -> None:
    """Destroy one loopback TCP connection (ss -K): this end sees the connection aborted, the
    other end a reset; no other socket is touched."""
    out = subprocess.run(["ss", "-HK", "-t", "src", f"127.0.0.1:{local_port}", "dst",
                          f"127.0.0.1:{remote_port}"],
                         capture_output=True, text=True, check=True).stdout
    if not out.strip():
        raise AssertionError(f"no TCP connection 127.0.0.1:{local_port} -> :{remote_port} "
                             "to cut (is INET_DIAG_DESTROY available?)")


# --- a hotline serve process -----------------------------------------------------------


def serve_env(settings: Settings) -> dict[str, str]:
    return {**os.environ,
            "HOTLINE_STATE_DIR": str(settings.state_dir),
            "HOTLINE_DATABASE__URL": settings.database_url,
            "HOTLINE_WEB__PORT": str(settings.web.port),
            "HOTLINE_AMI__PORT": str(settings.ami.port),
            "HOTLINE_AMI__SECRET": settings.ami.secret,
            "HOTLINE_AUDIOSOCKET__PORT": str(settings.audiosocket.port),
            "HOTLINE_ASTERISK__SIP_PORT": str(settings.asterisk.sip_port),
            "HOTLINE_SPEECH__PREWARM_PROMPTS": "false",
            "HOTLINE_SPEECH__PROMPT_CACHE_DIR": str(settings.speech.prompt_cache_dir),
            "HOTLINE_SPEECH__INSTALLED_MODELS_DIR": str(settings.speech.installed_models_dir),
            "HOTLINE_ASTERISK__CALL_RECORD_FILE": str(call_record_path(settings))}


class ServeProcess:
    """``hotline serve`` as a child process; its output is read all along (a full pipe would
    stall it) and kept, so a test can wait for a line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, settings: Settings) -> ServeProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotline.cli", "serve", env=serve_env(settings),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_line(self, needle: str, within: float, *, after: int = 0) -> str:
        """The first line from index ``after`` on containing ``needle``."""
        try:
            async with asyncio.timeout(within), self._changed:
                while True:
                    for line in self.lines[after:]:
                        if needle in line:
                            return line
                    if self._reader.done():
                        break
                    await self._changed.wait()
        except TimeoutError:
            pass
        raise AssertionError(f"{needle!r} never logged; output:\n{''.join(self.lines)}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self, within: float = 15.0) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), within)
            except TimeoutError:
                self.proc.kill()
        await self.proc.wait()
        # A child the killed service left behind may hold its output open: stop reading
        # after 5 s, and a second stop() finds the reader finished, not a cancelled one.
        await asyncio.wait([self._reader], timeout=5)
        if not self._reader.done():
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


# --- a scratch PostgreSQL database -----------------------------------------------------


class ScratchPostgres:
    """A database and a login role of their own on the test PostgreSQL server (created and
    dropped as the ``postgres`` superuser), so taking them away disturbs no other test, and
    no other test resetting the shared role's password disturbs this one."""

    def __init__(self, base_url: str) -> None:
        base = make_url(base_url)
        self.name = f"hotline_faults_{secrets.token_hex(4)}"
        self._password = secrets.token_hex(16)
        self.url = base.set(database=self.name, username=self.name,
                            password=self._password).render_as_string(hide_password=False)
        self._port = base.port or 5432

    def _psql(self, sql: str) -> str:
        return subprocess.run(
            ["su", "postgres", "-c",
             f"psql -v ON_ERROR_STOP=1 -qAt -p {self._port} -d postgres"],
            input=sql, capture_output=True, text=True, check=True, timeout=30).stdout

    async def psql(self, sql: str) -> str:
        return await asyncio.to_thread(self._psql, sql)

    async def make_unavailable(self) -> None:
        """No new connections, and every open one is ended."""
        await self.psql(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS false;\n"
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        f"WHERE datname = '{self.name}';")

    async def make_available(self) -> None:
        await self.psql(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS true;")

    @contextlib.asynccontextmanager
    async def created(self) -> AsyncIterator[ScratchPostgres]:
        await self.psql(f"CREATE ROLE {self.name} LOGIN PASSWORD '{self._password}';\n"
                        f"CREATE DATABASE {self.name} OWNER {self.name};")
        try:
            yield self
        finally:
            await self.psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE);\n"
                            f"DROP ROLE IF EXISTS {self.name};")


class LogWatcher(logging.Handler):
    """Records of one logger, with a bounded wait for one that matches."""

    def __init__(self, logger: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(logger)
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._loop.call_soon_threadsafe(self._changed.set)

    def __enter__(self) -> LogWatcher:
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)

    async def wait_for(self, match: Callable[[logging.LogRecord], bool], within: float,
                       what: str) -> logging.LogRecord:
        try:
            async with asyncio.timeout(within):
                while True:
                    for record in self.records:
                        if match(record):
                            return record
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"never logged within {within} s: {what}") from None
