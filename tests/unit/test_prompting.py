"""The prompting driver on a real media session (loopback AudioSocket): which keys barge in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum

import pytest

from crm.telephony.events import CallEventBus, CallStep
from crm.telephony.steps import KeysEntered
from ivr.audiosocket.protocol import encode_dtmf
from ivr.audiosocket.server import MediaServer
from ivr.audiosocket.session import MediaSession
from ivr.flows.menu import Collect, Keys
from ivr.prompting import IvrTimeouts, PromptingCall
from ivr.settings import AudioSocketSettings
from tests.call_steps import recording_bus
from tests.unit.test_media_server import CALL_A, WAIT, FakeAsterisk, tone

READBACK_FRAMES = 100  # 2 s: long enough for a key to arrive while it plays


class FlowState(Enum):
    ASKING = "asking"


@dataclass
class TinyFlow:
    language: str = "cmn"
    state: FlowState = FlowState.ASKING


class ToneVoice:
    """Every prompt is a tone; its length depends on the prompt."""

    async def prompt_audio(self, lang: str, prompt: str, vars: dict) -> bytes:
        return tone(READBACK_FRAMES if prompt == "confirm_case_number" else 2)

    def recognition(self, lang: str, grammar: str) -> None:
        return None


class Driver(PromptingCall):
    def __init__(self, session: MediaSession, bus: CallEventBus) -> None:
        super().__init__(session, bus=bus, voice=ToneVoice(), timeouts=IvrTimeouts(),
                         event_call_id="call-1")
        self.flow = TinyFlow()


@dataclass
class Line:
    driver: Driver
    asterisk: FakeAsterisk
    steps: list[CallStep]


@pytest.fixture
async def line() -> AsyncIterator[Line]:
    sessions: asyncio.Queue[MediaSession] = asyncio.Queue()

    async def handler(session: MediaSession) -> None:
        await sessions.put(session)
        await session.wait_closed()

    server = MediaServer(AudioSocketSettings.model_construct(host="127.0.0.1", port=0), handler)
    await server.start()
    asterisk = await FakeAsterisk.connect(server.bound_port, CALL_A)
    try:
        async with asyncio.timeout(WAIT):
            session = await sessions.get()
        bus, steps = recording_bus()
        yield Line(Driver(session, bus), asterisk, steps)
    finally:
        await asterisk.close()
        await server.close()


async def read_back(line: Line, key: str) -> bool:
    """Take an 11-digit number, then play its read-back while the caller presses ``key``."""
    number = "12345678901"
    await line.asterisk.send(*(encode_dtmf(k) for k in number))
    async with asyncio.timeout(WAIT):
        taken = await line.driver.perform([Collect("ask_case_number", "digits", 11)])
    assert taken == Keys(number)
    before = len(line.asterisk.played())
    readback = asyncio.create_task(line.driver._say("confirm_case_number", {}))
    await line.asterisk.wait_for(lambda: len(line.asterisk.played()) >= before + 2)
    await line.asterisk.send(encode_dtmf(key))
    async with asyncio.timeout(READBACK_FRAMES * 0.02 + WAIT):
        return await readback


async def test_hash_after_a_complete_number_does_not_cut_the_read_back(line: Line) -> None:
    assert await read_back(line, "#") is True
    assert not [s for s in line.steps
                if s.kind == "barge_in" and s.detail["prompt"] == "confirm_case_number"]
    assert line.driver.keys == ""  # the '#' was swallowed, not typed ahead


async def test_any_other_key_still_barges_in_on_the_read_back(line: Line) -> None:
    assert await read_back(line, "1") is False
    assert [s.detail for s in line.steps if s.kind == "barge_in"][-1] == {
        "prompt": "confirm_case_number"}
    assert line.driver.keys == "1"


GREETING = Collect("greeting", "intake", 11, timeout=0.3, commands=frozenset({"8", "0"}))


async def test_a_command_key_at_the_greeting_acts_at_once(line: Line) -> None:
    """8 as the first key ends the input at once (no wait for more digits); the keys after
    it stay typed ahead."""
    await line.asterisk.send(encode_dtmf("8"), encode_dtmf("5"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(WAIT):
        taken = await line.driver.perform([GREETING])
    assert taken == Keys("8")
    assert loop.time() - started < line.driver.timeouts.inter_digit
    assert line.driver.keys in ("", "5")


async def test_a_number_starting_with_another_key_is_collected_whole(line: Line) -> None:
    await line.asterisk.send(*(encode_dtmf(k) for k in "26112200017"))
    async with asyncio.timeout(WAIT):
        taken = await line.driver.perform([GREETING])
    assert taken == Keys("26112200017")


async def test_the_greeting_listens_only_for_its_own_short_timeout(line: Line) -> None:
    """Silence after the greeting: no input after the Collect's timeout (0.3 s), not the
    driver's first-input default (5 s)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(WAIT):
        result = await line.driver.perform([GREETING])
    elapsed = loop.time() - started
    assert type(result).__name__ == "NoInput"
    assert 0.3 <= elapsed < line.driver.timeouts.first_input
    assert [s.detail for s in line.steps if s.kind == "no_input"] == [{"state": "asking"}]


async def test_steps_name_the_node_once_the_call_is_known_on_one() -> None:
    """A worker may take the socket before the call's CallStarted came: the node is asked
    for at each step until it is known, then kept (a step after the call's end still
    names it)."""
    bus, steps = recording_bus()
    nodes = iter([None, "media-2", None])
    session = MediaSession.__new__(MediaSession)
    session.call_id = CALL_A  # only the id is read here
    call = PromptingCall(session, bus=bus, voice=ToneVoice(), timeouts=IvrTimeouts(),
                         event_call_id="call-1", node_of=lambda: next(nodes))
    for _ in range(3):
        await call.step(KeysEntered("1"))
    assert [s.node for s in steps] == [None, "media-2", "media-2"]
