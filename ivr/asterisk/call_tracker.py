"""Turns the dialplan's AMI user events into call events on the bus.

The dialplan announces each hotline call with ``UserEvent(HotlineCallStart, CallId)`` and its
hang-up handler with ``UserEvent(HotlineCallEnd, ...)``; the caller's number and name come from
the channel snapshot Asterisk puts in front of the event (:func:`caller_identity`). Tracking
from AMI rather than from the media socket means a call is logged even when the IVR media
server is down.

A survey leg (after the agent hung up, or a return-visit call) is announced with
``UserEvent(HotlineSurveyStart, SurveyCallId, CallId, ...)`` before its AudioSocket connects
with the SurveyCallId as its id; ``wait_for_session`` tells the media handler which it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from crm.agents.auth import mask_phone
from crm.consultations.reconciliation import RecordedEnd
from crm.telephony.call_context import call_context
from crm.telephony.events import (
    CallEnded,
    CallStarted,
    CallStep,
    EventBus,
    IvrLegAnnounced,
    utcnow,
)
from crm.telephony.steps import CallbackOffered, CallReconciled
from ivr.ami.client import AmiClient, AmiEvent
from ivr.ami.codec import caller_identity
from ivr.asterisk.call_records import CallRecordReader
from ivr.asterisk.hangup import REQUEST_EVENTS, HangupCauses, hangup_party

log = logging.getLogger(__name__)


async def set_route_variables(ami: AmiClient, channel: str, route: str, queue: str | None,
                              language: str | None) -> None:
    """Set the variables the dialplan routes by when the AudioSocket ends (HOTLINE_QUEUE,
    HOTLINE_LANGUAGE, IVR_ROUTE), sent back to back and answered together: AMI takes one
    connection's actions in order, and three round trips one after another were most of
    the 8-28 ms from the speech step to the queue join at 80 calls (bench.load, two runs)."""
    values = [("HOTLINE_QUEUE", queue), ("HOTLINE_LANGUAGE", language), ("IVR_ROUTE", route)]
    await asyncio.gather(*(ami.setvar(channel, name, value)
                           for name, value in values if value))


@dataclass
class ActiveCall:
    call_id: str
    channel: str | None
    caller_number: str | None
    caller_name: str | None
    node: str | None = None
    """The media node the call is on (AMI's SystemName); None on one box."""


@dataclass
class SurveyLeg:
    """A survey announced by the dialplan; its AudioSocket connects with ``survey_call_id``."""

    survey_call_id: str
    kind: str
    """after_call (the caller stayed on after the agent hung up) or return_visit."""
    call_id: str | None
    """The hotline call surveyed (after_call)."""
    channel: str | None
    caller_number: str | None
    member_interface: str | None
    """The queue member that talked to the caller (e.g. PJSIP/2001)."""
    return_visit_id: int | None = None


@dataclass
class OfferLeg:
    """A callback offer announced by the dialplan (``HotlineCallbackOffer``); its AudioSocket
    connects with ``offer_call_id``. The caller's channel is the hotline call's own."""

    offer_call_id: str
    call_id: str | None
    reason: str
    channel: str | None
    caller_number: str | None


CALLBACK_OFFER_REASONS = ("chosen", "closed", "max_wait")
CALLBACK_ANSWERS = ("yes", "no", "none", "withheld", "requeue", "unheard")


class CallTracker:
    def __init__(self, ami: AmiClient, bus: EventBus, *,
                 records: CallRecordReader | None = None) -> None:
        self._ami = ami
        self._bus = bus
        self._records = records
        """Asterisk's own record of each call: how calls that ended while AMI was down
        really ended (else they are closed as "resynchronised", at the re-login)."""
        self.active_calls: dict[str, ActiveCall] = {}
        self.survey_legs: dict[str, SurveyLeg] = {}
        self.offer_legs: dict[str, OfferLeg] = {}
        self._arrivals: dict[str, asyncio.Event] = {}
        self.causes = HangupCauses()
        # One subscription keeps the order of a leg's hang-up requests and the hang-up
        # handler's HotlineCallEnd that follows them.
        ami.subscribe("*", self._on_event)
        ami.on_ready(self.resynchronise)

    def adopt(self, calls: Iterable[ActiveCall]) -> None:
        """Calls a previous run of the service left open (their consultations have no end).
        Register before the AMI login: its resynchronisation closes those that ended while no
        service was running, and keeps those still live."""
        for call in calls:
            self.active_calls.setdefault(call.call_id, call)

    async def _on_event(self, event: AmiEvent) -> None:
        kind = event.name.lower()
        if kind == "userevent":
            with call_context(event.get("CallId")):
                await self._on_user_event(event)
        elif kind in REQUEST_EVENTS:
            self._on_hangup_request(event)

    async def _on_user_event(self, event: AmiEvent) -> None:
        kind = event.get("UserEvent")
        if kind == "HotlineSurveyStart":
            await self._on_survey_start(event)
            return
        if kind in ("HotlineCallbackOffer", "HotlineCallbackAnswer"):
            await self._on_callback_offer(kind, event)
            return
        call_id = event.get("CallId")
        if kind not in ("HotlineCallStart", "HotlineCallEnd"):
            return
        if not call_id:
            log.warning("%s without CallId ignored: %r", kind, dict(event.headers))
            return
        if kind == "HotlineCallStart":
            number, name = caller_identity(event)
            call = ActiveCall(call_id, event.get("Channel"), number, name,
                              _clean(event.get("SystemName")))
            self.active_calls[call_id] = call
            self._arrivals.pop(call_id, asyncio.Event()).set()
            log.info("call %s: started from %s (%s)", call_id,
                     mask_phone(call.caller_number, "agent") or "a withheld number",
                     "named" if call.caller_name else "no name")
            await self._bus.publish(CallStarted(call_id, call.caller_number, call.caller_name,
                                                call.channel, node=call.node))
        else:
            call = self.active_calls.pop(call_id, None)
            party = hangup_party(
                dialplan_party=_clean(event.get("Party")),
                hangup_source=_clean(event.get("HangupSource")),
                caller_channel=_clean(event.get("Channel")) or (call.channel if call else None))
            cause = self.causes.final(call_id, party=party, reported=event.get("Cause"))
            log.info("call %s: ended by the %s, route=%s cause=%s (source %s)", call_id, party,
                     event.get("Route"), cause, event.get("HangupSource"))
            await self._bus.publish(CallEnded(call_id, _clean(event.get("Route")), cause,
                                              party=party, node=_clean(event.get("SystemName"))))

    def _on_hangup_request(self, event: AmiEvent) -> None:
        """Remember the cause of each hang-up request of a hotline call's legs (see
        ivr.asterisk.hangup): the caller's own leg is the one that started the call."""
        call_id = _clean(event.chan_variables().get("CALL_ID"))
        if call_id is None or call_id not in self.active_calls:
            return
        self.causes.note(call_id, caller_leg=event.get("Uniqueid") == event.get("Linkedid"),
                         cause=event.get("Cause"))

    async def _on_survey_start(self, event: AmiEvent) -> None:
        survey_call_id = _clean(event.get("SurveyCallId"))
        if not survey_call_id:
            log.warning("HotlineSurveyStart without SurveyCallId ignored: %r",
                        dict(event.headers))
            return
        call_id = _clean(event.get("CallId"))
        call = self.active_calls.get(call_id) if call_id else None
        visit = _clean(event.get("ReturnVisitId"))
        leg = SurveyLeg(
            survey_call_id, _clean(event.get("Kind")) or "after_call", call_id,
            _clean(event.get("Channel")),
            caller_identity(event)[0] or (call.caller_number if call else None),
            _clean(event.get("Member")),
            int(visit) if visit and visit.isdigit() else None)
        # Forget legs whose socket never came (the IVR was down): keep the map small.
        while len(self.survey_legs) >= 1000:
            self.survey_legs.pop(next(iter(self.survey_legs)))
        self.survey_legs[survey_call_id] = leg
        self._arrivals.pop(survey_call_id, asyncio.Event()).set()
        log.info("call %s: %s survey leg %s announced (member %s)", call_id or "-", leg.kind,
                 survey_call_id, leg.member_interface)
        await self._bus.publish(IvrLegAnnounced(
            survey_call_id, "survey", call_id, leg.channel, leg.caller_number, leg.kind,
            member_interface=leg.member_interface, return_visit_id=leg.return_visit_id,
            node=event.get("SystemName")))

    async def _on_callback_offer(self, kind: str, event: AmiEvent) -> None:
        """The dialplan's callback offer: announced (its AudioSocket id, OfferCallId), and
        its answer once the caller has heard it (a ``callback_offer`` step)."""
        call_id = _clean(event.get("CallId"))
        reason = _clean(event.get("Reason"))
        reason = reason if reason in CALLBACK_OFFER_REASONS else "chosen"
        if kind == "HotlineCallbackAnswer":
            answer = _clean(event.get("Answer")) or "unheard"
            if call_id and answer in CALLBACK_ANSWERS:
                await self._bus.publish(CallStep(call_id, CallbackOffered(reason, answer),
                                                 node=_clean(event.get("SystemName"))))
            return
        offer_call_id = _clean(event.get("OfferCallId"))
        if not offer_call_id:
            log.warning("HotlineCallbackOffer without OfferCallId ignored")
            return
        call = self.active_calls.get(call_id) if call_id else None
        while len(self.offer_legs) >= 1000:
            self.offer_legs.pop(next(iter(self.offer_legs)))
        self.offer_legs[offer_call_id] = OfferLeg(
            offer_call_id, call_id, reason, _clean(event.get("Channel")),
            caller_identity(event)[0] or (call.caller_number if call else None))
        self._arrivals.pop(offer_call_id, asyncio.Event()).set()
        log.info("call %s: callback offer %s announced (%s)", call_id or "-", offer_call_id,
                 reason)
        offer = self.offer_legs[offer_call_id]
        await self._bus.publish(IvrLegAnnounced(offer_call_id, "offer", call_id, offer.channel,
                                                offer.caller_number, reason,
                                                node=event.get("SystemName")))

    def take_offer_leg(self, offer_call_id: str) -> OfferLeg | None:
        return self.offer_legs.pop(offer_call_id, None)

    def take_survey_leg(self, survey_call_id: str) -> SurveyLeg | None:
        """The announced survey leg, forgotten once taken."""
        return self.survey_legs.pop(survey_call_id, None)

    def session_of(self, session_id: str) -> ActiveCall | SurveyLeg | OfferLeg | None:
        """What an AudioSocket id stands for now: an announced survey leg not yet taken, a
        live hotline call, or None (never announced, or over). The media server admits only
        ids it names, and refuses a second connection for one it still names."""
        return (self.survey_legs.get(session_id) or self.offer_legs.get(session_id)
                or self.active_calls.get(session_id))

    async def wait_for_session(self, session_id: str,
                               timeout: float) -> ActiveCall | SurveyLeg | OfferLeg | None:
        """What an AudioSocket id stands for: a hotline call (HotlineCallStart), a survey leg
        (HotlineSurveyStart), or None when AMI announced neither within ``timeout``."""
        def known() -> ActiveCall | SurveyLeg | OfferLeg | None:
            return self.session_of(session_id)

        if known() is None:
            arrived = self._arrivals.setdefault(session_id, asyncio.Event())
            try:
                async with asyncio.timeout(timeout):
                    await arrived.wait()
            except TimeoutError:
                log.warning("AudioSocket %s: not announced on AMI within %.1f s", session_id,
                            timeout)
            finally:
                self._arrivals.pop(session_id, None)
        return known()

    async def resynchronise(self) -> None:
        """After every (re)login: events sent while AMI was down are lost, so compare what we
        think is live with Asterisk's channels (CoreShowChannels). Calls that ended meanwhile
        are closed; calls that started meanwhile are opened, so every call that happened has
        exactly one complete consultation."""
        try:
            channels = await self._ami.action_list("CoreShowChannels")
        except Exception:
            log.exception("CoreShowChannels failed; consultations may stay open until the "
                          "next resynchronisation")
            return
        live: dict[str, AmiEvent] = {}
        for channel in channels:
            call_id = channel.chan_variables().get("CALL_ID")
            # The caller's own leg is the one that started the call (Uniqueid == Linkedid).
            if call_id and channel.get("Uniqueid") == channel.get("Linkedid"):
                live[call_id] = channel
        gone = [c for c in self.active_calls if c not in live]
        recorded = await self._recorded_ends(gone)
        for call_id in gone:
            node = self.active_calls.pop(call_id).node
            if (end := recorded.get(call_id)) is not None:
                log.info("call %s: ended while AMI was unavailable, at %s by the %s (from "
                         "Asterisk's record)", call_id, end.ended_at.isoformat(), end.party)
                await self._bus.publish(CallEnded(call_id, end.route, end.cause,
                                                  at=end.ended_at, party=end.party, node=node))
                await self._bus.publish(CallStep(call_id, CallReconciled(
                    end.source, end.ended_at.isoformat()), node=node))
                continue
            log.info("call %s: ended while AMI was unavailable (resynchronised)", call_id)
            await self._bus.publish(CallEnded(call_id, None, "resynchronised", node=node))
        for call_id, channel in live.items():
            if call_id in self.active_calls:
                continue
            call = ActiveCall(call_id, channel.get("Channel"), *caller_identity(channel),
                              _clean(channel.get("SystemName")))
            self.active_calls[call_id] = call
            log.info("call %s: found live after resynchronisation", call_id)
            await self._bus.publish(CallStarted(
                call_id, call.caller_number, call.caller_name, call.channel,
                at=utcnow() - _duration(channel.get("Duration")),
                node=call.node))

    async def _recorded_ends(self, call_ids: list[str]) -> dict[str, RecordedEnd]:
        if self._records is None or not call_ids:
            return {}
        try:
            return await self._records.endings(call_ids)
        except Exception:  # the record is a help, never a reason to keep calls open
            log.exception("reading Asterisk's call record %s failed", self._records.path)
            return {}

    async def wait_for_call(self, call_id: str, timeout: float) -> ActiveCall | None:
        """The call as announced on AMI; the media socket may connect a moment before."""
        if call_id not in self.active_calls:
            arrived = self._arrivals.setdefault(call_id, asyncio.Event())
            try:
                async with asyncio.timeout(timeout):
                    await arrived.wait()
            except TimeoutError:
                log.warning("call %s: no HotlineCallStart on AMI within %.1f s", call_id, timeout)
            finally:
                self._arrivals.pop(call_id, None)
        return self.active_calls.get(call_id)

    async def set_route(self, channel: str, route: str, queue: str | None = None,
                        language: str | None = None, *, call_id: str | None = None) -> None:
        """Tell the dialplan where the caller goes when the AudioSocket ends (and, for the
        queue, which of the hotline's queues: HOTLINE_QUEUE, the main queue when unset; and
        the caller's language, HOTLINE_LANGUAGE, in which the queue's announcements speak)."""
        await set_route_variables(self._ami, channel, route, queue, language)

    async def set_variable(self, channel: str, variable: str, value: str, *,
                           call_id: str | None = None) -> None:
        """Set a channel variable the dialplan reads after the AudioSocket ends (``call_id``:
        the call or leg it is for; an IVR worker picks its node's AMI link by it)."""
        await self._ami.setvar(channel, variable, value)

    def channel_of(self, call_id: str) -> str | None:
        call = self.active_calls.get(call_id)
        return call.channel if call else None

    def node_of(self, session_id: str) -> str | None:
        """The media node a live call is on (None: one box, or not known)."""
        call = self.active_calls.get(session_id)
        return call.node if call else None


def node_lookup(tracker: object, *session_ids: str | None) -> Callable[[], str | None]:
    """The media node of the first of ``session_ids`` (an AudioSocket id, then the call it
    serves) the tracker knows one for: ``node_of`` of the IVR worker's bus directory or of a
    call tracker; None on one box, or for a tracker that names no nodes."""
    def node() -> str | None:
        node_of = getattr(tracker, "node_of", None)
        if node_of is None:
            return None
        return next((found for sid in session_ids if sid and (found := node_of(sid))), None)
    return node


def _duration(value: str | None) -> timedelta:
    """CoreShowChannel's Duration, HH:MM:SS."""
    try:
        h, m, sec = (int(part) for part in (value or "").split(":"))
    except ValueError:
        return timedelta(0)
    return timedelta(hours=h, minutes=m, seconds=sec)


def _clean(value: str | None) -> str | None:
    """AMI renders empty or unknown caller fields as '' or '<unknown>'."""
    if value is None or value.strip() in ("", "<unknown>"):
        return None
    return value.strip()
