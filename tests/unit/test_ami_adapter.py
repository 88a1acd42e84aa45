"""AmiClient against FakeAmiServer on a real loopback socket."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ivr.ami.client import (
    AmiActionError,
    AmiClient,
    AmiEvent,
    AmiLoginError,
    AmiNotConnected,
    AmiTimeout,
)
from ivr.settings import AmiSettings
from tests.ami_replay import FakeAmiServer, FakeAmiSession, format_message

SESSION = Path(__file__).resolve().parents[1] / "data" / "ami" / "queue_call.txt"
CALL_ID = "c7d4e2a0-5b1f-4e0a-9a61-2f0d3b8c9e11"
SECRET = "s3cret-for-tests"


class Collector:
    """An event handler that tests can wait on."""

    def __init__(self) -> None:
        self.events: list[AmiEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: AmiEvent) -> None:
        self.events.append(event)
        self._changed.set()

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.events]

    async def wait_count(self, count: int, *, within: float = 3.0) -> list[AmiEvent]:
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events


class ReadyCounter:
    def __init__(self) -> None:
        self.count = 0
        self.changed = asyncio.Event()

    async def __call__(self) -> None:
        self.count += 1
        self.changed.set()

    async def wait_count(self, count: int, *, within: float = 3.0) -> None:
        async with asyncio.timeout(within):
            while self.count < count:
                self.changed.clear()
                await self.changed.wait()


def make_settings(port: int, **overrides: object) -> AmiSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "username": "hotline",
        "secret": SECRET,
        "ping_interval": 0.2,
        "ping_timeout": 0.5,
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
    }
    values.update(overrides)
    return AmiSettings.model_validate(values)


@pytest.fixture
async def server() -> AsyncIterator[FakeAmiServer]:
    async with FakeAmiServer(secret=SECRET) as fake:
        yield fake


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., AmiClient]]:
    clients: list[AmiClient] = []

    def factory(settings: AmiSettings) -> AmiClient:
        client = AmiClient(settings, name="test")
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def client(
    server: FakeAmiServer, make_client: Callable[..., AmiClient]
) -> AsyncIterator[AmiClient]:
    ami = make_client(make_settings(server.port))
    await ami.start()
    await ami.wait_ready(3)
    yield ami


def own_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]


# -- 1. login ------------------------------------------------------------------------------


async def test_login_success_is_reported(server: FakeAmiServer, make_client) -> None:
    ami = make_client(make_settings(server.port))
    assert ami.state == "disconnected"
    assert server.connections == 0  # no I/O before start()

    await ami.start()
    await ami.wait_ready(3)

    assert ami.state == "logged_in"
    assert server.logins == 1
    login = await server.wait_action("Login")
    assert (login["Username"], login["Secret"], login["Events"]) == ("hotline", SECRET, "on")


async def test_rejected_credentials_raise_at_once_and_stop_retrying(
    server: FakeAmiServer, make_client, caplog: pytest.LogCaptureFixture
) -> None:
    server.login_delay = 0.1  # Asterisk also pauses before saying no
    ami = make_client(make_settings(server.port, secret="wrong"))
    await ami.start()

    started = time.monotonic()
    with pytest.raises(AmiLoginError, match="Authentication failed"):
        await ami.wait_ready(5)

    assert time.monotonic() - started < 2
    assert ami.state == "login_failed"
    assert ami._runner is not None and ami._runner.done()  # no retry loop left running
    assert server.failed_logins == 1
    assert "rejected login as 'hotline'" in caplog.text
    with pytest.raises(AmiLoginError):  # asked again: same clear answer
        await ami.wait_ready(1)


async def test_start_again_after_fixing_the_secret(server: FakeAmiServer, make_client) -> None:
    ami = make_client(make_settings(server.port))
    server.secret = "rotated"
    await ami.start()
    with pytest.raises(AmiLoginError):
        await ami.wait_ready(3)
    assert ami.last_error is not None and "Authentication failed" in ami.last_error

    server.secret = SECRET  # the operator puts manager.conf right
    await ami.start()
    await ami.wait_ready(3)
    assert ami.state == "logged_in"
    assert ami.last_error is None


async def test_unreachable_asterisk_names_host_and_port(make_client) -> None:
    probe = FakeAmiServer()
    await probe.start()
    port = probe.port
    await probe.stop()  # nothing listens on this port now
    ami = make_client(make_settings(port))
    await ami.start()

    with pytest.raises(AmiNotConnected, match=rf"127\.0\.0\.1:{port}.*Refused") as info:
        await ami.wait_ready(0.4)

    assert "not ready within 0.4s" in str(info.value)
    assert ami.state in ("disconnected", "connecting")


async def test_wait_ready_before_start_fails_clearly(server: FakeAmiServer, make_client) -> None:
    ami = make_client(make_settings(server.port))
    with pytest.raises(AmiNotConnected, match="not started"):
        await ami.wait_ready(1)


# -- 2. reconnect --------------------------------------------------------------------------


async def test_dropped_connection_reconnects_and_on_ready_fires_again(
    server: FakeAmiServer, make_client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ivr.ami.client")
    ami = make_client(make_settings(server.port))
    ready = ReadyCounter()
    ami.on_ready(ready)
    await ami.start()
    await ami.wait_ready(3)
    await ready.wait_count(1)

    server.drop_connections()
    await server.wait_logins(2)
    await ready.wait_count(2)
    await ami.wait_ready(3)

    assert ami.state == "logged_in"
    assert ami.logins == 2  # /metrics: one reconnect
    assert "logged_in -> disconnected" in caplog.text
    assert "disconnected -> connecting" in caplog.text
    assert await ami.getvar("", "ANYTHING") is None  # the new connection works


async def test_asterisk_restart_on_same_port(
    server: FakeAmiServer, client: AmiClient, make_client
) -> None:
    ready = ReadyCounter()
    client.on_ready(ready)  # registered after the first login: counts re-logins only

    await server.stop()
    await server.wait_until(lambda: client.state != "logged_in", what="client noticing")
    with pytest.raises(AmiNotConnected):
        await client.action("Ping")
    await server.start()

    await ready.wait_count(1)
    await client.wait_ready(3)
    response = await client.action("Ping")
    assert response.get("Ping") == "Pong"


async def test_reconnect_delays_back_off_up_to_the_maximum(
    make_client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ivr.ami.client")
    probe = FakeAmiServer()
    await probe.start()
    await probe.stop()
    ami = make_client(make_settings(probe.port, reconnect_min=0.02, reconnect_max=0.16))
    await ami.start()

    def delays() -> list[float]:
        return [float(d) for d in re.findall(r"reconnecting in ([0-9.]+)s", caplog.text)]

    await probe.wait_until(lambda: len(delays()) >= 6, what="6 reconnect attempts")

    seen = delays()[:6]
    assert all(0.01 <= d <= 0.16 for d in seen)
    # uniform(delay/2, delay) with delay doubling: 0.02, 0.04, 0.08, then capped at 0.16
    assert seen[0] <= 0.02
    assert all(d >= 0.08 for d in seen[3:])


async def test_reconnect_now_cuts_the_pause_short(server: FakeAmiServer, make_client) -> None:
    ami = make_client(make_settings(server.port, reconnect_min=600, reconnect_max=600))
    ami.reconnect_now()  # not started: nothing to cut short, and nothing remembered
    await ami.start()
    await ami.wait_ready(3)
    ami.reconnect_now()  # connected: no effect on the next pause either
    server.drop_connections()
    await server.wait_until(lambda: ami.state == "disconnected", what="the drop noticed")
    assert server.logins == 1  # waiting out a pause of 300-600 s
    ami.reconnect_now()
    await server.wait_logins(2)
    await ami.wait_ready(3)


async def test_shutdown_event_leads_to_reconnect(server: FakeAmiServer, client: AmiClient) -> None:
    seen = Collector()
    client.subscribe("Shutdown", seen)

    await server.send_event("Shutdown", {"Shutdown": "Cleanly", "Restart": "True"})

    await seen.wait_count(1)
    await server.wait_logins(2)
    await client.wait_ready(3)


# -- 3. ping watchdog ----------------------------------------------------------------------


async def test_pings_are_sent_periodically(server: FakeAmiServer, client: AmiClient) -> None:
    await server.wait_until(
        lambda: sum(a["Action"] == "Ping" for a in server.actions) >= 2, what="two pings"
    )
    assert client.state == "logged_in"
    assert server.connections == 1


async def test_unanswered_ping_means_half_open_and_reconnects(
    server: FakeAmiServer, client: AmiClient, caplog: pytest.LogCaptureFixture
) -> None:
    server.answer_pings = False
    await server.wait_action("Ping")
    server.answer_pings = True  # the next connection is healthy again

    await server.wait_logins(2, within=3)
    await client.wait_ready(3)

    assert "half-open" in caplog.text
    assert server.connections == 2


# -- 4. UTF-8 across TCP reads -------------------------------------------------------------


async def test_character_split_across_tcp_writes_is_decoded(
    server: FakeAmiServer, client: AmiClient
) -> None:
    seen = Collector()
    client.subscribe("UserEvent", seen)
    data = format_message({"Event": "UserEvent", "CallerName": "张三"}).encode()
    cut = data.index("张".encode()) + 1

    await server.send(data, chunks=[cut, cut + 1], pause=0.02)

    [event] = await seen.wait_count(1)
    assert event.get("CallerName") == "张三"


async def test_recorded_queue_call_replayed_in_small_chunks(
    server: FakeAmiServer, client: AmiClient
) -> None:
    seen = Collector()
    client.subscribe("*", seen)

    await server.replay(SESSION, chunk_size=7)

    events = await seen.wait_count(13)
    names = [e.name for e in events if e.name != "FullyBooted"]
    assert names[:4] == ["Newchannel", "Newstate", "VarSet", "UserEvent"]
    start = next(e for e in events if e.name == "UserEvent")
    assert start.get("CallerIDName") == "张三"
    called = next(e for e in events if e.name == "AgentCalled")
    assert called.chan_variables()["CALL_ID"] == CALL_ID
    assert called.chan_variables("Dest")["CALL_ID"] == CALL_ID
    assert called.get("MemberName") == "王芳"


# -- 5. subscribers ------------------------------------------------------------------------


async def test_failing_subscribers_are_logged_and_contained(
    server: FakeAmiServer, client: AmiClient, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_sync(event: AmiEvent) -> None:
        raise RuntimeError("sync boom")

    async def broken_async(event: AmiEvent) -> None:
        raise RuntimeError("async boom")

    healthy = Collector()
    client.subscribe("Agent*", broken_sync)
    client.subscribe("*", broken_async)
    client.subscribe("Agent*", healthy)

    await server.replay(SESSION)
    await healthy.wait_count(3)
    await server.send_event("AgentCalled", {"Queue": "hotline"})  # later events still flow
    await healthy.wait_count(4)

    assert healthy.names == ["AgentCalled", "AgentConnect", "AgentComplete", "AgentCalled"]
    assert "failed on AgentCalled event" in caplog.text
    assert "sync boom" in caplog.text and "async boom" in caplog.text
    assert client.state == "logged_in"
    assert server.connections == 1


async def test_slow_async_subscriber_keeps_order_and_does_not_block_others(
    server: FakeAmiServer, client: AmiClient
) -> None:
    release = asyncio.Event()
    slow_seen: list[str] = []

    async def slow(event: AmiEvent) -> None:
        await release.wait()
        slow_seen.append(event.get("N") or "")

    fast = Collector()
    client.subscribe("Tick", slow)
    client.subscribe("Tick", fast)
    for n in range(5):
        await server.send_event("Tick", {"N": str(n)})

    await fast.wait_count(5)  # while the slow one is still blocked on its first event
    assert slow_seen == []
    release.set()
    await server.wait_until(lambda: len(slow_seen) == 5, what="slow subscriber")
    assert slow_seen == ["0", "1", "2", "3", "4"]


async def test_patterns_and_unsubscribe(server: FakeAmiServer, client: AmiClient) -> None:
    agents, everything = Collector(), Collector()
    stop_agents = client.subscribe("agent*", agents)  # case-insensitive
    client.subscribe("*", everything)

    await server.send_event("AgentCalled")
    await server.send_event("Hangup")
    await everything.wait_count(2)
    stop_agents()
    await server.send_event("AgentConnect")
    await everything.wait_count(3)

    assert agents.names == ["AgentCalled"]
    assert everything.names == ["AgentCalled", "Hangup", "AgentConnect"]


async def test_failing_on_ready_handler_is_logged_and_others_run(
    server: FakeAmiServer, make_client, caplog: pytest.LogCaptureFixture
) -> None:
    server.channels = [{"Channel": "PJSIP/1001-00000000", "Uniqueid": "1.0"}]
    resynced: list[list[AmiEvent]] = []
    ami = make_client(make_settings(server.port))

    async def broken() -> None:
        raise RuntimeError("resync exploded")

    async def resync() -> None:
        resynced.append(await ami.action_list("CoreShowChannels"))

    ami.on_ready(broken)
    ami.on_ready(resync)
    await ami.start()
    await ami.wait_ready(3)
    await server.wait_until(lambda: resynced, what="resync")

    assert [e.get("Channel") for e in resynced[0]] == ["PJSIP/1001-00000000"]
    assert "resync exploded" in caplog.text
    assert ami.state == "logged_in"


# -- 6. actions and the connection ---------------------------------------------------------


async def test_pending_action_fails_fast_when_connection_drops_and_is_not_resent(
    server: FakeAmiServer, client: AmiClient
) -> None:
    server.silent_actions.add("originate")
    pending = asyncio.create_task(
        client.action("Originate", timeout=10, Channel="PJSIP/2001", Application="Playback")
    )
    await server.wait_action("Originate")

    started = time.monotonic()
    server.drop_connections()
    with pytest.raises(AmiNotConnected, match="Originate"):
        await pending
    assert time.monotonic() - started < 1

    await server.wait_logins(2)
    await client.wait_ready(3)
    await client.getvar("", "X")  # a round trip: anything re-sent would have arrived before
    assert sum(a["Action"] == "Originate" for a in server.actions) == 1


async def test_actions_while_not_connected_raise(server: FakeAmiServer, make_client) -> None:
    ami = make_client(make_settings(server.port))
    with pytest.raises(AmiNotConnected, match="not started"):
        await ami.action("Ping")
    await ami.start()
    await ami.wait_ready(3)
    await ami.close()
    with pytest.raises(AmiNotConnected, match="closed"):
        await ami.action("Ping")


async def test_error_response_raises_with_asterisk_message(client: AmiClient) -> None:
    with pytest.raises(AmiActionError, match="No such channel") as info:
        await client.getvar("PJSIP/9999-0000ffff", "CALL_ID")
    assert info.value.message == "No such channel"
    assert info.value.response.get("Response") == "Error"


async def test_unanswered_action_times_out_and_connection_stays_usable(
    server: FakeAmiServer, client: AmiClient
) -> None:
    server.silent_actions.add("queuestatus")
    with pytest.raises(AmiTimeout, match="QueueStatus") as info:
        await client.action_list("QueueStatus", timeout=0.2)
    assert isinstance(info.value, TimeoutError)

    assert (await client.action("Ping")).get("Ping") == "Pong"
    assert client._protocol is not None and client._protocol._pending == {}


async def test_action_list_collects_events_until_complete(
    server: FakeAmiServer, client: AmiClient
) -> None:
    server.channels = [
        {"Channel": "PJSIP/1001-00000000", "Uniqueid": "1.0", "ChanVariable": f"CALL_ID={CALL_ID}"},
        {"Channel": "PJSIP/2001-00000001", "Uniqueid": "1.1", "ChanVariable": "CALL_ID="},
    ]
    channels = await client.action_list("CoreShowChannels")

    assert [e.name for e in channels] == ["CoreShowChannel", "CoreShowChannel"]
    assert [e.chan_variables()["CALL_ID"] for e in channels] == [CALL_ID, ""]
    server.channels = []
    assert await client.action_list("CoreShowChannels") == []


async def test_action_list_error_response_raises(server: FakeAmiServer, client: AmiClient) -> None:
    def refuse(session: FakeAmiSession, headers: dict[str, str]) -> str:
        return format_message(
            {"Response": "Error", "ActionID": headers["ActionID"], "Message": "Permission denied"}
        )

    server.handlers["queuestatus"] = refuse
    with pytest.raises(AmiActionError, match="Permission denied"):
        await client.action_list("QueueStatus", Queue="hotline")


async def test_events_interleaved_with_a_list_response_still_reach_subscribers(
    server: FakeAmiServer, client: AmiClient
) -> None:
    def status(session: FakeAmiSession, headers: dict[str, str]) -> str:
        aid = headers["ActionID"]
        return "".join(
            format_message(m)
            for m in (
                {"Response": "Success", "ActionID": aid, "EventList": "start"},
                {"Event": "QueueParams", "ActionID": aid, "Queue": "hotline"},
                {"Event": "Hangup", "Uniqueid": "9.9"},
                {"Event": "QueueMember", "ActionID": aid, "Name": "王芳"},
                {"Event": "QueueStatusComplete", "ActionID": aid, "EventList": "Complete"},
            )
        )

    server.handlers["queuestatus"] = status
    hangups = Collector()
    client.subscribe("Hangup", hangups)

    items = await client.action_list("QueueStatus")

    assert [e.name for e in items] == ["QueueParams", "QueueMember"]
    assert items[1].get("Name") == "王芳"
    await hangups.wait_count(1)


async def test_setvar_and_getvar(server: FakeAmiServer, client: AmiClient) -> None:
    server.variables["PJSIP/1001-00000000"] = {}

    await client.setvar("PJSIP/1001-00000000", "HOTLINE_ROUTE", "queue")
    await client.setvar("", "HOTLINE_OPEN", "1")

    assert server.variables["PJSIP/1001-00000000"] == {"HOTLINE_ROUTE": "queue"}
    assert await client.getvar("PJSIP/1001-00000000", "HOTLINE_ROUTE") == "queue"
    assert await client.getvar("", "HOTLINE_OPEN") == "1"
    assert await client.getvar("", "NEVER_SET") is None
    setvar = await server.wait_action("Setvar")
    assert setvar["Channel"] == "PJSIP/1001-00000000"


async def test_header_injection_is_refused_before_sending(
    server: FakeAmiServer, client: AmiClient
) -> None:
    with pytest.raises(ValueError, match="invalid AMI"):
        await client.setvar("", "NAME", "x\r\nAction: Hangup\r\nChannel: PJSIP/1001")
    await client.action("Ping")
    assert not any(a["Action"] in ("Setvar", "Hangup") for a in server.actions)


# -- 7. malformed input over the socket ----------------------------------------------------


async def test_malformed_messages_are_skipped_without_dropping_the_connection(
    server: FakeAmiServer, client: AmiClient, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Collector()
    client.subscribe("*", seen)
    huge = b"Event: Huge\r\nPayload: " + b"x" * (2 << 20) + b"\r\n\r\n"

    await server.send(b"garbage line\r\n\r\nEvent: First\r\nno colon here\r\nA: 1\r\n\r\n")
    await server.send(huge)
    await server.send(b"Event: Last\r\n\r\n")

    await seen.wait_count(2)
    assert [(e.name, e.get("A")) for e in seen.events] == [("First", "1"), ("Last", None)]
    assert "garbage line" in caplog.text
    assert "no colon here" in caplog.text
    assert "discarding AMI message longer than" in caplog.text
    assert client.state == "logged_in"
    assert server.connections == 1


# -- 8. lifecycle --------------------------------------------------------------------------


async def test_close_leaves_no_task_and_never_reconnects(
    server: FakeAmiServer, make_client
) -> None:
    before = set(own_tasks())
    ami = make_client(make_settings(server.port))
    ami.subscribe("*", Collector())
    ami.subscribe("Hangup", Collector())
    await ami.start()
    await ami.wait_ready(3)
    await server.send_event("Hangup")
    await server.wait_until(lambda: len(set(own_tasks()) - before) >= 4, what="client tasks")

    await ami.close()

    assert set(own_tasks()) - before == set()
    assert ami.state == "closed"
    await server.wait_until(lambda: not server.sessions, what="disconnect")
    await ami.close()  # idempotent
    with pytest.raises(AmiNotConnected):
        await ami.wait_ready(1)
    assert server.connections == 1


async def test_close_while_asterisk_is_down(make_client) -> None:
    probe = FakeAmiServer()
    await probe.start()
    await probe.stop()
    before = set(own_tasks())
    ami = make_client(make_settings(probe.port))
    await ami.start()
    await probe.wait_until(lambda: ami.last_error is not None, what="a failed attempt")

    await ami.close()

    assert set(own_tasks()) - before == set()
    assert ami.state == "closed"


async def test_cancelling_a_waiting_action_forgets_it(
    server: FakeAmiServer, client: AmiClient
) -> None:
    server.silent_actions.add("status")
    waiting = asyncio.create_task(client.action_list("Status"))
    await server.wait_action("Status")

    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    assert client._protocol is not None and client._protocol._pending == {}
    assert client.state == "logged_in"
