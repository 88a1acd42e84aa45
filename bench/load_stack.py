"""The system under test for ``bench.load``: its own Asterisk, ``hotline serve``, demo data,
SIPp agent phones in the queue, signed-in agent desks, and the bench's own AMI watcher.

Everything is started inside :func:`running_stack` and stopped in reverse order when it
exits, however it exits (error, Ctrl-C, cancellation): desks signed out, agent phones
unregistered and killed, the service stopped (SIGTERM, then SIGKILL), Asterisk down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp

from crm.agents import accounts as agents
from crm.demo_data import seed_demo
from crm.storage.db import open_database
from crm.storage.migrate import upgrade
from hotline.asterisk import down, up
from hotline.asterisk.errors import AsteriskError
from hotline.asterisk.layout import chroot_installation
from hotline.asterisk.process import daemon_pid
from hotline.asterisk.rootfs import ensure_root, has_asterisk
from hotline.bus.redis_server import RedisServer, RedisServerError
from hotline.settings import Settings, fill_missing_secrets
from hotline.tools.bed import free_tcp_port
from hotline.tools.phones import AgentPhone
from hotline.tools.sipp import LOCAL_IP, SippProcess, free_udp_port, render_scenario
from ivr.ami.client import AmiClient, AmiEvent
from ivr.asterisk.queue_tracker import call_id_of, extension_of

log = logging.getLogger(__name__)

RTP_RANGE = (20000, 20999)
"""Outside the default 10000-10199 and below the kernel's ephemeral ports (SIPp's media)."""
SERVICE_START_TIMEOUT = 90.0
SERVICE_STOP_TIMEOUT = 15.0
AGENT_PHONE_CALLS = 100_000
"""An agent phone answers call after call; SIPp stops after this many (never reached)."""
_PR_SET_PDEATHSIG = 1


class BenchError(Exception):
    """The bench cannot run (another Asterisk, no root, the service did not start...)."""


def bench_settings(state_dir: Path, *, agents_count: int, database_url: str = "",
                   ivr_max_calls: int | None = None) -> Settings:
    """Private state dir, free loopback ports, N agent phones 2001.., every call surveyed;
    ``ivr_max_calls`` overrides the service's ``audiosocket.max_calls``."""
    settings = Settings(
        state_dir=state_dir,
        asterisk={"sip_port": free_udp_port(), "rtp_start": RTP_RANGE[0],
                  "rtp_end": RTP_RANGE[1],
                  "agent_extensions": [str(2001 + i) for i in range(agents_count)]},
        ami={"port": free_tcp_port()},
        audiosocket={"port": free_tcp_port(), "max_calls": ivr_max_calls},
        web={"port": free_tcp_port()},
        database={"url": database_url},
        # The same few demo residents call again and again: survey every call.
        survey={"fatigue_days": 0},
    )
    fill_missing_secrets(settings)
    return settings


def service_env(settings: Settings, bus_url: str | None = None) -> dict[str, str]:
    """``hotline serve`` sees the bench settings through HOTLINE_* overrides (secrets come
    from the private state dir's secrets.toml, written by :func:`bench_settings`);
    ``bus_url``: the Redis bus of a service split into processes."""
    a = settings.asterisk
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HOTLINE_") or k == "HOTLINE_LOG_LEVEL"}
    env.update({
        "HOTLINE_STATE_DIR": str(settings.state_dir),
        "HOTLINE_ASTERISK__SIP_PORT": str(a.sip_port),
        "HOTLINE_ASTERISK__RTP_START": str(a.rtp_start),
        "HOTLINE_ASTERISK__RTP_END": str(a.rtp_end),
        "HOTLINE_ASTERISK__AGENT_EXTENSIONS": json.dumps(a.agent_extensions),
        "HOTLINE_AMI__PORT": str(settings.ami.port),
        "HOTLINE_AUDIOSOCKET__PORT": str(settings.audiosocket.port),
        "HOTLINE_WEB__PORT": str(settings.web.port),
        "HOTLINE_SURVEY__FATIGUE_DAYS": str(settings.survey.fatigue_days),
        "PYTHONUNBUFFERED": "1",
    })
    if settings.database.url:
        env["HOTLINE_DATABASE__URL"] = settings.database.url
    if settings.audiosocket.max_calls is not None:
        env["HOTLINE_AUDIOSOCKET__MAX_CALLS"] = str(settings.audiosocket.max_calls)
    if bus_url is not None:
        env.update({"HOTLINE_BUS__KIND": "redis", "HOTLINE_BUS__REDIS_URL": bus_url})
    return env


