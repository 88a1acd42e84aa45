"""Runs the call flow for one caller: executes the flow's actions on the media session.

Prompts, barge-in and input collection are shared with the survey driver
(``ivr.prompting.PromptingCall``); this module adds what the hotline menu does: case lookups,
the anti-enumeration guard, and routing the caller (agent queue or hang-up) over AMI.
Every step is published as a call event so the consultation records it -- except what the
caller keys or says in answer to a ``secret`` Collect (the verification digits): that step
says only that a secret was entered and how many digits it had.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from crm.cases.directory import CaseDirectory
from crm.knowledge.ivr_topics import KnowledgeDirectory
from crm.telephony.events import EventBus
from crm.telephony.steps import CallerLeftIvr, CaseLookedUp, IvrConnected, VerificationDigits
from ivr.asterisk.call_tracker import ActiveCall, CallTracker, OfferLeg, node_lookup
from ivr.audiosocket.session import MediaSession
from ivr.flows.menu import (
    Action,
    AnswerFound,
    Begin,
    CallFlow,
    Collect,
    FindAnswer,
    Input,
    IntakeKeys,
    Keys,
    ListTopics,
    LookupCase,
    LookupResult,
    RecordFailure,
    Route,
    Speech,
    TopicsListed,
    UrgeCase,
    UrgeResult,
)
from ivr.prompting import (
    STOP,
    CallerGone,
    IvrTimeouts,
    PromptingCall,
    Recognition,
    Stop,
    Voice,
)

__all__ = ["CallerGone", "IvrCall", "IvrDeps", "IvrTimeouts", "Recognition",
           "SpeechIvrHandler", "Voice"]

log = logging.getLogger(__name__)


@dataclass
class IvrDeps:
    bus: EventBus
    cases: CaseDirectory
    tracker: CallTracker
    voice: Voice
    timeouts: IvrTimeouts = field(default_factory=IvrTimeouts)
    default_language: str = "cmn"
    intake: IntakeKeys = field(default_factory=IntakeKeys)
    queues: Mapping[str, str] = field(default_factory=dict)
    """Language -> the queue its callers wait in (none given: the dialplan's main queue)."""
    knowledge: KnowledgeDirectory | None = None
    """Service information from the knowledge base (None: the fixed service_info prompt)."""


_UNSET = object()


def secret_input(result: Keys | Speech) -> VerificationDigits:
    """The step recorded for a secret answer: that it was entered and its number of digits,
    never the digits or the words."""
    length = sum(c.isdigit() for c in result.digits)
    if isinstance(result, Keys):
        return VerificationDigits("keys", length)
    return VerificationDigits("speech", length, result.confidence,
                              "agent" if result.intent == "agent" else None)


class IvrCall(PromptingCall):
    def __init__(self, session: MediaSession, deps: IvrDeps, *,
                 announced: ActiveCall | object | None = _UNSET) -> None:
        """``announced``: the call as the tracker already knows it (or None when it waited
        for it in vain); left out, ``run`` waits for the AMI announcement itself."""
        super().__init__(session, bus=deps.bus, voice=deps.voice, timeouts=deps.timeouts,
                         event_call_id=str(session.call_id),
                         node_of=node_lookup(deps.tracker, str(session.call_id)))
        self.deps = deps
        self.flow: CallFlow = CallFlow(default_language=deps.default_language,
                                       language=deps.default_language, intake=deps.intake,
                                       knowledge=deps.knowledge is not None)
        self._announced = announced
        self._collecting_secret = False

    async def run(self) -> None:
        caller = await self._caller_number()
        try:
            known = await self.deps.cases.caller_language(caller)
        except Exception:
            # The database is down: serve the caller as unknown rather than not at all.
            self.log.exception("resident lookup failed; greeting in the default language")
            known = None
        await self.step(IvrConnected(caller_known=known is not None))
        actions = self.flow.step(Begin(caller, known))
        try:
            while actions:
                nxt = await self.perform(actions)
                if nxt is None:
                    return
                actions = self.flow.step(nxt)
        except CallerGone as gone:
            await self.step(CallerLeftIvr(self.flow.state.value, str(gone)))

    async def _caller_number(self) -> str | None:
        """The tracker learns the caller from AMI; the socket may connect a moment earlier."""
        if self._announced is _UNSET:
            call = await self.deps.tracker.wait_for_call(self.call_id, timeout=3.0)
        else:
            call = self._announced if isinstance(self._announced, ActiveCall) else None
        return call.caller_number if call else None

    async def _collect(self, collect: Collect, recog: Recognition | None) -> Input:
        self._collecting_secret = collect.secret
        try:
            return await super()._collect(collect, recog)
        finally:
            self._collecting_secret = False

    async def _log_input(self, result: Input) -> None:
        if self._collecting_secret and isinstance(result, Keys | Speech):
            await self.step(secret_input(result))
        else:
            await super()._log_input(result)

    async def _act(self, action: Action) -> Input | Stop | None:
        if isinstance(action, LookupCase):
            return await self._lookup(action.number)
        if isinstance(action, ListTopics | FindAnswer):
            return await self._knowledge(action)
        if isinstance(action, RecordFailure):
            await self.deps.cases.guard.record_failure(self.flow.caller_number, action.reason,
                                                 case=action.case)
            return None
        if isinstance(action, Route):
            await self._route(action.route, action.language)
            return STOP
        if isinstance(action, UrgeCase):
            return await self._urge(action)
        return await super()._act(action)

    async def _knowledge(self, action: ListTopics | FindAnswer) -> TopicsListed | AnswerFound:
        """The knowledge base's topics or answer; a database that is down sends the caller
        to a person (no topics to key, no answer)."""
        directory = self.deps.knowledge
        lang = self.flow.language
        try:
            if isinstance(action, ListTopics):
                return TopicsListed(tuple(await directory.topics(lang)) if directory else ())
            if directory is None:
                return AnswerFound(None)
            if action.key is not None:
                found = await directory.answer_for_key(action.key, lang)
            else:
                found = await directory.answer_for_words(action.words or "", lang)
        except Exception:
            self.log.exception("knowledge base unavailable; the caller goes to a person")
            return TopicsListed(()) if isinstance(action, ListTopics) else AnswerFound(None)
        by = "keys" if action.key is not None else "speech"
        if found is None:
            return AnswerFound(None, by=by)
        return AnswerFound(found.article_id, found.title, found.text, by)

    async def _lookup(self, number: str) -> LookupResult:
        if await self.deps.cases.guard.blocked(self.flow.caller_number):
            return LookupResult(None, blocked=True)
        case = await self.deps.cases.case_status(number, self.flow.language)
        await self.step(CaseLookedUp(number, found=case is not None))
        locked = (case is not None and case.contact_phone is not None
                  and await self.deps.cases.guard.verification_locked(case.number))
        return LookupResult(case, verification_locked=locked)

    async def _urge(self, action: UrgeCase) -> UrgeResult:
        try:
            count: int | None = await self.deps.cases.urge(action.number, f"ivr_{action.by}")
        except Exception:
            # The caller hears that it was not recorded and goes on; the error is logged.
            self.log.exception("urge of case %s not recorded", action.number)
            count = None
        return UrgeResult(count)

    async def _route(self, route: str, language: str | None = None) -> None:
        channel = self.deps.tracker.channel_of(self.call_id)
        queue = self.deps.queues.get(language or "") if route == "agent" else None
        if channel:
            await self.deps.tracker.set_route(channel, route, queue,
                                              language if route == "agent" else None,
                                              call_id=self.call_id)
        else:
            self.log.warning("channel unknown; the dialplan sends the caller to the queue")
        await self.session.hangup(f"routed to {route}")


SurveyRunner = Callable[[MediaSession, object], Awaitable[None]]


class SpeechIvrHandler:
    """MediaServer handler: one IvrCall per AudioSocket connection -- or, when the dialplan
    announced the connection as a survey leg (HotlineSurveyStart), the survey runner."""

    def __init__(self, deps: IvrDeps, *, survey: SurveyRunner | None = None,
                 offer: SurveyRunner | None = None) -> None:
        self.deps = deps
        self.survey = survey
        self.offer = offer
        """Runs a callback offer leg (HotlineCallbackOffer; ivr.callback_offer_call)."""

    async def handle(self, session: MediaSession) -> None:
        if self.survey is None:
            await IvrCall(session, self.deps).run()
            return
        known = await self.deps.tracker.wait_for_session(str(session.call_id), timeout=3.0)
        if isinstance(known, OfferLeg):
            if self.offer is not None:
                await self.offer(session, known)
            else:
                await session.hangup("no callback offer runner")
        elif known is not None and not isinstance(known, ActiveCall):
            await self.survey(session, known)
        else:
            await IvrCall(session, self.deps, announced=known).run()
