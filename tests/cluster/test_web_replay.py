"""A web node started while a call is under way (hotline/roles/web.py's replay of recent
stream history): ``hotline serve --role core`` and a first ``--role web`` run as in
tests/cluster/test_roles.py (real Asterisk, SIPp caller and agent phone, Redis, PostgreSQL).
While the agent's phone rings, a second web node starts and replays the stream's recent
events; the agent's browser (Chromium) moving to it shows the ringing call with the IVR's
steps (nothing but the stream tells a web node that a phone rings: its own AMI link's
resynchronisation reports members and connected calls only), follows it to the answer and
the end, and the wallboard there counts the call once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hotline.bus.redis_server import RedisServer
from hotline.tools.bed import free_tcp_port
from hotline.tools.phones import AgentPhone
from tests.cluster.test_roles import (
    AGENT,
    CALLER,
    CALLER_NAME,
    EXTENSION,
    PASSWORD,
    QUICK_MS,
    START_S,
    SUPERVISOR,
    WAIT_MS,
    WAIT_S,
    Cluster,
    WebUser,
    cluster,  # noqa: F401  (the fixture)
    pop_with_steps,
    start_role,
    stop_cleanly,
)
from tests.integration.fault_tools import HeldCaller

pytestmark = pytest.mark.asterisk
RING_MS = 10_000
"""The agent's phone rings this long before it answers (the queue rings it for 15 s): time
for the second web node to start and the browser to move there."""


async def test_a_web_node_started_while_the_phone_rings_shows_the_call_and_follows_it(
        cluster: Cluster, redis_server: RedisServer, browser,  # type: ignore[no-untyped-def]  # noqa: F811
        tmp_path: Path) -> None:
    expect = pytest.importorskip("playwright.async_api").expect
    stack = cluster.stack
    desk = WebUser(cluster.base)
    stack.push_async_callback(desk.close)
    await desk.sign_in("desk", AGENT, PASSWORD, "/desk/ws")
    phone = await stack.enter_async_context(AgentPhone(cluster.core, EXTENSION,
                                                       ring_ms=RING_MS))
    await desk.wait_for(lambda m: m.get("type") == "status"
                        and m["agent"]["status"] == "available", WAIT_S, "available")
    number = cluster.case_number
    caller = await stack.enter_async_context(HeldCaller(
        cluster.core, number=CALLER, name=CALLER_NAME, keys=f"1{number}#12"))
    ringing = await desk.wait_for(pop_with_steps(number), WAIT_S, "the ringing pop")
    call_id = ringing["call"]["call_id"]

    # Only now does the second web node start: it has seen none of the call live.
    settings = cluster.web.model_copy(deep=True)
    settings.state_dir = tmp_path / "web-later" / "state"
    settings.web.port = free_tcp_port()
    later = await start_role(settings, "web", redis_server)
    stack.push_async_callback(stop_cleanly, later)
    await later.wait_line("hotline web up", START_S)
    replayed = re.search(r"replayed (\d+) events", "".join(later.lines))
    assert replayed and int(replayed.group(1)) > 0, "".join(later.lines[-30:])
    base = f"http://127.0.0.1:{settings.web.port}"

    context = await browser.new_context(locale="zh-CN")
    stack.push_async_callback(context.close)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base}/desk/login")
    await page.fill("#login", AGENT)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(f"{base}/desk/", timeout=QUICK_MS)
    pop = page.locator("#pop")
    await expect(pop).to_be_visible(timeout=WAIT_MS)
    await expect(pop).to_have_attribute("data-call-id", call_id, timeout=QUICK_MS)
    await expect(pop).to_have_attribute("data-phase", "ringing", timeout=QUICK_MS)
    transcript = page.locator("#ivr-transcript")
    await expect(transcript).to_contain_text(f"已告知工单 {number} 状态为", timeout=QUICK_MS)
    await expect(transcript).to_contain_text("转至人工坐席")
    await phone.wait_answered(WAIT_S)
    await expect(pop).to_have_attribute("data-phase", "connected", timeout=WAIT_MS)
    await expect(page.locator("#caller-name")).to_have_text(CALLER_NAME)

    wallboard = WebUser(base)
    stack.push_async_callback(wallboard.close)
    await wallboard.sign_in("console", SUPERVISOR, PASSWORD, "/console/wallboard/ws")
    board = await wallboard.wait_for(
        lambda m: m.get("type") == "wallboard" and any(
            member["extension"] == EXTENSION and member["status"] == "on_call"
            for member in m["members"]), WAIT_S, "the agent on the call")
    assert board["today"]["answered"] == 1, board["today"]  # counted once

    # Live from here on: the caller hangs up, the moved desk follows.
    await caller.hang_up()
    await expect(pop).to_have_attribute("data-phase", "ended", timeout=WAIT_MS)
    assert errors == []
