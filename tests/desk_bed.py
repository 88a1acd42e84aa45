"""The agent desk's test bed: the web app (the desk, and the console when a test gives its
deps) on a real database seeded with the demo data, a desk hub the test feeds with the calls'
events as the telephony side would send them, and a fake AMI behind the queue control (no
Asterisk). Shared by the desk's storage tests and the browser tests that drive the desk.

``desk`` is the fixture (import it into a test module); :func:`open_desk` builds the bed for a
fixture of its own (other accounts, the console, time-limit rules)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from crm.agents import accounts as agents
from crm.categories.time_limits import TimeLimitRules
from crm.consultations.recorder import ConsultationRecorder
from crm.demo_data import seed_demo
from crm.live.desk_hub import DeskHub
from crm.storage.db import SessionFactory
from crm.telephony.events import AgentRinging, CallStarted, CallStep
from crm.telephony.steps import RouteChosen, Step
from crm.web.app import HealthReport, create_app
from crm.web.console.app import ConsoleDeps
from crm.web.desk import DeskDeps
from ivr.asterisk.queue_control import QueueControl

PASSWORD = "desk-test-pw-1"
PHONE = "13800138000"
"""张三's number in the demo data."""


class FakeAmi:
    """Records actions; QueueStatus answers nothing."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, dict[str, str]]] = []

    async def action(self, name: str, *, timeout: float = 5.0, **fields: str) -> dict:
        self.actions.append((name, fields))
        return {}

    async def action_list(self, name: str, *, timeout: float = 10.0, **fields: str) -> list:
        self.actions.append((name, fields))
        return []

    def named(self, name: str) -> list[dict[str, str]]:
        return [fields for action, fields in self.actions if action == name]


@dataclass
class Desk:
    sessions: SessionFactory
    server: TestServer
    hub: DeskHub
    ami: FakeAmi
    deps: DeskDeps
    clients: list[TestClient] = field(default_factory=list)

    async def client(self) -> TestClient:
        client = TestClient(self.server)
        await client.start_server()
        self.clients.append(client)
        return client

    @property
    def origin(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"


@asynccontextmanager
async def open_desk(sessions: SessionFactory, db_url: str, *,
                    logins: Iterable[str] = ("agent1", "agent2"),
                    console: ConsoleDeps | None = None,
                    time_limits: TimeLimitRules | None = None) -> AsyncIterator[Desk]:
    """The demo data with :data:`PASSWORD` for ``logins``, and the app serving the desk (and
    ``console``) until the block ends."""
    await seed_demo(db_url)
    for login in logins:
        await agents.set_password(sessions, login, PASSWORD)
    hub = DeskHub(sessions)
    hub.start()
    ami = FakeAmi()
    deps = DeskDeps(sessions, hub, QueueControl(ami, assigned="hotline-assigned"),
                    "test-secret", idle_timeout=3600, time_limits=time_limits)
    app = create_app(sessions, lambda: HealthReport("logged_in", 1, 0, 0), desk=deps,
                     console=console, time_limits=time_limits)
    server = TestServer(app)
    state = Desk(sessions, server, hub, ami, deps)
    try:
        yield state
    finally:
        await hub.close()  # closes the desks' websockets first, so the server stops at once
        for client in state.clients:
            await client.close()
        await server.close()


@pytest.fixture
async def desk(sessions: SessionFactory, db_url: str) -> AsyncIterator[Desk]:
    async with open_desk(sessions, db_url) as state:
        yield state


def csrf_of(html: str) -> str:
    found = re.search(r'(?:name="csrf" value|data-csrf)="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def sign_in(desk: Desk, login: str = "agent1") -> tuple[TestClient, str]:
    client = await desk.client()
    form = await client.get("/desk/login")
    response = await client.post("/desk/login", data={
        "csrf": csrf_of(await form.text()), "login": login, "password": PASSWORD})
    assert response.status == 200 and str(response.url).endswith("/desk/"), await response.text()
    page = await response.text()
    assert "/static/desk.js" in page and "<script>" not in page
    return client, csrf_of(page)


async def post(client: TestClient, csrf: str, path: str, **data: str) -> tuple[int, Any]:
    response = await client.post(path, data={"csrf": csrf, **data})
    return response.status, await response.json()


async def message(ws: Any, kind: str, phase: str | None = None) -> dict[str, Any]:
    """The next message of this kind (and call phase), skipping others."""
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.TEXT, msg
        data = msg.json()
        if data["type"] == kind and (phase is None or data["call"]["phase"] == phase):
            return data


async def start_call(sessions: SessionFactory, call_id: str, *before_route: Step) -> None:
    """A call from 张三 that the IVR routes to the agents (after ``before_route``), as
    recorded."""
    recorder = ConsultationRecorder(sessions)
    recorder.start()
    await recorder.handle(CallStarted(call_id, PHONE, "张三", "PJSIP/gw-00000001"))
    for step in before_route:
        await recorder.handle(CallStep(call_id, step))
    await recorder.handle(CallStep(call_id, RouteChosen("agent")))
    await recorder.close()


def ringing(call: str, ext: str) -> AgentRinging:
    """The queue rings desk phone ``ext`` with 张三's call."""
    return AgentRinging(call, "hotline", f"PJSIP/{ext}", ext, None, PHONE, "张三",
                        "PJSIP/gw-00000001")
