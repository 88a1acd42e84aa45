"""Pop delay through the cluster for ``bench.cluster --pop-calls K``: agent1 signed in at the
desk of the LAST web node of the plan (control runs in another process; events reach that
web node over Redis), agent1's SIPp phone registered where the cluster's agents register
(:func:`agent_registrar`: the edge's phones' port, which sends it to the queue node; without
a queue node, the first media node), silent callers through the edge (the IVR routes them to
the queue after the greeting). Each delay: from the agent's phone answering (it answers 1 ms
after it rings, so this is the ring) to the pop for that call arriving on the desk's
websocket, both on this process's monotonic clock; negative when the pop came first."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

import aiohttp

from hotline.cluster.plan import Plan
from hotline.edge import nodes
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone, at_phones_port
from hotline.tools.sipp import place_call

AGENT, EXTENSION = "agent1", "2001"
WAIT_S = 60.0


class Desk:
    """agent1 at a web node's desk with its websocket open; every message kept with the
    monotonic time it arrived."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.csrf = ""
        """The desk page's CSRF token, for its actions (``pause``)."""
        self.changed = asyncio.Condition()
        self.reader: asyncio.Task[None] | None = None

    async def sign_in(self, password: str) -> None:
        async with self.http.get(f"{self.base}/desk/login") as form:
            found = re.search(r'name="csrf" value="([^"]+)"', await form.text())
            if not found:
                raise RuntimeError("no CSRF token on the desk's sign-in form")
        async with self.http.post(f"{self.base}/desk/login", data={
                "csrf": found.group(1), "login": AGENT, "password": password}) as answer:
            if not str(answer.url).endswith("/desk/"):
                raise RuntimeError(f"desk sign-in refused ({answer.status})")
            page = re.search(r'data-csrf="([^"]+)"', await answer.text())
            self.csrf = page.group(1) if page else ""
        ws = await self.http.ws_connect(self.base.replace("http", "ws", 1) + "/desk/ws")
        self.reader = asyncio.create_task(self._read(ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            async with self.changed:
                self.messages.append((time.monotonic(), json.loads(message.data)))
                self.changed.notify_all()

    async def pause(self, paused: bool) -> None:
        """The desk's pause (``True``) or ready (``False``) button."""
        async with self.http.post(f"{self.base}/desk/pause", data={
                "csrf": self.csrf, "paused": "1" if paused else "0"}) as answer:
            if answer.status != 200:
                raise RuntimeError(f"desk pause refused ({answer.status}): "
                                   f"{await answer.text()}")

    async def first(self, match: Any, within: float) -> tuple[float, dict[str, Any]]:
        async with asyncio.timeout(within), self.changed:
            while True:
                for at, message in self.messages:
                    if match(message):
                        return at, message
                await self.changed.wait()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        await self.http.close()


def agent_registrar(settings: Settings) -> Settings:
    """Settings whose SIP address is where the cluster's agents' phones register: the edge's
    phones' port (the edge sends them to the queue node, or its standby), or without a queue
    node the first media node (whose queue the web nodes' [ami] is)."""
    if not settings.edge.queue_nodes:
        return nodes.node_settings(settings, settings.edge.nodes[0])
    return at_phones_port(settings)


async def pop_delays(settings: Settings, plan: Plan, password: str, count: int,
                     max_seconds: float) -> list[float]:
    web = [p for p in plan.processes if p.role == "web"][-1]
    registrar = agent_registrar(settings)
    at_edge = settings.model_copy(update={"asterisk": settings.asterisk.model_copy(
        update={"bind_host": settings.edge.address, "sip_port": settings.edge.port})})
    desk = Desk(f"http://{web.address}:{web.web_port}")
    delays: list[float] = []
    callers: list[asyncio.Task[Any]] = []
    try:
        async with asyncio.timeout(max_seconds):
            await desk.sign_in(password)
            for i in range(count):
                async with AgentPhone(registrar, EXTENSION, ring_ms=1, hold_ms=300) as phone:
                    if i == 0:
                        await desk.first(lambda m: m.get("type") == "status"
                                         and m["agent"]["status"] == "available", WAIT_S)
                    seen = {m["call"]["call_id"] for _, m in desk.messages
                            if m.get("type") == "pop"}
                    # With a queue node, one caller a round (the edge alternates the media
                    # nodes; either reaches the agent). Without one, two: the edge
                    # alternates nodes, so one lands on the first, whose queue it is.
                    callers += [asyncio.create_task(place_call(
                        at_edge, caller_number=f"1360000{2 * i + k:04d}", hold_ms=20_000))
                        for k in range(1 if settings.edge.queue_nodes else 2)]
                    await phone.wait_answered(WAIT_S)
                    answered = time.monotonic()
                    at, _ = await desk.first(lambda m, seen=seen: m.get("type") == "pop"
                                             and m["call"]["call_id"] not in seen, WAIT_S)
                    delays.append(at - answered)
    except TimeoutError:
        print(f"pop delay: stopped after {len(delays)} of {count} pops (bound "
              f"{max_seconds:.0f} s)")
    finally:
        for task in callers:
            task.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        await desk.close()
    return delays
