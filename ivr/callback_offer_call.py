"""Runs the callback offer (ivr.flows.callback_offer) on an offer leg's media session.

The dialplan context ``hotline-callback-offer`` announces the leg (``HotlineCallbackOffer``)
and connects it over AudioSocket with its own id; the media handler passes it here. The
caller hears the offer in the language of their call; their answer goes back to the dialplan
as the channel variable CALLBACK_ANSWER (set over AMI before the socket closes), and the
dialplan's ``HotlineCallbackAnswer`` event carries it to the service, which makes the request.
A caller who hangs up during the offer leaves a ``callback_offer`` step with answer none. A
caller sent back to the queue (answer requeue: their number cannot be called back) keeps
their place: REQUEUE_POSITION, set beside the answer, is where their first arrival puts them
among the callers waiting now (Queue()'s position argument).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from crm.callbacks.service import number_problem
from crm.telephony.events import EventBus
from crm.telephony.steps import CallbackOffered, PromptPlayed
from ivr.asterisk.call_tracker import CallTracker, OfferLeg, node_lookup
from ivr.audiosocket.session import MediaSession
from ivr.flows.callback_offer import Answer, BeginOffer, CallbackOfferFlow
from ivr.flows.menu import Action, Input
from ivr.prompting import (
    STOP,
    CallerGone,
    IvrTimeouts,
    PromptingCall,
    Recognition,
    Stop,
    Voice,
)

log = logging.getLogger(__name__)

FINAL_PROMPTS = frozenset({"callback_confirmed", "callback_not_possible", "goodbye"})


@dataclass
class OfferDeps:
    bus: EventBus
    tracker: CallTracker
    voice: Voice
    language_of: Callable[[str], str | None] = lambda call_id: None
    """The language the call has used so far (None: not known)."""
    timeouts: IvrTimeouts = field(default_factory=IvrTimeouts)
    default_language: str = "cmn"
    first_queued: Callable[[str], tuple[str, datetime] | None] = lambda call_id: None
    """The queue a call first waited in and when (None: not known)."""
    return_position: Callable[[str, str, datetime, str | None], Awaitable[int]] | None = None
    """(queue, channel, arrival, call id) -> the position a caller returning to the queue
    takes."""


class CallbackOfferCall(PromptingCall):
    def __init__(self, session: MediaSession, deps: OfferDeps, leg: OfferLeg) -> None:
        super().__init__(session, bus=deps.bus, voice=deps.voice, timeouts=deps.timeouts,
                         event_call_id=leg.call_id,
                         node_of=node_lookup(deps.tracker, str(session.call_id), leg.call_id))
        self.deps = deps
        self.leg = leg
        self.flow: CallbackOfferFlow = CallbackOfferFlow(language=deps.default_language)
        self.answer: str | None = None

    async def run(self) -> str | None:
        """The offer, start to end; the caller's answer (None: they hung up first)."""
        language = (self.deps.language_of(self.leg.call_id or "")
                    or self.deps.default_language)
        actions = self.flow.step(BeginOffer(self.leg.reason, language,
                                            number_problem(self.leg.caller_number)))
        try:
            while actions:
                nxt = await self.perform(actions)  # type: ignore[arg-type]
                if nxt is None:
                    break
                actions = self.flow.step(nxt)  # type: ignore[arg-type]
        except CallerGone:
            await self.step(CallbackOffered(self.flow.reason, "none"))
        return self.answer

    async def _say(self, prompt: str, vars: dict, recog: Recognition | None = None) -> bool:
        """The offer barges in as usual; what ends it (the confirmation, why no callback is
        possible, goodbye) is heard whole, whatever keys the caller typed ahead."""
        if prompt not in FINAL_PROMPTS:
            return await super()._say(prompt, vars, recog)
        self.keys = ""
        pcm = await self.voice.prompt_audio(self.flow.language, prompt, vars)
        await self.step(PromptPlayed(prompt, self.flow.language))
        return await self.session.play(pcm, interruptible=False)

    async def _act(self, action: Action) -> Input | Stop | None:
        if isinstance(action, Answer):  # type: ignore[unreachable]
            self.answer = action.answer  # type: ignore[unreachable]
            channel = self.leg.channel or self.deps.tracker.channel_of(self.leg.call_id or "")
            # The answer is recorded here (a yes makes the request, even if the caller hangs
            # up now); CALLBACK_ANSWER tells the dialplan it was heard (and where to go).
            await self.step(CallbackOffered(self.flow.reason, action.answer))
            if channel and not self.session.closed:
                try:
                    if action.answer == "requeue":
                        await self._keep_place(channel)
                    await self.deps.tracker.set_variable(channel, "CALLBACK_ANSWER",
                                                         action.answer,
                                                         call_id=self.leg.offer_call_id)
                except Exception as exc:  # the caller hung up meanwhile, AMI is down...
                    self.log.warning("CALLBACK_ANSWER not set (%s)", exc)
            await self.session.hangup(f"callback offer: {action.answer}")
            return STOP
        return await super()._act(action)

    async def _keep_place(self, channel: str) -> None:
        """REQUEUE_POSITION: the caller's place by their first arrival (unknown: the end)."""
        first = self.deps.first_queued(self.leg.call_id or "")
        if first is None or self.deps.return_position is None:
            return
        queue, arrival = first
        try:
            position = await self.deps.return_position(queue, channel, arrival,
                                                       self.leg.call_id)
        except Exception as exc:  # AMI down...: they rejoin at the end, still waiting
            self.log.warning("place in queue %s unknown (%s): back at the end", queue, exc)
            return
        await self.deps.tracker.set_variable(channel, "REQUEUE_POSITION", str(position),
                                             call_id=self.leg.offer_call_id)
        self.log.info("back to queue %s at position %d (first arrival %s)", queue, position,
                      arrival.isoformat())


class CallbackOffers:
    """The media handler's offer runner: one CallbackOfferCall per announced offer leg."""

    def __init__(self, deps: OfferDeps) -> None:
        self.deps = deps

    async def run(self, session: MediaSession, leg: object) -> None:
        assert isinstance(leg, OfferLeg)
        self.deps.tracker.take_offer_leg(leg.offer_call_id)
        answer = await CallbackOfferCall(session, self.deps, leg).run()
        log.info("call %s: callback offer (%s) answered %s", leg.call_id, leg.reason, answer)
