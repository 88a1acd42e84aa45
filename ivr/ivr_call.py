"""Runs the call flow for one caller: executes the flow's actions on the media session.

Prompts play with barge-in (a key press or the start of speech stops them at once); input is
collected from keys and, where the language has a model, from streaming recognition, until the
keys are complete, the recogniser's endpointer closes the utterance, or a timeout passes.
Every step is published as a call event so the consultation records it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from crm.call_events import CallEventBus, CallStep
from crm.case_lookup import LookupGuard, find_case_status, resident_language
from crm.db import SessionFactory
from ivr.audiosocket_protocol import Audio, Dtmf, Hangup
from ivr.call_flow import (
    Action,
    Begin,
    CallFlow,
    Collect,
    Input,
    Keys,
    Log,
    LookupCase,
    LookupResult,
    NoInput,
    RecordFailure,
    Route,
    Say,
    SetLanguage,
    Speech,
)
from ivr.call_tracker import CallTracker
from ivr.media_session import Closed, MediaSession, call_logger

log = logging.getLogger(__name__)


class CallerGone(Exception):
    """The caller hung up or the socket closed: stop the flow."""


class Recognition(Protocol):
    """One call's recogniser for one prompt (see ivr/voice.py)."""

    async def feed(self, pcm: bytes) -> str | None:
        """Feed audio; returns "partial" when speech has started, "final" when it ended."""

    def result(self) -> Speech | None: ...

    async def close(self) -> None: ...


class Voice(Protocol):
    async def prompt_audio(self, lang: str, prompt: str, vars: dict) -> bytes: ...

    def recognition(self, lang: str, grammar: str) -> Recognition | None: ...


@dataclass(frozen=True)
class IvrTimeouts:
    first_input: float = 5.0
    inter_digit: float = 3.0
    max_utterance: float = 10.0


@dataclass
class IvrDeps:
    bus: CallEventBus
    sessions: SessionFactory
    guard: LookupGuard
    tracker: CallTracker
    voice: Voice
    timeouts: IvrTimeouts = IvrTimeouts()
    default_language: str = "cmn"