def shared_asterisk_pid(settings: Settings) -> int | None:
    """The Asterisk running from the shared Debian root, whoever started it."""
    root = settings.asterisk.root_dir
    return daemon_pid(chroot_installation(root)) if has_asterisk(root) else None


def refuse_running_asterisk(settings: Settings,
                            progress: Callable[[str], None] = print) -> None:
    """Only one Asterisk can run from the shared root: never touch somebody else's.

    On a fresh machine the root is built first (mmdebstrap, 20-40 s), as ``make run`` does.
    """
    if os.geteuid() != 0:
        raise BenchError("the load bench starts Asterisk in a chroot: run it as root")
    root = settings.asterisk.root_dir
    if not has_asterisk(root):
        progress(f"no Asterisk root at {root} yet: building it (mmdebstrap, 20-40 s)")
        try:
            ensure_root(settings, progress)
        except AsteriskError as e:
            raise BenchError(f"cannot build the Asterisk root at {root}: {e}") from e
    pid = shared_asterisk_pid(settings)
    if pid is not None:
        raise BenchError(
            f"an Asterisk already runs from {root} (pid {pid}), e.g. `make run` or a test run; "
            "stop it (`make stop`) or wait until it is done, then run the bench again")


T = TypeVar("T")


async def _json_object(resp: aiohttp.ClientResponse) -> dict:
    return dict(await resp.json())


# --- hotline serve --------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: SIGTERM when the bench dies, even by SIGKILL (Linux prctl)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


CORE_UP = "hotline core up"
"""What ``hotline serve --role core`` (no web server, so no /healthz) logs once it is up."""


class ServiceProcess:
    """``hotline serve [--role R]`` as a subprocess of the bench, logging to the state dir;
    ``bus_url``: the Redis bus of a role other than all."""

    def __init__(self, settings: Settings, role: str = "all",
                 bus_url: str | None = None) -> None:
        self.settings = settings
        self.role = role
        self.bus_url = bus_url
        self.log_path = settings.state_dir / ("hotline-serve.log" if role == "all"
                                              else f"hotline-serve-{role}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "hotline.cli", "serve", "--role", self.role],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=service_env(self.settings, self.bus_url),
                start_new_session=True, preexec_fn=_die_with_parent)

    async def start(self) -> None:
        # Spawned from the event-loop thread: the parent-death signal follows the thread
        # that forked, and a worker thread of to_thread may end before the bench does.
        self.proc = self._spawn()
        url = f"http://{self.settings.web.host}:{self.settings.web.port}/healthz"
        deadline = time.monotonic() + SERVICE_START_TIMEOUT
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchError(f"hotline serve exited ({self.proc.returncode}) during "
                                     f"start-up:\n{self.tail()}")
                if self.role == "core":
                    if CORE_UP in self.tail(200):
                        return
                    await asyncio.sleep(0.2)  # polling a subprocess's log, bounded
                    continue
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if (await resp.json()).get("ok"):
                            return
                await asyncio.sleep(0.2)  # polling a subprocess's readiness, bounded
        raise BenchError(f"hotline serve not healthy within {SERVICE_START_TIMEOUT:.0f} s:\n"
                         f"{self.tail()}")

    async def health(self) -> dict:
        """The service's /healthz (empty if it does not answer within 5 s; the core role
        serves none)."""
        return await self._get("/healthz", _json_object) or {}

    async def metrics_text(self) -> str:
        """The service's /metrics (empty if it does not answer within 5 s; the core role
        serves none)."""
        return await self._get("/metrics", aiohttp.ClientResponse.text) or ""

    async def _get(self, path: str, read: Callable[[aiohttp.ClientResponse], Awaitable[T]]
                   ) -> T | None:
        """GET ``path`` of the service's web server, read by ``read``; None when the core
        role runs (no web server) or nothing usable came within 5 s."""
        if self.role == "core":
            return None
        url = f"http://{self.settings.web.host}:{self.settings.web.port}{path}"
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with aiohttp.ClientSession() as http, http.get(
                    url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return await read(resp)
        return None

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL. Synchronous so it also runs from a last-resort finally."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(SERVICE_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("hotline serve ignored SIGTERM for %.0f s; killing it",
                        SERVICE_STOP_TIMEOUT)
            proc.kill()
            proc.wait(5)

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def redis_server_pid(redis: RedisServer) -> int | None:
    """The redis-server's pid, from its pid file (for the CPU and memory samples)."""
    try:
        return int(redis.pid_path.read_text().strip())
    except (OSError, ValueError):
        return None


