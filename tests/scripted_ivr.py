"""The hotline IVR (``ivr.menu_call.IvrCall``) on a scripted caller, against a real database:
the caller answers each prompt with keys or speech, every step is published on a bus that a
real consultation recorder (and the test) listens to."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field

from crm.cases.directory import CaseDirectory
from crm.cases.lookup import LookupGuard
from crm.consultations.recorder import ConsultationRecorder
from crm.knowledge.ivr_topics import KnowledgeDirectory
from crm.storage.db import SessionFactory
from crm.telephony.events import CallEnded, CallEventBus, CallStarted, CallStep
from ivr.asterisk.call_tracker import ActiveCall
from ivr.audiosocket.protocol import Audio, Dtmf, Hangup
from ivr.audiosocket.session import Closed
from ivr.flows.menu import IntakeKeys, Speech
from ivr.menu_call import IvrCall, IvrDeps
from ivr.prompting import IvrTimeouts

QUIET = b"\x00\x00" * 160
LOUD = b"\x00\x20" * 160
CALL_SECONDS = 10.0
"""No scripted call takes longer: every prompt is answered at once or times out quickly."""


def keys(digits: str) -> list[object]:
    return [Dtmf(k) for k in digits]


def said(text: str, **heard: object) -> list[object]:
    """The caller speaks: the scripted recognizer hears ``Speech(text, **heard)``."""
    return [Audio(LOUD), Speech(text, **heard)]  # type: ignore[arg-type]


class ScriptedCaller:
    """A media session whose caller answers once a given prompt has played: ``answers``
    maps a prompt to the events that follow it (Dtmf, Audio, Hangup); a Speech after an
    Audio is what the recognizer will hear from that audio."""

    def __init__(self, answers: dict[str, list[object]], call_id: str | None = None) -> None:
        self.call_id = uuid.UUID(call_id) if call_id else uuid.uuid4()
        self.answers = {k: list(v) for k, v in answers.items()}
        self.prompts: list[str] = []
        self.next_prompt = ""
        self.closed = False
        self.hung_up: str | None = None
        self.heard: deque[Speech] = deque()
        self._queue: deque[object] = deque()
        self._wakeup = asyncio.Event()

    async def play(self, pcm: bytes, *, interruptible: bool = True,
                   stop_on_keys: bool = True) -> bool:
        self.prompts.append(self.next_prompt)
        await asyncio.sleep(0)
        for event in self.answers.pop(self.next_prompt, []):
            if isinstance(event, Speech):
                self.heard.append(event)
            else:
                self._queue.append(event)
        self._wakeup.set()
        return not self.closed

    def stop_playback(self) -> bool:
        return False

    async def next_event(self, timeout: float | None = None) -> object | None:
        while True:
            if self._queue:
                event = self._queue.popleft()
                if isinstance(event, Hangup):
                    self.closed = True
                return event
            if self.closed:
                return Closed("caller hung up")
            self._wakeup.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                return None

    async def hangup(self, reason: str = "") -> None:
        self.closed, self.hung_up = True, reason
        self._wakeup.set()


@dataclass
class ScriptedRecognition:
    caller: ScriptedCaller
    _result: Speech | None = None

    async def feed(self, pcm: bytes) -> str | None:
        if self._result is None and self.caller.heard:
            self._result = self.caller.heard.popleft()
        return "final" if self._result is not None else None

    def result(self) -> Speech | None:
        return self._result

    async def close(self) -> None:
        return None


@dataclass
class ScriptedVoice:
    caller: ScriptedCaller

    async def prompt_audio(self, lang: str, prompt: str, vars: dict) -> bytes:
        self.caller.next_prompt = prompt
        return QUIET

    def recognition(self, lang: str, grammar: str) -> ScriptedRecognition:
        return ScriptedRecognition(self.caller)


class NoChannels:
    """The tracker as far as routing needs it: the channel is unknown, so the call hangs up
    and the dialplan would queue it."""

    def channel_of(self, call_id: str) -> str | None:
        return None


@dataclass
class ScriptedCall:
    call_id: str
    caller: ScriptedCaller
    steps: list[CallStep] = field(default_factory=list)


async def run_scripted_call(sessions: SessionFactory, guard: LookupGuard,
                            caller_number: str | None, answers: dict[str, list[object]], *,
                            recorder: ConsultationRecorder | None = None,
                            call_id: str | None = None, bus: CallEventBus | None = None,
                            ended: bool = True,
                            knowledge: KnowledgeDirectory | None = None) -> ScriptedCall:
    """One call through the IVR; its steps are also written by ``recorder`` when given, and
    published on ``bus`` (one of its own if not given). ``ended``: the call ends when the IVR
    is done with it (False: it goes on, to the agent queue). ``knowledge``: service
    information from the knowledge base."""
    caller = ScriptedCaller(answers, call_id)
    call = ScriptedCall(str(caller.call_id), caller)
    bus = CallEventBus() if bus is None else bus

    async def keep(event: object) -> None:
        if isinstance(event, CallStep):
            call.steps.append(event)
    bus.subscribe(keep)
    if recorder is not None:
        bus.subscribe(recorder.handle)
    deps = IvrDeps(bus, CaseDirectory(sessions, guard), NoChannels(),  # type: ignore[arg-type]
                   ScriptedVoice(caller),
                   timeouts=IvrTimeouts(first_input=0.3, inter_digit=0.2, max_utterance=0.5),
                   intake=IntakeKeys(silence_timeout=0.3), knowledge=knowledge)
    await bus.publish(CallStarted(call.call_id, caller_number, "来电"))
    ivr = IvrCall(caller, deps,  # type: ignore[arg-type]
                  announced=ActiveCall(call.call_id, None, caller_number, "来电"))
    async with asyncio.timeout(CALL_SECONDS):
        await ivr.run()
    route = caller.hung_up.removeprefix("routed to ") if caller.hung_up else None
    if ended:
        await bus.publish(CallEnded(call.call_id, route, "16"))
    return call
