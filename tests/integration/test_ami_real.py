"""AmiClient against the real Asterisk 22 test bed (fixture ``asterisk_bed``)."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from hotline.settings import Settings
from ivr.ami.client import AmiClient, AmiEvent, AmiLoginError, AmiNotConnected
from ivr.settings import AmiSettings

pytestmark = pytest.mark.asterisk

FAST = {"ping_interval": 0.2, "ping_timeout": 1.0, "reconnect_min": 0.1, "reconnect_max": 0.5}


@pytest.fixture
def bed(request: pytest.FixtureRequest) -> Settings:
    """The shared Asterisk test bed; skipped with a reason where it is not provided."""
    try:
        return request.getfixturevalue("asterisk_bed")
    except pytest.FixtureLookupError:
        pytest.skip("fixture asterisk_bed (tests/integration/asterisk_fixtures.py) not registered")


@pytest.fixture
async def make_client(bed: Settings) -> AsyncIterator[Callable[..., AmiClient]]:
    clients: list[AmiClient] = []

    def factory(**overrides: object) -> AmiClient:
        settings = bed.ami.model_copy(update={**FAST, **overrides})
        client = AmiClient(AmiSettings.model_validate(settings.model_dump()), name="itest")
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


class ReadyCounter:
    def __init__(self) -> None:
        self.count = 0
        self.changed = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.changed.set()

    async def wait_count(self, count: int, *, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while self.count < count:
                self.changed.clear()
                await self.changed.wait()


async def test_login_succeeds(make_client: Callable[..., AmiClient]) -> None:
    ami = make_client()
    await ami.start()
    await ami.wait_ready(10)

    assert ami.state == "logged_in"
    assert (await ami.action("Ping")).get("Ping") == "Pong"


async def test_wrong_secret_is_reported_as_login_failure(
    make_client: Callable[..., AmiClient],
) -> None:
    ami = make_client(secret="definitely-not-the-secret")
    await ami.start()

    with pytest.raises(AmiLoginError, match="Authentication failed"):
        await ami.wait_ready(10)  # Asterisk waits about 1 s before answering
    assert ami.state == "login_failed"


async def test_core_show_channels_list(make_client: Callable[..., AmiClient]) -> None:
    ami = make_client()
    await ami.start()
    await ami.wait_ready(10)

    channels = await ami.action_list("CoreShowChannels")

    assert isinstance(channels, list)
    assert all(event.name == "CoreShowChannel" for event in channels)


async def test_global_variable_round_trip_keeps_utf8(
    make_client: Callable[..., AmiClient],
) -> None:
    ami = make_client()
    await ami.start()
    await ami.wait_ready(10)
    name = f"HOTLINE_ITEST_{uuid.uuid4().hex[:8].upper()}"

    assert await ami.getvar("", name) is None
    await ami.setvar("", name, "张三 王芳")
    assert await ami.getvar("", name) == "张三 王芳"
    await ami.setvar("", name, "")


async def test_watchdog_keeps_a_healthy_connection(make_client: Callable[..., AmiClient]) -> None:
    ami = make_client(ping_interval=0.05, ping_timeout=1.0)
    ready = ReadyCounter()
    ami.on_ready(ready)
    await ami.start()
    await ami.wait_ready(10)

    for _ in range(20):  # about a second of traffic with pings interleaved
        assert (await ami.action("Ping")).get("Ping") == "Pong"
        await asyncio.sleep(0.05)

    assert ami.state == "logged_in"
    assert ready.count == 1


async def test_reconnects_after_our_side_drops_the_connection(
    make_client: Callable[..., AmiClient],
) -> None:
    ami = make_client()
    ready = ReadyCounter()
    ami.on_ready(ready)
    await ami.start()
    await ami.wait_ready(10)
    await ready.wait_count(1)

    assert ami._protocol is not None
    ami._protocol.abort()
    with pytest.raises(AmiNotConnected):
        await ami.action("Ping")

    await ready.wait_count(2)
    await ami.wait_ready(10)
    assert (await ami.action("Ping")).get("Ping") == "Pong"


async def test_reconnects_after_the_kernel_kills_the_socket(
    make_client: Callable[..., AmiClient],
) -> None:
    """``ss -K`` destroys only our own socket (needs root and CONFIG_INET_DIAG_DESTROY)."""
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) not installed")
    ami = make_client()
    ready = ReadyCounter()
    ami.on_ready(ready)
    await ami.start()
    await ami.wait_ready(10)
    await ready.wait_count(1)
    assert ami._protocol is not None and ami._protocol._transport is not None
    local_port = ami._protocol._transport.get_extra_info("sockname")[1]

    process = await asyncio.create_subprocess_exec(
        ss, "-K", "-t", "src", "127.0.0.1", "sport", "=", f":{local_port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await process.communicate()
    try:
        await ready.wait_count(2, within=5)
    except TimeoutError:
        pytest.skip(f"ss -K could not kill the socket here: {stderr.decode().strip() or 'no-op'}")
    await ami.wait_ready(10)
    assert (await ami.action("Ping")).get("Ping") == "Pong"


async def test_async_originate_result_arrives_as_an_event(
    make_client: Callable[..., AmiClient],
) -> None:
    """The response carries our ActionID; the later OriginateResponse event (same ActionID)
    must reach subscribers, with a UTF-8 caller name intact."""
    ami = make_client()
    await ami.start()
    await ami.wait_ready(10)
    results: asyncio.Queue[AmiEvent] = asyncio.Queue()
    ami.subscribe("OriginateResponse", results.put_nowait)

    queued = await ami.action(
        "Originate",
        Channel="Local/nobody@hotline-itest-no-such-context",
        Application="Wait",
        Data="1",
        CallerID="张三 <13800138000>",
        Async="true",
    )
    assert queued.get("Message") == "Originate successfully queued"

    async with asyncio.timeout(10):
        event = await results.get()
    assert event.action_id == queued.action_id
    assert event.get("Response") == "Failure"
    assert event.get("CallerIDName") == "张三"
