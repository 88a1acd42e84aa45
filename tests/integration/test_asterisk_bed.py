"""The Asterisk test bed end to end: real Asterisk 22, real SIPp, real AMI and AudioSocket.

No sleeps: every wait is for an AMI event, a SIPp event or a socket message, and bounded.
The AMI client and the AudioSocket parser here are deliberately minimal test doubles; the
service's own adapters live in ivr/.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hotline.asterisk import cli, down, status, up
from hotline.asterisk import host as asterisk_host
from hotline.asterisk.errors import AmiUnreachableError, AsteriskError, PortInUseError
from hotline.asterisk.layout import Installation
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone
from hotline.tools.sipp import CallResult, SippError, place_call

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]

EVENT_WAIT = 10.0
CALLER_NUMBER = "13800138000"
CALLER_NAME = "张三"


# --- a minimal AMI client (whole messages decoded as UTF-8) ------------------------------


@dataclass
class AmiMessage:
    headers: list[tuple[str, str]]

    def get(self, key: str, default: str | None = None) -> str | None:
        return next((v for k, v in self.headers if k == key), default)

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def variables(self, key: str = "ChanVariable") -> dict[str, str]:
        pairs = (v.split("=", 1) for k, v in self.headers if k == key and "=" in v)
        return dict(pairs)


def parse_ami(raw: bytes) -> AmiMessage:
    headers = []
    for line in raw.decode("utf-8").split("\r\n"):
        if ": " in line:
            key, value = line.split(": ", 1)
            headers.append((key, value))
    return AmiMessage(headers)


class AmiClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.events: list[AmiMessage] = []
        self._responses: dict[str, asyncio.Future[AmiMessage]] = {}
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def login(cls, settings: Settings) -> AmiClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(settings.ami.host, settings.ami.port), EVENT_WAIT
        )
        banner = await asyncio.wait_for(reader.readline(), EVENT_WAIT)
        assert banner.startswith(b"Asterisk Call Manager/")
        client = cls(reader, writer)
        reply = await client.action(
            "Login", Username=settings.ami.username, Secret=settings.ami.secret
        )
        assert reply["Response"] == "Success", reply
        return client

    async def _read_loop(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                message = parse_ami(await self.reader.readuntil(b"\r\n\r\n"))
                action_id = message.get("ActionID")
                if message.get("Response") and action_id in self._responses:
                    self._responses.pop(action_id).set_result(message)
                elif message.get("Event"):
                    async with self._changed:
                        self.events.append(message)
                        self._changed.notify_all()

    async def action(self, name: str, **headers: str) -> AmiMessage:
        action_id = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self._responses[action_id] = future
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        await self.writer.drain()
        return await asyncio.wait_for(future, EVENT_WAIT)

    async def wait_event(
        self, match: Callable[[AmiMessage], bool], *, since: int = 0, within: float = EVENT_WAIT
    ) -> AmiMessage:
        async def found() -> AmiMessage:
            async with self._changed:
                while True:
                    hit = next((e for e in self.events[since:] if match(e)), None)
                    if hit is not None:
                        return hit
                    await self._changed.wait()
        return await asyncio.wait_for(found(), within)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def event(name: str, **fields: str) -> Callable[[AmiMessage], bool]:
    def match(message: AmiMessage) -> bool:
        return message.get("Event") == name and all(message.get(k) == v for k, v in fields.items())
    return match


def user_event(name: str, **fields: str) -> Callable[[AmiMessage], bool]:
    return event("UserEvent", UserEvent=name, **fields)


@pytest.fixture
async def ami(asterisk_bed: Settings) -> AsyncIterator[AmiClient]:
    client = await AmiClient.login(asterisk_bed)
    try:
        yield client
        # Every call test leaves Asterisk idle: no channel may outlive its call.
        await _assert_no_channels(client)
    finally:
        await client.close()


async def _assert_no_channels(client: AmiClient) -> None:
    since = len(client.events)
    reply = await client.action("CoreShowChannels")
    assert reply["Response"] == "Success"
    done = await client.wait_event(
        event("CoreShowChannelsComplete", ActionID=reply["ActionID"]), since=since
    )
    if done["ListItems"] != "0":
        await client.action("Hangup", Channel="/.*/")  # do not let later tests inherit them
        pytest.fail(f"{done['ListItems']} channel(s) left behind")


# --- a minimal AudioSocket server ------------------------------------------------------

KIND_HANGUP, KIND_UUID, KIND_DTMF, KIND_AUDIO = 0x00, 0x01, 0x03, 0x10


async def read_audiosocket(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(3)
    return header[0], await reader.readexactly(int.from_bytes(header[1:3], "big"))


@dataclass
class IvrSession:
    call_id: str = ""
    digits: list[str] = field(default_factory=list)
    kinds: list[int] = field(default_factory=list)


class FakeIvr:
    """Accepts one AudioSocket call, waits for one key, runs ``on_key``, then hangs up."""

    def __init__(self, on_key: Callable[[IvrSession], Awaitable[None]] | None = None) -> None:
        self.on_key = on_key
        self.session: asyncio.Future[IvrSession] = asyncio.get_running_loop().create_future()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = IvrSession()
        try:
            kind, payload = await read_audiosocket(reader)
            session.kinds.append(kind)
            session.call_id = str(uuid.UUID(bytes=payload)) if kind == KIND_UUID else ""
            while not session.digits:
                kind, payload = await read_audiosocket(reader)
                session.kinds.append(kind)
                if kind == KIND_DTMF:
                    session.digits.append(payload.decode("ascii"))
            if self.on_key is not None:
                await self.on_key(session)
            writer.write(bytes([KIND_HANGUP, 0, 0]))
            await writer.drain()
            self.session.set_result(session)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.session.set_exception(AssertionError(f"AudioSocket closed early: {exc}"))
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def ivr_server(settings: Settings, ivr: FakeIvr) -> AsyncIterator[None]:
    server = await asyncio.start_server(
        ivr.handle, settings.audiosocket.host, settings.audiosocket.port
    )
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of 440 Hz at 8 kHz, as a caller would speak it (converted by place_call)."""
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(path),
                    "synth", "1", "sine", "440"], check=True, timeout=30)
    return path


