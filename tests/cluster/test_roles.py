"""Roles as processes: ``hotline serve --role core`` (AMI control, the consultation recorder,
the IVR) and ``hotline serve --role web`` (desk, console, API) as two child processes sharing
a real redis-server, the test PostgreSQL database and the real test Asterisk. A SIPp caller
goes through the IVR and asks for an agent, the agent's SIPp phone answers, and the agent's
desk websocket on the WEB process gets the pop with the IVR's steps; the consultation is
written once, with its steps, by the core."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, text

from crm.agents import accounts as agents
from crm.consultations.service import find_consultations
from crm.demo_data import seed_demo
from crm.storage.db import SessionFactory, make_engine, make_session_factory
from crm.storage.models import Case, Consultation, Resident
from hotline.bus.redis_server import RedisServer
from hotline.settings import Settings
from hotline.tools.bed import free_tcp_port
from hotline.tools.phones import AgentPhone
from ivr.ami.client import AmiClient
from ivr.asterisk.queue_control import QueueControl
from tests.integration.fault_tools import (
    HeldCaller,
    ServeProcess,
    fault_settings,
    serve_env,
    wait_until,
)
from tests.integration.service_fixtures import hang_up_leftover_calls

pytestmark = pytest.mark.asterisk

PASSWORD = "roles-desk-pw"
CALLER, CALLER_NAME = "13800138000", "张三"
AGENT, EXTENSION = "agent1", "2001"
SUPERVISOR = "supervisor1"
START_S = 90.0
"""Bound for a process to come up (the core loads the speech models)."""
WAIT_S = 45.0
"""Bound for what goes through the IVR and the queue (the IVR's prompts take seconds)."""
WAIT_MS, QUICK_MS = int(WAIT_S * 1000), 5_000
"""The same for the browser; and for what the page shows once the event is there."""


def role_settings(bed: Settings, tmp_path: Path, role: str, database_url: str) -> Settings:
    settings = fault_settings(bed, tmp_path / role)
    settings.state_dir = tmp_path / role / "state"
    settings.database.url = database_url
    settings.web.port = free_tcp_port()
    return settings


async def start_role(settings: Settings, role: str, redis: RedisServer) -> ServeProcess:
    env = {**serve_env(settings), "HOTLINE_BUS__KIND": "redis",
           "HOTLINE_BUS__REDIS_URL": redis.url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", "serve", "--role", role, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    return ServeProcess(proc)


async def stop_cleanly(process: ServeProcess) -> None:
    """SIGTERM: the process stops its parts and exits 0 (not killed after the bound)."""
    await process.stop()
    assert process.proc.returncode == 0, "".join(process.lines[-40:])


@contextlib.asynccontextmanager
async def database(url: str) -> AsyncIterator[SessionFactory]:
    """The test's PostgreSQL database, emptied (the core migrates it)."""
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    try:
        yield make_session_factory(engine)
    finally:
        await engine.dispose()


class WebUser:
    """Someone signed in at the web process (``/desk`` or ``/console``) with a websocket
    open; every message it pushed is kept."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def sign_in(self, app: str, login: str, password: str, socket: str) -> None:
        async with self.http.get(f"{self.base}/{app}/login") as form:
            found = re.search(r'name="csrf" value="([^"]+)"', await form.text())
            assert found, "no CSRF token on the sign-in form"
        async with self.http.post(f"{self.base}/{app}/login", data={
                "csrf": found.group(1), "login": login, "password": password}) as response:
            assert response.status == 200 and str(response.url).endswith(f"/{app}/"), \
                await response.text()
        ws = await self.http.ws_connect(f"{self.base.replace('http', 'ws', 1)}{socket}")
        self._reader = asyncio.create_task(self._read(ws))

    async def _read(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        async for message in socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            async with self._changed:
                self.messages.append(json.loads(message.data))
                self._changed.notify_all()

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], within: float,
                       what: str) -> dict[str, Any]:
        try:
            async with asyncio.timeout(within), self._changed:
                while True:
                    for message in self.messages:
                        if match(message):
                            return message
                    await self._changed.wait()
        except TimeoutError:
            seen = "\n".join(f"  {m}" for m in self.messages)
            raise AssertionError(f"no message {what} within {within} s; saw:\n{seen}"
                                 ) from None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.http.close()


def transcript_of(message: dict[str, Any]) -> str:
    return "\n".join(line["text"] for line in message["call"]["pop"]["ivr"]["transcript"])


def pop_with_steps(number: str) -> Callable[[dict[str, Any]], bool]:
    def match(message: dict[str, Any]) -> bool:
        return (message.get("type") == "pop"
                and f"已告知工单 {number} 状态为" in transcript_of(message)
                and "转至人工坐席" in transcript_of(message))
    return match


async def leave_queues(settings: Settings) -> None:
    """The Asterisk outlives the test: the agent's phone leaves every queue it joined."""
    ami = AmiClient(settings.ami, name="test-roles")
    await ami.start()
    try:
        await ami.wait_ready(10)
        control = QueueControl(ami, settings.asterisk.queue_name)
        await control.leave(f"PJSIP/{EXTENSION}")
    finally:
        await ami.close()


@dataclass
class Cluster:
    core: Settings
    web: Settings
    sessions: SessionFactory
    case_number: str
    """张三's case (Mandarin on file), which the caller asks about."""
    base: str
    """The web process's address."""
    stack: contextlib.AsyncExitStack


@pytest.fixture
async def cluster(asterisk_bed: Settings, redis_server: RedisServer, postgres_database: str,
                  tmp_path: Path) -> AsyncIterator[Cluster]:
    """``hotline serve --role core`` and ``--role web`` running, the demo data seeded."""
    await hang_up_leftover_calls(asterisk_bed)
    core_settings = role_settings(asterisk_bed, tmp_path, "core", postgres_database)
    web_settings = role_settings(asterisk_bed, tmp_path, "web", postgres_database)
    async with database(postgres_database) as sessions, contextlib.AsyncExitStack() as stack:
        core = await start_role(core_settings, "core", redis_server)
        stack.push_async_callback(stop_cleanly, core)
        await core.wait_line("hotline core up", START_S)  # migrated the database
        await seed_demo(postgres_database)
        for login in (AGENT, SUPERVISOR):
            await agents.set_password(sessions, login, PASSWORD)
        async with sessions() as s:
            number = await s.scalar(select(Case.number).join(Resident)
                                    .where(Resident.name == CALLER_NAME))
        assert number

        web = await start_role(web_settings, "web", redis_server)
        stack.push_async_callback(stop_cleanly, web)
        await web.wait_line("hotline web up", START_S)
        stack.push_async_callback(leave_queues, core_settings)
        base = f"http://127.0.0.1:{web_settings.web.port}"
        health: dict[str, Any] = {}

        async def healthy() -> bool:  # once its own AMI link has logged in
            async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as answer:
                health.update(await answer.json())
                return answer.status == 200
        await wait_until(healthy, WAIT_S, "the web node is healthy")
        assert health["role"] == "web" and health["audiosocket_port"] is None
        yield Cluster(core_settings, web_settings, sessions, number, base, stack)


async def recorded_once(cluster: Cluster, call_id: str) -> None:
    """The core wrote the call's consultation, ended, each of its steps once (a second
    recorder would add each again)."""
    async def ended() -> bool:
        async with cluster.sessions() as s:
            found = (await s.scalars(select(Consultation)
                                     .where(Consultation.call_id == call_id))).all()
        return len(found) == 1 and found[0].ended_at is not None

    await wait_until(ended, WAIT_S, "the core wrote the consultation's end")
    [consultation] = [c for c in await find_consultations(cluster.sessions, phone=CALLER)
                      if c.call_id == call_id]
    kinds = [s["kind"] for s in consultation.steps]
    for kind in ("ivr_connected", "told", "route", "queued", "agent_answered"):
        assert kinds.count(kind) == 1, (kind, kinds)
    assert "agent_ringing" in kinds, kinds
    assert consultation.agent_login == AGENT


async def test_core_and_web_processes_pop_on_the_web_node_and_record_once(
        cluster: Cluster) -> None:
    stack = cluster.stack
    desk = WebUser(cluster.base)
    stack.push_async_callback(desk.close)
    await desk.sign_in("desk", AGENT, PASSWORD, "/desk/ws")  # the web's AMI adds the phone
    wallboard = WebUser(cluster.base)
    stack.push_async_callback(wallboard.close)
    await wallboard.sign_in("console", SUPERVISOR, PASSWORD, "/console/wallboard/ws")
    phone = await stack.enter_async_context(AgentPhone(cluster.core, EXTENSION))
    # The queue member's state is published by the core and reaches the web node's desk.
    await desk.wait_for(lambda m: m.get("type") == "status"
                        and m["agent"]["status"] == "available", WAIT_S,
                        "saying the agent is available")

    # 张三: 1 = case status, the number, # , 1 = yes; 2 = an agent.
    number = cluster.case_number
    caller = await stack.enter_async_context(HeldCaller(
        cluster.core, number=CALLER, name=CALLER_NAME, keys=f"1{number}#12"))
    ringing = await desk.wait_for(pop_with_steps(number), WAIT_S,
                                  "popping the call with the IVR's steps")
    call_id = ringing["call"]["call_id"]
    await phone.wait_answered(WAIT_S)
    await desk.wait_for(lambda m: m.get("type") == "pop" and m["call"]["call_id"] == call_id
                        and m["call"]["phase"] == "connected", WAIT_S, "connected")
    await caller.hang_up()
    await desk.wait_for(lambda m: m.get("type") == "pop" and m["call"]["call_id"] == call_id
                        and m["call"]["phase"] == "ended", WAIT_S, "ended")
    await recorded_once(cluster, call_id)
    # Today's figures on the web node's wallboard are counted from what the core wrote.
    await wallboard.wait_for(lambda m: m.get("type") == "wallboard"
                             and (m.get("levels") or {}).get("offered") == 1, WAIT_S,
                             "counting the call")


async def test_the_pop_reaches_the_agents_browser_on_the_web_node(
        cluster: Cluster, browser) -> None:  # type: ignore[no-untyped-def]
    expect = pytest.importorskip("playwright.async_api").expect
    stack = cluster.stack
    context = await browser.new_context(locale="zh-CN")
    stack.push_async_callback(context.close)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{cluster.base}/desk/login")
    await page.fill("#login", AGENT)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(f"{cluster.base}/desk/", timeout=QUICK_MS)
    await expect(page.locator("#link-state")).to_have_attribute("data-state", "live",
                                                               timeout=QUICK_MS)
    phone = await stack.enter_async_context(AgentPhone(cluster.core, EXTENSION))
    await expect(page.locator("#agent-status")).to_have_attribute(
        "data-status", "available", timeout=WAIT_MS)

    number = cluster.case_number
    caller = await stack.enter_async_context(HeldCaller(
        cluster.core, number=CALLER, name=CALLER_NAME, keys=f"1{number}#12"))
    pop = page.locator("#pop")
    await expect(pop).to_be_visible(timeout=WAIT_MS)
    transcript = page.locator("#ivr-transcript")
    await expect(transcript).to_contain_text(f"已告知工单 {number} 状态为", timeout=QUICK_MS)
    await expect(transcript).to_contain_text("转至人工坐席")
    await phone.wait_answered(WAIT_S)
    await expect(pop).to_have_attribute("data-phase", "connected", timeout=QUICK_MS)
    await expect(page.locator("#caller-name")).to_have_text(CALLER_NAME)
    call_id = await pop.get_attribute("data-call-id")
    assert call_id
    await caller.hang_up()
    await expect(pop).to_have_attribute("data-phase", "ended", timeout=WAIT_MS)
    assert errors == []
    await recorded_once(cluster, call_id)


async def another_web_node(cluster: Cluster, redis: RedisServer, directory: Path) -> str:
    """A further ``hotline serve --role web`` (stopped with the cluster); its address."""
    settings = cluster.web.model_copy(deep=True)
    settings.state_dir = directory / "state"
    settings.web.port = free_tcp_port()
    web = await start_role(settings, "web", redis)
    cluster.stack.push_async_callback(stop_cleanly, web)
    await web.wait_line("hotline web up", START_S)
    return f"http://127.0.0.1:{settings.web.port}"


async def test_the_agent_signing_in_on_another_web_node_mid_call_gets_the_call(
        cluster: Cluster, redis_server: RedisServer, tmp_path: Path) -> None:
    stack = cluster.stack
    second = await another_web_node(cluster, redis_server, tmp_path / "web-2")
    desk = WebUser(cluster.base)
    stack.push_async_callback(desk.close)
    await desk.sign_in("desk", AGENT, PASSWORD, "/desk/ws")
    phone = await stack.enter_async_context(AgentPhone(cluster.core, EXTENSION))
    await desk.wait_for(lambda m: m.get("type") == "status"
                        and m["agent"]["status"] == "available", WAIT_S, "available")
    number = cluster.case_number
    await stack.enter_async_context(HeldCaller(
        cluster.core, number=CALLER, name=CALLER_NAME, keys=f"1{number}#12"))
    await phone.wait_answered(WAIT_S)
    connected = await desk.wait_for(lambda m: m.get("type") == "pop"
                                    and m["call"]["phase"] == "connected", WAIT_S,
                                    "connected")
    call_id = connected["call"]["call_id"]

    # The agent's browser lands on the other web node (its own session there): the desk
    # shows the call the phone is on, with the IVR's steps.
    moved = WebUser(second)
    stack.push_async_callback(moved.close)
    await moved.sign_in("desk", AGENT, PASSWORD, "/desk/ws")
    async with moved.http.get(f"{second}/desk/current-call") as answer:
        assert answer.status == 200, await answer.text()
        current = await answer.json()
    assert current["call"]["call_id"] == call_id and current["call"]["phase"] == "connected"
    assert f"已告知工单 {number} 状态为" in transcript_of({"call": current["call"]})
    assert current["agent"]["status"] == "on_call"


async def test_a_web_node_started_later_shows_the_queue_as_it_is(
        cluster: Cluster, redis_server: RedisServer, tmp_path: Path) -> None:
    stack = cluster.stack
    desk = WebUser(cluster.base)
    stack.push_async_callback(desk.close)
    await desk.sign_in("desk", AGENT, PASSWORD, "/desk/ws")
    await stack.enter_async_context(AgentPhone(cluster.core, EXTENSION))
    await desk.wait_for(lambda m: m.get("type") == "status"
                        and m["agent"]["status"] == "available", WAIT_S, "available")

    # Nothing happens in the queue from here on: a second web node knows the member only
    # from its own AMI link's QueueStatus at its login.
    later = await another_web_node(cluster, redis_server, tmp_path / "web-later")
    wallboard = WebUser(later)
    stack.push_async_callback(wallboard.close)
    await wallboard.sign_in("console", SUPERVISOR, PASSWORD, "/console/wallboard/ws")
    await wallboard.wait_for(
        lambda m: m.get("type") == "wallboard" and any(
            member["extension"] == EXTENSION and member["status"] == "available"
            for member in m["members"]), WAIT_S, "listing the agent as available")