# --- demo data and desk accounts ----------------------------------------------------------


async def seed(settings: Settings, password: str) -> dict[str, str]:
    """Demo data, plus a desk account with ``password`` for every agent phone; returns
    extension -> login."""
    url = settings.database_url
    await upgrade(url)
    await seed_demo(url)
    database = open_database(url)
    logins: dict[str, str] = {}
    try:
        sessions = database.sessions
        for ext in settings.asterisk.agent_extensions:
            found = await agents.find_agent_by_extension(sessions, ext)
            if found is None:
                found = await agents.create_agent(
                    sessions, login=f"bench{ext}", display_name=f"Bench agent {ext}",
                    extension=ext)
            await agents.set_password(sessions, found.login, password)
            logins[ext] = found.login
    finally:
        await database.close()
    return logins


# --- agent phones ---------------------------------------------------------------------------


class LoadAgentPhone(AgentPhone):
    """An AgentPhone that answers call after call (AgentPhone answers one) for the whole
    run: each call rings ``ring_ms``, is answered, and the agent hangs up after ``hold_ms``."""

    async def _start_phone(self) -> None:
        self.port = free_udp_port()
        scenario = render_scenario(
            "agent_phone.xml", self.workdir, user=self.extension,
            ring_ms=max(1, self.ring_ms), hold_ms=max(1, self.hold_ms))
        args = ["-sf", str(scenario), "-i", LOCAL_IP, "-p", str(self.port),
                "-mp", str(free_udp_port(4)), "-m", str(AGENT_PHONE_CALLS)]
        self._uas = await SippProcess.start("phone", self.workdir, args)
        await self._wait_listening()

    def answered(self) -> int:
        return sum(1 for e in self._phone().events if e.startswith("answered"))


# --- desks and the AMI watcher ----------------------------------------------------------------


@dataclass
class PopTimes:
    """AgentCalled (bench AMI) and pop (desk websocket) arrival times, bench monotonic clock,
    keyed by (call id, agent extension); only the first of each."""

    called: dict[tuple[str, str], float] = field(default_factory=dict)
    popped: dict[tuple[str, str], float] = field(default_factory=dict)
    channel_up: dict[str, float] = field(default_factory=dict)
    """Newstate Up (the 200 OK is sent) by channel: wall clock, time.time()."""
    call_start: dict[str, tuple[str, float]] = field(default_factory=dict)
    """HotlineCallStart by call id: the caller's channel and the event's time.time()."""

    def answered_at(self, call_id: str) -> float | None:
        """When Asterisk answered the call (wall clock). HotlineCallStart comes up to 0.5 s
        later (Answer() waits for the caller's first audio), so the channel's Newstate Up is
        used; the call start only when that was missed."""
        start = self.call_start.get(call_id)
        if start is None:
            return None
        return self.channel_up.get(start[0], start[1])

    def delays(self, call_ids: set[str] | None = None) -> tuple[list[float], int]:
        """Pop delays in seconds and how many AgentCalled got no pop."""
        delays, missing = [], 0
        for key, t0 in self.called.items():
            if call_ids is not None and key[0] not in call_ids:
                continue
            t1 = self.popped.get(key)
            if t1 is None:
                missing += 1
            else:
                delays.append(t1 - t0)
        return delays, missing