def start_call(settings: Settings, **kwargs: object) -> asyncio.Task[CallResult]:
    """A caller that stays until Asterisk hangs up (bounded by hold_ms)."""
    options: dict[str, object] = {
        "caller_number": CALLER_NUMBER, "caller_name": CALLER_NAME,
        "wait_for_bye": True, "hold_ms": 20_000,
    }
    return asyncio.create_task(place_call(settings, **(options | kwargs)))  # type: ignore[arg-type]


async def finish_call(call: asyncio.Task[CallResult]) -> CallResult:
    try:
        return await asyncio.wait_for(asyncio.shield(call), EVENT_WAIT)
    finally:
        if not call.done():
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call


def closed_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def hang_up(ami: AmiClient, channel: str) -> None:
    reply = await ami.action("Hangup", Channel=channel)
    assert reply["Response"] == "Success", reply


# --- tests -----------------------------------------------------------------------------


def test_status_reports_running_asterisk_22(asterisk_bed: Settings) -> None:
    report = status(asterisk_bed)
    assert report["running"] is True
    assert report["mode"] == "embedded"
    assert str(report["version"]).startswith("22.")
    assert isinstance(report["uptime"], int)
    assert "Asterisk 22." in cli(asterisk_bed, "core show version")


def test_asterisk_runs_under_its_own_host_account(asterisk_bed: Settings) -> None:
    """Not root, and not an id the host gives another service (e.g. postgres)."""
    import pwd

    pid = status(asterisk_bed)["pid"]
    uid = Path(f"/proc/{pid}").stat().st_uid
    assert uid != 0
    assert pwd.getpwuid(uid).pw_name == asterisk_host.HOST_ACCOUNT


def test_up_again_reloads_the_running_asterisk(asterisk_bed: Settings) -> None:
    pid = status(asterisk_bed)["pid"]
    up(asterisk_bed, progress=lambda message: None)
    assert status(asterisk_bed)["pid"] == pid


async def test_ami_user_has_exactly_the_actions_it_needs(
    asterisk_bed: Settings, ami: AmiClient
) -> None:
    queue = asterisk_bed.asterisk.queue_name
    extension = asterisk_bed.asterisk.agent_extensions[-1]  # not registered: calls fail fast
    member = f"PJSIP/{extension}"
    steps = [
        ("Ping", {}),
        ("Setvar", {"Variable": "HOTLINE_TEST", "Value": "1"}),
        ("Getvar", {"Variable": "HOTLINE_TEST"}),
        ("QueueStatus", {"Queue": queue}),
        ("QueueAdd", {"Queue": queue, "Interface": member, "Paused": "true"}),
        ("QueuePause", {"Queue": queue, "Interface": member, "Paused": "false"}),
        ("QueueRemove", {"Queue": queue, "Interface": member}),
        ("CoreShowChannels", {}),
        ("Originate", {"Channel": member, "Exten": extension, "Context": "hotline-agents",
                       "Priority": "1", "Async": "true"}),
    ]
    since = len(ami.events)
    for name, headers in steps:
        reply = await ami.action(name, **headers)
        assert reply["Response"] == "Success", (name, reply.headers)
    await ami.wait_event(event("OriginateResponse", ActionID=reply["ActionID"]), since=since)
    assert (await ami.action("Getvar", Variable="HOTLINE_TEST"))["Value"] == "1"
    redirect = await ami.action("Redirect", Channel="PJSIP/none-0", Exten="0",
                                Context="hotline-agents", Priority="1")
    assert redirect.get("Message") != "Permission denied"
    # Least privilege: no CLI commands, no system-class originate.
    assert (await ami.action("Command", Command="core show version")).get(
        "Message"
    ) == "Permission denied"


