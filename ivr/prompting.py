"""The media side every call driver shares: prompts with barge-in, collecting keys or speech.

A driver (``ivr.menu_call.IvrCall`` for the hotline menu, ``ivr.survey_call.SurveyCall`` for
satisfaction surveys) owns a pure flow object and runs its actions here. Prompts play with
barge-in (a key press or the start of speech stops them at once); input is collected from
keys and, where the language has a model, from streaming recognition, until the keys are
complete, the recognizer's endpointer closes the utterance, or a timeout passes. Every step
is published as a call event so the consultation records it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from crm.telephony.events import CallStep, EventBus
from crm.telephony.steps import BargeIn, KeysEntered, NothingHeard, PromptPlayed, SpeechHeard, Step
from ivr.audiosocket.protocol import Audio, Dtmf, Hangup
from ivr.audiosocket.session import Closed, MediaSession, call_logger
from ivr.flows.menu import Action, Collect, Input, Keys, Log, NoInput, Say, SetLanguage, Speech

log = logging.getLogger(__name__)


class CallerGone(Exception):
    """The caller hung up or the socket closed: stop the flow."""


class Recognition(Protocol):
    """One call's recognizer for one prompt (see ivr/voice.py)."""

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


class DialogueFlow(Protocol):
    """What the media side needs of a flow: its language and the name of its state."""

    language: str

    @property
    def state(self) -> Enum: ...


class Stop:
    """Returned by ``_act`` when the batch must end here (the call was routed or ended)."""


STOP = Stop()


class PromptingCall:
    """Runs batches of flow actions on one media session. Subclasses perform their own
    actions in ``_act`` and own ``flow``."""

    flow: DialogueFlow

    def __init__(self, session: MediaSession, *, bus: EventBus, voice: Voice,
                 timeouts: IvrTimeouts, event_call_id: str | None,
                 node_of: Callable[[], str | None] | None = None) -> None:
        self.session = session
        self.bus = bus
        self.voice = voice
        self.timeouts = timeouts
        self.call_id = str(session.call_id)
        self.event_call_id = event_call_id
        """The call the steps are published for (None: only logged)."""
        self.node: str | None = None
        """The media node the call is on, named in its steps (None: one box, not known yet);
        asked of ``node_of`` until it is known (the call may be announced after the socket
        connected)."""
        self._node_of = node_of
        self.keys = ""  # keys typed ahead, during a prompt
        self._hash_may_follow = False  # a full-length number was taken; its "#" may trail
        self.log = call_logger(log, event_call_id or self.call_id)

    async def step(self, step: Step) -> None:
        if self.event_call_id:
            if self.node is None and self._node_of is not None:
                self.node = self._node_of()
            await self.bus.publish(CallStep(self.event_call_id, step, node=self.node))
        else:
            self.log.info("%s %s", step.kind, step.detail())

    async def _act(self, action: Action) -> Input | Stop | None:
        """Perform an action this class does not know: an input for the flow, ``STOP``, or
        None to carry on with the batch."""
        raise NotImplementedError(f"{type(self).__name__} cannot perform {action!r}")

    async def perform(self, actions: list[Action]) -> Input | None:
        """Run one batch of actions. The recognizer for the batch's Collect listens from the
        first prompt on, so a caller may answer during the greeting or an apology."""
        result: Input | None = None
        collect = next((a for a in actions if isinstance(a, Collect)), None)
        recog: Recognition | None = None
        try:
            for action in actions:
                if isinstance(action, SetLanguage):
                    self.flow.language = action.language
                    if recog is not None:
                        await recog.close()
                        recog = None
                elif isinstance(action, Say | Collect):
                    if recog is None and collect is not None:
                        recog = self.voice.recognition(self.flow.language, collect.grammar)
                    # Keys alone: the caller's audio is dropped as it arrives, not queued.
                    self.session.audio_wanted = recog is not None
                    if isinstance(action, Say):
                        await self._say(action.prompt, action.vars, recog)
                    else:
                        result = await self._collect(action, recog)
                elif isinstance(action, Log):
                    await self.step(action.step)
                else:
                    outcome = await self._act(action)
                    if isinstance(outcome, Stop):
                        return None
                    if outcome is not None:
                        result = outcome
        finally:
            if recog is not None:
                await recog.close()
        return result

    # -- media

    async def _say(self, prompt: str, vars: dict, recog: Recognition | None = None) -> bool:
        """Play a prompt; returns False when the caller barged in."""
        if self.keys or (recog is not None and recog.result() is not None):
            return False
        pcm = await self.voice.prompt_audio(self.flow.language, prompt, vars)
        await self.step(PromptPlayed(prompt, self.flow.language))
        # Keys barge in through _take, which knows the '#' that trails a complete number.
        play = asyncio.create_task(self.session.play(pcm, stop_on_keys=False))
        try:
            while not play.done():
                event = await self._next_event(play)
                if event is None:
                    continue
                if await self._take(event, recog) and self.session.stop_playback():
                    await self.step(BargeIn(prompt))
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
            if event.key == "#" and self._hash_may_follow and not self.keys:
                # The '#' ending a number that was already complete at its full length.
                self._hash_may_follow = False
                return False
            self._hash_may_follow = False
            self.keys += event.key
            return True
        if isinstance(event, Hangup | Closed) or (event is None and self.session.closed):
            raise CallerGone(getattr(event, "reason", "hangup"))
        if isinstance(event, Audio) and recog is not None:
            return await recog.feed(event.pcm) is not None
        return False

    async def _collect(self, collect: Collect, recog: Recognition | None) -> Input:
        played = await self._say(collect.prompt, collect.vars, recog)
        # Stopped by the caller starting to speak: they are mid-utterance, so listen for the
        # rest of it (max_utterance), not only the short wait for a first input.
        speaking = not played and not self.keys and recog is not None
        result = await self._gather(collect, recog, speaking=speaking)
        await self._log_input(result)
        return result

    async def _gather(self, collect: Collect, recog: Recognition | None, *,
                      speaking: bool = False) -> Input:
        t = self.timeouts
        first = t.first_input if collect.timeout is None else collect.timeout
        deadline = time.monotonic() + (t.max_utterance if speaking else first)
        while True:
            if self._keys_complete(collect.max_digits, collect.commands):
                return self._pop_keys(collect.max_digits, collect.commands)
            if recog is not None and (speech := recog.result()) is not None:
                return speech
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self.keys:
                    return self._pop_keys(collect.max_digits, collect.commands)
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

    def _keys_complete(self, max_digits: int, commands: frozenset[str] = frozenset()) -> bool:
        return ("#" in self.keys or len(self.keys) >= max_digits
                or (self.keys[:1] in commands and self.keys[:1] != ""))

    def _pop_keys(self, max_digits: int, commands: frozenset[str] = frozenset()) -> Keys:
        if self.keys[:1] and self.keys[:1] in commands:
            taken, self.keys = self.keys[:1], self.keys[1:]
            return Keys(taken)
        if "#" in self.keys:
            taken, _, self.keys = self.keys.partition("#")
            return Keys(taken + "#")
        taken, self.keys = self.keys[:max_digits], self.keys[max_digits:]
        self._hash_may_follow = max_digits > 1 and len(taken) == max_digits and not self.keys
        return Keys(taken)

    async def _log_input(self, result: Input) -> None:
        if isinstance(result, Keys):
            await self.step(KeysEntered(result.digits))
        elif isinstance(result, Speech):
            await self.step(SpeechHeard(result.text, result.confidence, result.intent,
                                        result.digits, result.rating))
        else:
            await self.step(NothingHeard(self.flow.state.value))