class IvrCall:
    def __init__(self, session: MediaSession, deps: IvrDeps) -> None:
        self.session = session
        self.deps = deps
        self.call_id = str(session.call_id)
        self.flow = CallFlow(default_language=deps.default_language,
                             language=deps.default_language)
        self.keys = ""  # keys typed ahead, during a prompt
        self.log = call_logger(log, self.call_id)

    async def step(self, kind: str, **detail: object) -> None:
        await self.deps.bus.publish(CallStep(self.call_id, kind, dict(detail)))

    async def run(self) -> None:
        caller = await self._caller_number()
        known = await resident_language(self.deps.sessions, caller)
        await self.step("ivr_connected", caller_known=known is not None)
        actions = self.flow.step(Begin(caller, known))
        try:
            while actions:
                nxt = await self._perform(actions)
                if nxt is None:
                    return
                actions = self.flow.step(nxt)
        except CallerGone as gone:
            await self.step("caller_left", state=self.flow.state.value, reason=str(gone))

    async def _caller_number(self) -> str | None:
        """The tracker learns the caller from AMI; the socket may connect a moment earlier."""
        call = await self.deps.tracker.wait_for_call(self.call_id, timeout=3.0)
        return call.caller_number if call else None

    async def _perform(self, actions: list[Action]) -> Input | None:
        result: Input | None = None
        for action in actions:
            if isinstance(action, Say):
                await self._say(action.prompt, action.vars)
            elif isinstance(action, Collect):
                result = await self._collect(action)
            elif isinstance(action, SetLanguage):
                self.flow.language = action.language
            elif isinstance(action, Log):
                await self.step(action.kind, **action.detail)
            elif isinstance(action, LookupCase):
                result = await self._lookup(action.number)
            elif isinstance(action, RecordFailure):
                await self.deps.guard.record_failure(self.flow.caller_number, action.reason)
            elif isinstance(action, Route):
                await self._route(action.route)
                return None
        return result

    async def _lookup(self, number: str) -> LookupResult:
        if await self.deps.guard.blocked(self.flow.caller_number):
            return LookupResult(None, blocked=True)
        case = await find_case_status(self.deps.sessions, number, self.flow.language)
        await self.step("case_lookup", number=number, found=case is not None)
        return LookupResult(case)

    async def _route(self, route: str) -> None:
        channel = self.deps.tracker.channel_of(self.call_id)
        if channel:
            await self.deps.tracker.set_route(channel, route)
        else:
            self.log.warning("channel unknown; the dialplan sends the caller to the queue")
        await self.session.hangup(f"routed to {route}")

    # -- media

    async def _say(self, prompt: str, vars: dict, recog: Recognition | None = None) -> bool:
        """Play a prompt; returns False when the caller barged in."""
        if self.keys:
            return False
        pcm = await self.deps.voice.prompt_audio(self.flow.language, prompt, vars)
        await self.step("prompt", prompt=prompt, language=self.flow.language)
        play = asyncio.create_task(self.session.play(pcm))
        try:
            while not play.done():
                event = await self._next_event(play)
                if event is None:
                    continue
                if await self._take(event, recog) and self.session.stop_playback():
                    await self.step("barge_in", prompt=prompt)
            return play.result()
        finally:
            if not play.done():
                play.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await play

    async def _next_event(self, play: asyncio.Task[bool]) -> object | None:
        getter = asyncio.ensure_future(self.session.next_event())
        done, _ = await asyncio.wait({getter, play}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await getter
        return None

    async def _take(self, event: object, recog: Recognition | None) -> bool:
        """Handle one inbound event; True when the caller started giving input."""
        if isinstance(event, Dtmf):
            self.keys += event.key
            return True
        if isinstance(event, Hangup | Closed) or (event is None and self.session.closed):
            raise CallerGone(getattr(event, "reason", "hangup"))
        if isinstance(event, Audio) and recog is not None:
            return await recog.feed(event.pcm) is not None
        return False

    async def _collect(self, collect: Collect) -> Input:
        recog = self.deps.voice.recognition(self.flow.language, collect.grammar)
        try:
            await self._say(collect.prompt, collect.vars, recog)
            result = await self._gather(collect, recog)
        finally:
            if recog is not None:
                await recog.close()
        await self._log_input(result)
        return result

    async def _gather(self, collect: Collect, recog: Recognition | None) -> Input:
        t = self.deps.timeouts
        deadline = time.monotonic() + t.first_input
        speaking = False
        while True:
            if self._keys_complete(collect.max_digits):
                return self._pop_keys(collect.max_digits)
            if recog is not None and (speech := recog.result()) is not None:
                return speech
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self.keys:
                    return self._pop_keys(collect.max_digits)
                return NoInput()
            event = await self.session.next_event(timeout=remaining)
            if event is None:
                if self.session.closed:
                    raise CallerGone("closed")
                continue
            had_keys = len(self.keys)
            started = await self._take(event, recog)
            if len(self.keys) > had_keys:
                deadline = time.monotonic() + t.inter_digit
            elif started and not speaking:
                speaking = True
                deadline = time.monotonic() + t.max_utterance

    def _keys_complete(self, max_digits: int) -> bool:
        return "#" in self.keys or len(self.keys) >= max_digits

    def _pop_keys(self, max_digits: int) -> Keys:
        if "#" in self.keys:
            taken, _, self.keys = self.keys.partition("#")
            return Keys(taken + "#")
        taken, self.keys = self.keys[:max_digits], self.keys[max_digits:]
        return Keys(taken)

    async def _log_input(self, result: Input) -> None:
        if isinstance(result, Keys):
            await self.step("keys", keys=result.digits)
        elif isinstance(result, Speech):
            await self.step("speech", text=result.text, confidence=result.confidence,
                            intent=result.intent, digits=result.digits)
        else:
            await self.step("no_input", state=self.flow.state.value)


class SpeechIvrHandler:
    """MediaServer handler: one IvrCall per AudioSocket connection."""

    def __init__(self, deps: IvrDeps) -> None:
        self.deps = deps

    async def handle(self, session: MediaSession) -> None:
        await IvrCall(session, self.deps).run()