async def test_caller_reaches_queue_when_ivr_is_down(
    asterisk_bed: Settings, ami: AmiClient
) -> None:
    call = start_call(asterisk_bed)
    started = await ami.wait_event(user_event("HotlineCallStart", CallerIDNum=CALLER_NUMBER))
    joined = await ami.wait_event(
        event("QueueCallerJoin", Queue=asterisk_bed.asterisk.queue_name)
    )
    call_id = started["CallId"]
    assert str(uuid.UUID(call_id)) == call_id
    assert started["CallerIDName"] == CALLER_NAME
    assert (joined["CallerIDNum"], joined["CallerIDName"]) == (CALLER_NUMBER, CALLER_NAME)
    assert joined.variables() == {"CALL_ID": call_id, "IVR_ROUTE": "fallback"}
    assert "1 call" in cli(asterisk_bed, f"queue show {asterisk_bed.asterisk.queue_name}")

    await hang_up(ami, joined["Channel"])
    result = await finish_call(call)
    assert result.answered and result.hung_up_by == "remote"
    ended = await ami.wait_event(user_event("HotlineCallEnd", CallId=call_id))
    assert ended["Route"] == "fallback"


async def test_audiosocket_gets_uuid_audio_and_key_then_caller_is_queued(
    asterisk_bed: Settings, ami: AmiClient, tone_wav: Path
) -> None:
    ivr = FakeIvr()
    async with ivr_server(asterisk_bed, ivr):
        call = start_call(asterisk_bed, audio=tone_wav, keys="5", pause_before_keys_ms=800)
        session = await asyncio.wait_for(ivr.session, EVENT_WAIT)
        joined = await ami.wait_event(event("QueueCallerJoin"))
    started = await ami.wait_event(user_event("HotlineCallStart", CallId=session.call_id))
    assert session.kinds[0] == KIND_UUID
    assert KIND_AUDIO in session.kinds
    assert session.digits == ["5"]
    assert started["Channel"] == joined["Channel"]
    assert joined.variables() == {"CALL_ID": session.call_id, "IVR_ROUTE": "fallback"}

    await hang_up(ami, joined["Channel"])
    assert (await finish_call(call)).hung_up_by == "remote"


async def test_ivr_route_end_hangs_up_the_caller(asterisk_bed: Settings, ami: AmiClient) -> None:
    async def route_end(session: IvrSession) -> None:
        started = await ami.wait_event(user_event("HotlineCallStart", CallId=session.call_id))
        reply = await ami.action(
            "Setvar", Channel=started["Channel"], Variable="IVR_ROUTE", Value="end"
        )
        assert reply["Response"] == "Success", reply.headers

    since = len(ami.events)
    ivr = FakeIvr(on_key=route_end)
    async with ivr_server(asterisk_bed, ivr):
        call = start_call(asterisk_bed, keys="#", pause_before_keys_ms=800)
        session = await asyncio.wait_for(ivr.session, EVENT_WAIT)
        result = await finish_call(call)
    assert session.digits == ["#"]
    assert result.answered and result.hung_up_by == "remote"
    ended = await ami.wait_event(user_event("HotlineCallEnd", CallId=session.call_id))
    assert ended["Route"] == "end"
    assert not any(e.get("Event") == "QueueCallerJoin" for e in ami.events[since:])


async def test_agent_phone_answers_a_queued_caller(asterisk_bed: Settings, ami: AmiClient) -> None:
    queue = asterisk_bed.asterisk.queue_name
    extension = asterisk_bed.asterisk.agent_extensions[0]
    interface = f"PJSIP/{extension}"
    async with AgentPhone(asterisk_bed, extension, ring_ms=200) as phone:
        added = await ami.action("QueueAdd", Queue=queue, Interface=interface,
                                 MemberName=f"Agent {extension}")
        assert added["Response"] == "Success", added.headers
        try:
            call = start_call(asterisk_bed, caller_number="13900139000", caller_name="李四")
            called = await ami.wait_event(event("AgentCalled", Interface=interface))
            connected = await ami.wait_event(event("AgentConnect", Interface=interface))
            await phone.wait_answered(EVENT_WAIT)
            call_id = called.variables()["CALL_ID"]
            assert called.variables("DestChanVariable")["CALL_ID"] == call_id
            assert connected["CallerIDName"] == "李四"

            await hang_up(ami, connected["Channel"])
            assert (await finish_call(call)).hung_up_by == "remote"
            assert await phone.wait_hangup(EVENT_WAIT) == "remote"
            await ami.wait_event(event("AgentComplete", Interface=interface))
        finally:
            await ami.action("QueueRemove", Queue=queue, Interface=interface)


