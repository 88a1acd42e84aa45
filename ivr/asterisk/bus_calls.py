"""What an IVR worker of a cluster (``hotline serve --role ivr``) knows of calls: learnt from
the call events on the bus, which the control process's AMI tracker publishes, instead of
an AMI tracker of its own.

- ``CallStarted`` / ``CallEnded``: the live hotline calls (their AudioSocket ids);
- ``IvrLegAnnounced``: the survey legs and callback offers the dialplan announced;
- ``LanguageChosen`` / ``PromptPlayed`` steps and ``CallerQueued``: the caller's language and
  first place in a queue, which a callback offer needs.

It answers the IVR's questions as :class:`ivr.asterisk.call_tracker.CallTracker` does
(``wait_for_call``, ``wait_for_session``, ``take_survey_leg``, ...), and sets the channel
variables the dialplan reads after the AudioSocket over the worker's own AMI link (which
takes no events) to the node the call is on: the event's ``node`` names it, and the worker
holds one link per media node (``node_links``); a call of no known node (one box, or a node
without a link of its own) goes over the worker's ``[ami]`` link.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from datetime import datetime
from typing import TypeVar

from crm.telephony.events import (
    BusEvent,
    CallEnded,
    CallerQueued,
    CallStarted,
    CallStep,
    IvrLegAnnounced,
)
from crm.telephony.steps import LanguageChosen, PromptPlayed
from ivr.ami.client import AmiClient
from ivr.asterisk.call_tracker import ActiveCall, OfferLeg, SurveyLeg, set_route_variables

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_LEGS = 1000
"""Announced legs kept (those whose socket never came here: another worker took them)."""
MAX_CALLS = 10_000
"""Live calls kept at most (a CallEnded lost with a dead control process must not grow the
map without end)."""


class BusCallDirectory:
    def __init__(self, ami: AmiClient, node_links: dict[str, AmiClient] | None = None) -> None:
        self._ami = ami
        self._node_links = dict(node_links or {})
        self._nodes: OrderedDict[str, str] = OrderedDict()
        """The media node of each live call and announced leg (by its AudioSocket id)."""
        self.active_calls: OrderedDict[str, ActiveCall] = OrderedDict()
        self.survey_legs: OrderedDict[str, SurveyLeg] = OrderedDict()
        self.offer_legs: OrderedDict[str, OfferLeg] = OrderedDict()
        self._languages: dict[str, str] = {}
        self._queued: dict[str, tuple[str, datetime]] = {}
        self._arrivals: dict[str, asyncio.Event] = {}

    async def handle(self, event: BusEvent) -> None:
        """Bus subscriber (never waits)."""
        if isinstance(event, CallStarted):
            self._keep(self.active_calls, event.call_id, ActiveCall(
                event.call_id, event.channel, event.caller_number, event.caller_name),
                MAX_CALLS)
            if event.node:
                self._keep(self._nodes, event.call_id, event.node, MAX_CALLS + MAX_LEGS)
            self._arrived(event.call_id)
        elif isinstance(event, CallEnded):
            self.active_calls.pop(event.call_id, None)
            self._nodes.pop(event.call_id, None)
            self._languages.pop(event.call_id, None)
            self._queued.pop(event.call_id, None)
        elif isinstance(event, IvrLegAnnounced):
            self._on_leg(event)
        elif isinstance(event, CallStep) and event.call_id in self.active_calls:
            step = event.step
            if isinstance(step, LanguageChosen | PromptPlayed) and step.language:
                self._languages[event.call_id] = step.language
        elif isinstance(event, CallerQueued) and event.call_id in self.active_calls:
            self._queued.setdefault(event.call_id, (event.queue, event.at))

    def _on_leg(self, event: IvrLegAnnounced) -> None:
        if event.node:
            self._keep(self._nodes, event.leg_id, event.node, MAX_CALLS + MAX_LEGS)
        if event.kind == "survey":
            self._keep(self.survey_legs, event.leg_id, SurveyLeg(
                event.leg_id, event.detail or "after_call", event.for_call, event.channel,
                event.caller_number, event.member_interface, event.return_visit_id), MAX_LEGS)
        elif event.kind == "offer":
            self._keep(self.offer_legs, event.leg_id, OfferLeg(
                event.leg_id, event.for_call, event.detail or "chosen", event.channel,
                event.caller_number), MAX_LEGS)
        else:
            log.warning("IVR leg %s of unknown kind %r ignored", event.leg_id, event.kind)
            return
        self._arrived(event.leg_id)

    @staticmethod
    def _keep(into: OrderedDict[str, T], key: str, value: T, most: int) -> None:
        into[key] = value
        while len(into) > most:
            into.popitem(last=False)

    def _arrived(self, session_id: str) -> None:
        arrival = self._arrivals.pop(session_id, None)
        if arrival is not None:
            arrival.set()

    # -- what the IVR asks (as of CallTracker) ------------------------------------------
    def session_of(self, session_id: str) -> ActiveCall | SurveyLeg | OfferLeg | None:
        return (self.survey_legs.get(session_id) or self.offer_legs.get(session_id)
                or self.active_calls.get(session_id))

    async def wait_for_session(self, session_id: str,
                               timeout: float) -> ActiveCall | SurveyLeg | OfferLeg | None:
        """What an AudioSocket id stands for, waiting up to ``timeout`` for its event (the
        socket may connect before the event has come through the bus)."""
        if self.session_of(session_id) is None:
            arrived = self._arrivals.setdefault(session_id, asyncio.Event())
            try:
                async with asyncio.timeout(timeout):
                    await arrived.wait()
            except TimeoutError:
                log.warning("AudioSocket %s: not announced on the bus within %.1f s",
                            session_id, timeout)
            finally:
                self._arrivals.pop(session_id, None)
        return self.session_of(session_id)

    async def wait_for_call(self, call_id: str, timeout: float) -> ActiveCall | None:
        await self.wait_for_session(call_id, timeout)
        return self.active_calls.get(call_id)

    def take_survey_leg(self, survey_call_id: str) -> SurveyLeg | None:
        return self.survey_legs.pop(survey_call_id, None)

    def take_offer_leg(self, offer_call_id: str) -> OfferLeg | None:
        return self.offer_legs.pop(offer_call_id, None)

    def channel_of(self, call_id: str) -> str | None:
        call = self.active_calls.get(call_id)
        return call.channel if call else None

    def language_of(self, call_id: str) -> str | None:
        """The language a live call has used so far (None: not known)."""
        return self._languages.get(call_id)

    def first_queued(self, call_id: str) -> tuple[str, datetime] | None:
        """The queue a live call first joined and when, None if it has not."""
        return self._queued.get(call_id)

    def node_of(self, session_id: str) -> str | None:
        """The media node a live call or announced leg is on (None: not known)."""
        return self._nodes.get(session_id)

    def link_for(self, session_id: str | None) -> AmiClient:
        """The AMI link to the node ``session_id`` is on (the ``[ami]`` link when that node
        has no link of its own or is not known)."""
        node = self._nodes.get(session_id or "")
        return self._node_links.get(node or "", self._ami)

    async def set_route(self, channel: str, route: str, queue: str | None = None,
                        language: str | None = None, *, call_id: str | None = None) -> None:
        """As :meth:`CallTracker.set_route`, over the AMI link to the call's node."""
        await set_route_variables(self.link_for(call_id), channel, route, queue, language)

    async def set_variable(self, channel: str, variable: str, value: str, *,
                           call_id: str | None = None) -> None:
        await self.link_for(call_id).setvar(channel, variable, value)
