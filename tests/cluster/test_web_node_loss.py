"""A web node killed (-9) under a small steady load (issue 16's fault test): ``hotline serve
--role core`` and two ``--role web`` nodes as in tests/cluster/test_roles.py (real Asterisk,
SIPp callers and agent phone, Redis, PostgreSQL, Chromium). The agent is signed in on web-1
while talking to a caller, with two more callers in the IVR and the queue; web-1 is killed.
The agent's browser is sent to web-2's desk, as a load balancer would (the desk's own
reconnect stays on its page's origin: the websocket checks Origin and the cookie is strict
same-site; both nodes here are 127.0.0.1, one host to the browser, as behind a balancer);
the session lives in the database and both nodes share the cookie key (``[web]
session_secret``, from the secrets.toml `hotline cluster up` copies to every node), so web-2
opens it without a new sign-in and shows the current call, connected, with the IVR's
steps. The calls end and each has exactly one complete consultation."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from crm.consultations.service import find_consultations
from crm.storage.private_files import private_dir
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
    WAIT_MS,
    WAIT_S,
    Cluster,
    cluster,  # noqa: F401  (the fixture)
    recorded_once,
    start_role,
)
from tests.integration.fault_tools import HeldCaller, wait_until

pytestmark = pytest.mark.asterisk
OTHERS = ("13900000001", "13900000002")
"""The steady load: two callers from unknown numbers, the first silent (no input: the IVR
routes it to the queue behind the busy agent), the second asking about a case (not theirs:
the IVR asks more)."""


async def test_a_web_node_killed_mid_call_the_desk_goes_on_on_the_other(
        cluster: Cluster, redis_server: RedisServer, browser,  # type: ignore[no-untyped-def]  # noqa: F811
        tmp_path: Path) -> None:
    expect = pytest.importorskip("playwright.async_api").expect
    stack = cluster.stack
    # web-1: a web node of this test's own (killed below); web-2 is the cluster's.
    settings = cluster.web.model_copy(deep=True)
    settings.state_dir = tmp_path / "web-1" / "state"
    settings.web.port = free_tcp_port()
    # The web nodes share the cookie key ([web] session_secret) as `hotline cluster up` gives
    # them: the base's secrets.toml copied into each node's state directory.
    private_dir(settings.state_dir)
    shutil.copyfile(cluster.web.state_dir / "secrets.toml", settings.state_dir / "secrets.toml")
    web1 = await start_role(settings, "web", redis_server)

    async def reap() -> None:  # killed by the test; stopped if the test failed first
        await web1.stop()
    stack.push_async_callback(reap)
    await web1.wait_line("hotline web up", START_S)
    first, second = f"http://127.0.0.1:{settings.web.port}", cluster.base

    context = await browser.new_context(locale="zh-CN")
    stack.push_async_callback(context.close)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{first}/desk/login")
    await page.fill("#login", AGENT)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(f"{first}/desk/", timeout=QUICK_MS)
    link = page.locator("#link-state")
    await expect(link).to_have_attribute("data-state", "live", timeout=QUICK_MS)
    phone = await stack.enter_async_context(AgentPhone(cluster.core, EXTENSION))
    await expect(page.locator("#agent-status")).to_have_attribute(
        "data-status", "available", timeout=WAIT_MS)

    number = cluster.case_number
    caller = await stack.enter_async_context(HeldCaller(
        cluster.core, number=CALLER, name=CALLER_NAME, keys=f"1{number}#12"))
    pop = page.locator("#pop")
    await phone.wait_answered(WAIT_S)
    await expect(pop).to_have_attribute("data-phase", "connected", timeout=WAIT_MS)
    call_id = await pop.get_attribute("data-call-id")
    assert call_id
    others = [await stack.enter_async_context(HeldCaller(cluster.core, number=n, keys=k))
              for n, k in zip(OTHERS, ("", f"1{number}#12"), strict=True)]

    steps: dict[str, list[str]] = {}
    calls: dict[str, set[str]] = {}

    async def under_way() -> bool:  # both on, one at least queued behind the busy agent
        for n in OTHERS:
            found = await find_consultations(cluster.sessions, phone=n)
            calls[n] = {c.call_id for c in found}
            steps[n] = [step["kind"] for c in found for step in c.steps] + [
                "ENDED" for c in found if c.ended_at is not None]
        return (all("ivr_connected" in kinds and "ENDED" not in kinds
                    for kinds in steps.values())
                and any("queued" in kinds for kinds in steps.values()))
    try:
        await wait_until(under_way, WAIT_S, "a caller in the IVR and one in the queue")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; steps by caller: {steps}") from None
    assert all(len(ids) == 1 for ids in calls.values()), calls

    web1.kill()
    killed = time.monotonic()
    await web1.proc.wait()
    await expect(link).to_have_attribute("data-state", "offline", timeout=QUICK_MS)

    # The load balancer sends the browser to web-2: same cookie, no sign-in form.
    await page.goto(f"{second}/desk/")
    assert page.url == f"{second}/desk/", page.url
    await expect(link).to_have_attribute("data-state", "live", timeout=QUICK_MS)
    await expect(pop).to_have_attribute("data-call-id", call_id, timeout=QUICK_MS)
    await expect(pop).to_have_attribute("data-phase", "connected", timeout=QUICK_MS)
    await expect(page.locator("#caller-name")).to_have_text(CALLER_NAME)
    await expect(page.locator("#ivr-transcript")).to_contain_text(
        f"已告知工单 {number} 状态为", timeout=QUICK_MS)
    await expect(page.locator("#agent-status")).to_have_attribute(
        "data-status", "on_call", timeout=QUICK_MS)
    print(f"\nthe desk on web-2 shows the call {time.monotonic() - killed:.1f} s after the kill")

    for other in others:
        await other.hang_up()
    await caller.hang_up()
    await expect(pop).to_have_attribute("data-phase", "ended", timeout=WAIT_MS)
    assert errors == []
    await recorded_once(cluster, call_id)

    # Each call's consultation ended, once (a caller who left the queue may get a callback
    # later: another call, another consultation).
    seen: dict[str, list[bool]] = {}

    async def one_complete_each() -> bool:
        for n in OTHERS:
            [call] = calls[n]
            seen[call] = [c.ended_at is not None
                          for c in await find_consultations(cluster.sessions, phone=n)
                          if c.call_id == call]
        return all(ended == [True] for ended in seen.values())
    try:
        await wait_until(one_complete_each, WAIT_S, "one ended consultation per other call")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; ended by call: {seen}") from None