async def test_softphone_registers_and_dials_the_hotline(
    asterisk_bed: Settings, ami: AmiClient
) -> None:
    user, password = asterisk_bed.asterisk.softphone_user, asterisk_bed.asterisk.softphone_password
    async with AgentPhone(asterisk_bed, user, password=password):
        assert f"{user}/sip:{user}@127.0.0.1" in cli(asterisk_bed, f"pjsip show aor {user}")
    call = start_call(asterisk_bed, caller_number=user, caller_name="", auth_password=password)
    joined = await ami.wait_event(event("QueueCallerJoin", CallerIDNum=user))
    assert joined["Channel"].startswith(f"PJSIP/{user}-")
    await hang_up(ami, joined["Channel"])
    assert (await finish_call(call)).hung_up_by == "remote"


async def test_agent_phone_with_a_wrong_password_cannot_register(asterisk_bed: Settings) -> None:
    extension = asterisk_bed.asterisk.agent_extensions[1]
    with pytest.raises(SippError, match=f"{extension} could not register"):
        async with AgentPhone(asterisk_bed, extension, password="wrong-password"):
            pass


async def test_cancelled_caller_leaves_no_channel_behind(
    asterisk_bed: Settings, ami: AmiClient
) -> None:
    call = start_call(asterisk_bed, caller_number="13700137000")
    joined = await ami.wait_event(event("QueueCallerJoin", CallerIDNum="13700137000"))
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await ami.wait_event(event("Hangup", Channel=joined["Channel"]))


async def test_several_callers_at_once_all_reach_the_queue(
    asterisk_bed: Settings, ami: AmiClient
) -> None:
    numbers = ["13800000001", "13800000002", "13800000003"]
    calls = [start_call(asterisk_bed, caller_number=n, caller_name=f"来电{i}")
             for i, n in enumerate(numbers)]
    joins = [await ami.wait_event(event("QueueCallerJoin", CallerIDNum=n)) for n in numbers]
    assert "3 calls" in cli(asterisk_bed, f"queue show {asterisk_bed.asterisk.queue_name}")
    for joined in joins:
        await hang_up(ami, joined["Channel"])
    results = [await finish_call(call) for call in calls]
    assert [r.hung_up_by for r in results] == ["remote"] * 3
    assert len({r.call_id for r in results}) == 3


def test_external_mode_only_checks_ami(asterisk_bed: Settings) -> None:
    external = asterisk_bed.model_copy(
        update={"asterisk": asterisk_bed.asterisk.model_copy(update={"mode": "external"})}
    )
    up(external, progress=lambda message: None)
    report = status(external)
    assert report["mode"] == "external" and report["running"] is True
    assert str(report["ami_banner"]).startswith("Asterisk Call Manager/")
    down(external)  # must not stop the Asterisk it does not own
    assert status(asterisk_bed)["running"] is True
    unreachable = external.model_copy(
        update={"ami": external.ami.model_copy(update={"port": closed_tcp_port()})}
    )
    with pytest.raises(AmiUnreachableError, match="not reachable"):
        up(unreachable, progress=lambda message: None)


def test_port_in_use_is_reported_with_its_holder() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(PortInUseError, match=rf"udp/{port} .* by \S+ \(pid {os.getpid()}\)"):
            asterisk_host.check_port_free("127.0.0.1", port, socket.SOCK_DGRAM, "SIP")


def test_down_leaves_nothing_behind_and_up_refuses_a_taken_port(
    asterisk_bed: Settings,
) -> None:
    inst = Installation.load(asterisk_bed.state_dir)
    assert inst is not None
    down(asterisk_bed)
    try:
        assert status(asterisk_bed)["running"] is False
        assert_nothing_left(inst)
        a = asterisk_bed.asterisk
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
            squatter.bind((a.bind_host, a.sip_port))
            with pytest.raises(PortInUseError, match=rf"SIP port udp/{a.sip_port} "):
                up(asterisk_bed, progress=lambda message: None)
        assert_nothing_left(inst)
    finally:
        restart_bed(asterisk_bed)  # later tests share the bed


def restart_bed(settings: Settings, attempts: int = 3) -> None:
    """Start the shared bed again; a start that fails (a port not yet released on a loaded
    host) is tried again, bounded, and the last error raised."""
    for attempt in range(1, attempts + 1):
        try:
            up(settings, progress=lambda message: None)
            return
        except AsteriskError:
            if attempt == attempts:
                raise
            down(settings)


def assert_nothing_left(inst: Installation) -> None:
    if inst.kind == "chroot":
        assert asterisk_host.pids_in_root(inst.root) == []
        root = str(inst.root.resolve())
        assert [m for m in asterisk_host.mounts_under(inst.root) if m != root] == []