class Desk:
    """An agent signed in at the desk over HTTP, its websocket read by a task."""

    def __init__(self, base_url: str, login: str, extension: str, times: PopTimes) -> None:
        self.base_url = base_url
        self.login = login
        self.extension = extension
        self.times = times
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.pops = 0

    async def sign_in(self, password: str) -> None:
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with self.http.get(f"{self.base_url}/desk/login") as resp:
            page = await resp.text()
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        if match is None:
            raise BenchError("desk login page has no CSRF token")
        form = {"login": self.login, "password": password, "csrf": match.group(1)}
        async with self.http.post(f"{self.base_url}/desk/login", data=form,
                                  allow_redirects=False) as resp:
            if resp.status != 303:
                raise BenchError(f"desk sign-in of {self.login} failed ({resp.status})")
        self.ws = await self.http.ws_connect(f"{self.base_url}/desk/ws", heartbeat=20)
        self.reader = asyncio.create_task(self._read(self.ws), name=f"desk-{self.login}")

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            now = loop.time()
            data = json.loads(msg.data)
            call = data.get("call") or {}
            if data.get("type") == "pop" and call.get("phase") == "ringing":
                self.pops += 1
                self.times.popped.setdefault((call.get("call_id", ""), self.extension), now)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()


class AmiWatcher:
    """The bench's own AMI login: queue membership, channel counts, AgentCalled times."""

    def __init__(self, settings: Settings, times: PopTimes) -> None:
        self.settings = settings
        self.times = times
        self.ami = AmiClient(settings.ami, name="bench-load")

    async def start(self) -> None:
        self.ami.subscribe("AgentCalled", self._on_called)
        self.ami.subscribe("UserEvent", self._on_user_event)
        self.ami.subscribe("Newstate", self._on_newstate)
        await self.ami.start()
        await self.ami.wait_ready(15)

    def _on_called(self, event: AmiEvent) -> None:
        now = asyncio.get_running_loop().time()
        call_id = call_id_of(event)
        ext = extension_of(event.get("Interface") or event.get("DestChannel"))
        if call_id and ext:
            self.times.called.setdefault((call_id, ext), now)

    def _on_user_event(self, event: AmiEvent) -> None:
        if event.get("UserEvent") == "HotlineCallStart" and event.get("CallId"):
            self.times.call_start.setdefault(
                str(event.get("CallId")), (str(event.get("Channel") or ""), time.time()))

    def _on_newstate(self, event: AmiEvent) -> None:
        if event.get("ChannelState") == "6" and event.get("Channel"):
            self.times.channel_up.setdefault(str(event.get("Channel")), time.time())

    async def queue_add(self, extension: str, name: str) -> None:
        with contextlib.suppress(Exception):  # already a member (the desk joined it)
            await self.ami.action("QueueAdd", Queue=self.settings.asterisk.queue_name,
                                  Interface=f"PJSIP/{extension}", MemberName=name)

    async def queue_members(self) -> int:
        items = await self.ami.action_list("QueueStatus",
                                           Queue=self.settings.asterisk.queue_name)
        return sum(1 for i in items if i.name == "QueueMember")

    async def channels(self) -> int:
        return len(await self.ami.action_list("CoreShowChannels"))

    async def wait_quiet(self, within: float) -> int:
        """Wait until Asterisk has no channel left; returns how many remain."""
        deadline = time.monotonic() + within
        while True:
            left = await self.channels()
            if not left or time.monotonic() >= deadline:
                return left
            await asyncio.sleep(0.5)  # polling Asterisk's state, bounded by the deadline

    async def close(self) -> None:
        await self.ami.close()


# --- the whole stack --------------------------------------------------------------------------


class Teardown:
    """Stops what the bench started, once: the service, then Asterisk -- only if the
    Asterisk running from the shared root is still the one this bench started (another run
    may own it by now). Synchronous and idempotent, so ``main`` calls it again as a last
    resort after the event loop is gone."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service: ServiceProcess | None = None
        self.web: ServiceProcess | None = None
        """The web process when the service is split (``service`` is then the core)."""
        self.redis: RedisServer | None = None
        self.asterisk_pid: int | None = None

    def run(self) -> None:
        web, self.web = self.web, None
        if web is not None:
            web.stop()
        service, self.service = self.service, None
        if service is not None:
            service.stop()
        redis, self.redis = self.redis, None
        if redis is not None:
            try:
                redis.stop()
            except RedisServerError as exc:
                log.warning("%s; killing it", exc)
                redis.kill()
        pid, self.asterisk_pid = self.asterisk_pid, None
        if pid is None:
            return
        running = shared_asterisk_pid(self.settings)
        if running == pid:
            down(self.settings)
        else:
            log.warning("the bench's Asterisk (pid %s) is gone (running now: %s); not "
                        "stopping anything", pid, running)


@dataclass
class Stack:
    settings: Settings
    service: ServiceProcess
    watcher: AmiWatcher
    phones: list[LoadAgentPhone]
    desks: list[Desk]
    times: PopTimes
    asterisk_pid: int | None
    web: ServiceProcess | None = None
    """``--roles split``: the web process (``service`` is the core)."""
    redis_pid: int | None = None


@contextlib.asynccontextmanager
async def running_stack(settings: Settings, teardown: Teardown, *, ring_ms: int, talk_ms: int,
                        progress: Callable[[str], None] = print,
                        split: bool = False) -> AsyncIterator[Stack]:
    """``split``: the service as two processes, ``hotline serve --role core`` and ``--role
    web``, over a redis-server of the bench's own (the database must be PostgreSQL)."""
    refuse_running_asterisk(settings, progress)
    password = secrets.token_urlsafe(12)
    times = PopTimes()
    try:
        logins = await seed(settings, password)
        started = time.monotonic()
        refuse_running_asterisk(settings)  # again, just before: another run may have begun
        said: list[str] = []
        await asyncio.to_thread(up, settings, said.append)
        pid = shared_asterisk_pid(settings)
        if any("already running" in message for message in said):
            # Another run started one between the check and ``up`` (which then reloaded
            # it): not ours to use or stop.
            raise BenchError("another run started an Asterisk from the shared root at the "
                             "same moment; run the bench again when it is done")
        teardown.asterisk_pid = pid
        progress(f"asterisk up (pid {pid}) in {time.monotonic() - started:.1f} s; "
                 f"SIP udp {settings.asterisk.sip_port}, AMI {settings.ami.port}")
        started = time.monotonic()
        web: ServiceProcess | None = None
        redis_pid: int | None = None
        if split:
            redis = teardown.redis = RedisServer(settings.state_dir / "redis",
                                                 port=free_tcp_port())
            try:
                await asyncio.to_thread(redis.start)
            except RedisServerError as exc:
                raise BenchError(str(exc)) from exc
            redis_pid = redis_server_pid(redis)
            service = teardown.service = ServiceProcess(settings, "core", redis.url)
            await service.start()
            web = teardown.web = ServiceProcess(settings, "web", redis.url)
            await web.start()
            progress(f"hotline serve --role core (pid {service.pid}) and --role web (pid "
                     f"{web.pid}) up in {time.monotonic() - started:.1f} s over Redis "
                     f"{redis.url} (pid {redis_pid}); web http://{settings.web.host}:"
                     f"{settings.web.port}/, logs {service.log_path}, {web.log_path}")
        else:
            service = teardown.service = ServiceProcess(settings)
            await service.start()
            progress(f"hotline serve up (pid {service.pid}) in "
                     f"{time.monotonic() - started:.1f} s; web http://{settings.web.host}:"
                     f"{settings.web.port}/, log {service.log_path}")
        async with contextlib.AsyncExitStack() as stack:
            watcher = AmiWatcher(settings, times)
            stack.push_async_callback(watcher.close)
            await watcher.start()
            phones: list[LoadAgentPhone] = []
            desks: list[Desk] = []
            base_url = f"http://{settings.web.host}:{settings.web.port}"
            for i, ext in enumerate(settings.asterisk.agent_extensions):
                # Staggered answer times: the first free agent answers, no 200 OK races.
                phone = LoadAgentPhone(settings, ext, ring_ms=ring_ms + 150 * i,
                                       hold_ms=talk_ms)
                phones.append(await stack.enter_async_context(phone))
                await watcher.queue_add(ext, logins[ext])
                desk = Desk(base_url, logins[ext], ext, times)
                stack.push_async_callback(desk.close)
                await desk.sign_in(password)
                desks.append(desk)
            members = await watcher.queue_members()
            if members != len(phones):
                raise BenchError(f"{members} queue members for {len(phones)} agent phones")
            progress(f"{len(phones)} SIPp agent phones registered and in the queue, their "
                     f"desks signed in ({', '.join(d.login for d in desks)})")
            yield Stack(settings, service, watcher, phones, desks, times, pid, web=web,
                        redis_pid=redis_pid)
    finally:
        await asyncio.to_thread(teardown.run)
