"""Turns Asterisk's queue events on AMI into queue and agent events on the call event bus.

Asterisk 22 sends, for a queue call: QueueCallerJoin, then AgentCalled for every phone it
rings (ring-all: all free members at once), AgentRingNoAnswer for a phone that rang out,
AgentConnect for the one that answered, AgentComplete when that conversation ends, or
QueueCallerAbandon when the caller gave up waiting. In these the caller's channel fields are
plain and the agent leg's are prefixed ``Dest``; the hotline's ``CALL_ID`` arrives in the
``ChanVariable`` headers (manager.conf ``channelvars``). Members' states arrive as
QueueMemberStatus / QueueMemberAdded / QueueMemberRemoved / QueueMemberPause.

One subscription for all of them keeps their order (AgentCalled before AgentConnect), which
per-pattern subscriptions would not. After every (re)login a QueueStatus resynchronises the
members' states that changed while we were disconnected, then publishes a QueueSnapshot of
each queue (members and waiting callers) for live views to rebuild from. CoreShowChannels
then tells which caller each member's phone is bridged to: a connection we had not seen is
announced as a ``resynchronised`` AgentAnswered (desks pop it again), one that is gone as an
AgentCallEnded with reason ``resynchronised``.

Agent phones are qualified (pjsip.conf qualify_frequency): a phone that stops answering the
OPTIONS probes gets a ContactStatus ``Unreachable`` event and, a moment later, the device
state unavailable. Its members are then ``unreachable`` (not merely ``unavailable``, which
means not registered) until the phone answers again.

The dialplan also announces a queue call's recording with ``UserEvent(HotlineRecording,
CallId: ..., File: ...)``; it becomes a ``recording`` step of the consultation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from crm.telephony.call_context import call_context
from crm.telephony.events import (
    AgentAnswered,
    AgentCallEnded,
    AgentRinging,
    AgentRingStopped,
    AgentStatusChanged,
    BusEvent,
    CallerAbandoned,
    CallerQueued,
    CallStep,
    EventBus,
    QueueSnapshot,
    WaitingCaller,
)
from crm.telephony.steps import RecordingStarted
from ivr.ami.client import AmiClient, AmiError, AmiEvent
from ivr.ami.codec import caller_identity

log = logging.getLogger(__name__)

# Asterisk device states as QueueMemberStatus reports them (``Status``).
DEVICE_NOT_INUSE, DEVICE_INUSE, DEVICE_BUSY, DEVICE_INVALID, DEVICE_UNAVAILABLE = 1, 2, 3, 4, 5
DEVICE_RINGING, DEVICE_RINGINUSE, DEVICE_ONHOLD = 6, 7, 8
_ON_CALL = {DEVICE_INUSE, DEVICE_BUSY, DEVICE_ONHOLD}
_RINGING = {DEVICE_RINGING, DEVICE_RINGINUSE}
_UNREACHABLE = {DEVICE_INVALID, DEVICE_UNAVAILABLE}
MEMBER_EVENTS = frozenset({"queuememberstatus", "queuememberadded", "queuememberpause",
                           "queuememberremoved", "queuemember"})


def extension_of(interface: str | None) -> str | None:
    """The desk phone behind a queue member: PJSIP/2001 -> 2001,
    Local/2001@hotline-agents/n -> 2001."""
    if not interface or "/" not in interface:
        return None
    rest = interface.split("/", 1)[1]
    return rest.split("@", 1)[0].split("/", 1)[0] or None


def member_status(device_state: int | None, paused: bool, in_call: bool,
                  unreachable: bool = False) -> str:
    """What the desk shows for a member: ringing and on_call win over paused; a phone that
    stopped answering its qualify probes is unreachable, one not registered unavailable."""
    if device_state in _RINGING:
        return "ringing"
    if in_call or device_state in _ON_CALL:
        return "on_call"
    if unreachable and device_state not in (DEVICE_NOT_INUSE,):
        return "unreachable"
    if paused:
        return "paused"
    if device_state in _UNREACHABLE:
        return "unavailable"
    return "available"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def _clean(value: str | None) -> str | None:
    if value is None or value.strip() in ("", "<unknown>"):
        return None
    return value.strip()


def call_id_of(event: AmiEvent) -> str | None:
    """The hotline call id of the caller's leg, inherited by every leg as __CALL_ID."""
    return (_clean(event.chan_variables().get("CALL_ID"))
            or _clean(event.chan_variables("Dest").get("CALL_ID")))


def status_event(event: AmiEvent, unreachable: frozenset[str] | set[str] = frozenset(),
                 ) -> AgentStatusChanged | None:
    """AgentStatusChanged from a QueueMember* event (or a QueueStatus QueueMember item);
    ``unreachable``: extensions whose phones fail their qualify probes."""
    interface = event.get("Interface") or event.get("Location") or event.get("StateInterface")
    if not interface:
        return None
    queue = event.get("Queue") or ""
    name = _clean(event.get("MemberName") or event.get("Name"))
    if event.name.lower() == "queuememberremoved":
        return AgentStatusChanged(interface, extension_of(interface), queue, "logged_out",
                                  False, name)
    paused = _flag(event.get("Paused"))
    status = member_status(_int(event.get("Status")), paused, _flag(event.get("InCall")),
                           extension_of(interface) in unreachable)
    return AgentStatusChanged(interface, extension_of(interface), queue, status, paused, name)


def waiting_caller(entry: AmiEvent) -> WaitingCaller | None:
    """A QueueStatus QueueEntry item: one caller waiting in the queue."""
    channel = _clean(entry.get("Channel"))
    if channel is None:
        return None
    return WaitingCaller(channel, _int(entry.get("Position")), _int(entry.get("Wait")),
                         _clean(entry.get("CallerIDNum")), _clean(entry.get("CallerIDName")))


def queue_event(event: AmiEvent) -> BusEvent | None:
    """The bus event for one AMI event, or None when it is not one we publish."""
    kind = event.name.lower()
    if kind in MEMBER_EVENTS:
        return status_event(event)
    if kind == "userevent":
        if event.get("UserEvent") != "HotlineRecording" or not _clean(event.get("CallId")):
            return None
        return CallStep(str(_clean(event.get("CallId"))),
                        RecordingStarted(_clean(event.get("File")), _clean(event.get("Queue"))),
                        node=_clean(event.get("SystemName")))
    if kind not in ("queuecallerjoin", "agentcalled", "agentringnoanswer", "agentconnect",
                    "agentcomplete", "queuecallerabandon"):
        return None
    call_id = call_id_of(event)
    if call_id is None:
        log.warning("%s without CALL_ID ignored (channel %s, linkedid %s)", event.name,
                    event.get("Channel"), event.get("Linkedid"))
        return None
    queue = event.get("Queue") or ""
    interface = event.get("Interface") or ""
    extension = extension_of(interface)
    number, name = caller_identity(event)
    channel, agent_channel = event.get("Channel"), event.get("DestChannel")
    node = _clean(event.get("SystemName"))
    if kind == "queuecallerjoin":
        return CallerQueued(call_id, queue, _int(event.get("Position")), number, name, channel,
                            node=node)
    if kind == "queuecallerabandon":
        return CallerAbandoned(call_id, queue, _int(event.get("Position")),
                               _int(event.get("OriginalPosition")), _int(event.get("HoldTime")),
                               node=node)
    if kind == "agentcalled":
        return AgentRinging(call_id, queue, interface, extension,
                            _clean(event.get("MemberName")), number, name, channel,
                            agent_channel, node=node)
    if kind == "agentringnoanswer":
        return AgentRingStopped(call_id, queue, interface, extension,
                                _ms_to_s(event.get("RingTime")), node=node)
    if kind == "agentconnect":
        return AgentAnswered(call_id, queue, interface, extension,
                             _clean(event.get("MemberName")), number, name, channel,
                             agent_channel, _int(event.get("HoldTime")),
                             _int(event.get("RingTime")), node=node)
    return AgentCallEnded(call_id, queue, interface, extension, _int(event.get("TalkTime")),
                          _clean(event.get("Reason")), node=node)


_CHANNEL_SUFFIX = re.compile(r"-[0-9a-f]{8}(;[12])?$")


def channel_extension(channel: str | None) -> str | None:
    """The desk phone a channel belongs to: PJSIP/2001-0000001a -> 2001,
    Local/2001@hotline-agents-00000003;1 -> 2001."""
    return extension_of(_CHANNEL_SUFFIX.sub("", channel or ""))


def bridged_callers(channels: list[AmiEvent]) -> dict[str, AmiEvent]:
    """Extension -> the caller's channel (it carries CALL_ID and started the call) it is
    bridged with, from CoreShowChannels."""
    bridges: dict[str, list[AmiEvent]] = {}
    for channel in channels:
        if bridge := channel.get("BridgeId"):
            bridges.setdefault(bridge, []).append(channel)
    found: dict[str, AmiEvent] = {}
    for members in bridges.values():
        callers = [c for c in members if c.chan_variables().get("CALL_ID")
                   and c.get("Uniqueid") == c.get("Linkedid")]
        if len(callers) != 1:
            continue
        for other in members:
            if other is not callers[0] and (ext := channel_extension(other.get("Channel"))):
                found[ext] = callers[0]
    return found


def _ms_to_s(value: str | None) -> int | None:
    """AgentRingNoAnswer reports RingTime in milliseconds."""
    ms = _int(value)
    return None if ms is None else round(ms / 1000)


class QueueTracker:
    """Publishes queue events for the hotline's queue(s); resynchronises members after a
    reconnect. ``queues`` limits which queues are watched (None: all).

    ``members=False``: the callers' events only (queued, agent rung/answered/ended,
    abandoned, recording), no member states, no resynchronisation and no QueueSnapshot: a
    media node of a cluster without a queue node, whose queue is one of several of the same
    name (control's ``[ami]`` node's tracker reports the members; a second node's states and
    snapshots would contradict them: hotline.roles.node_links)."""

    def __init__(self, ami: AmiClient, bus: EventBus, *,
                 queues: tuple[str, ...] | None = None, members: bool = True) -> None:
        self._ami = ami
        self._bus = bus
        self._queues = queues
        self._with_members = members
        self.members: dict[tuple[str, str], AgentStatusChanged] = {}
        """(queue, interface) -> last known state, for members currently in a queue."""
        self.connected: dict[tuple[str, str], AgentAnswered] = {}
        """(queue, interface) -> the answer of the call that member is on."""
        self.unreachable: set[str] = set()
        """Extensions whose phones stopped answering their qualify probes."""
        self._unsubscribe: list[Callable[[], None]] = [ami.subscribe("*", self._on_event)]
        if members:
            self._unsubscribe.append(ami.on_ready(self.resync))

    def close(self) -> None:
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe = []

    def _watched(self, queue: str | None) -> bool:
        return self._queues is None or not queue or queue in self._queues

    async def _on_event(self, event: AmiEvent) -> None:
        with call_context(call_id_of(event)):
            await self._on_queue_event(event)

    async def _on_queue_event(self, event: AmiEvent) -> None:
        if not self._with_members and event.name.lower() in MEMBER_EVENTS | {"contactstatus"}:
            return
        if event.name.lower() == "contactstatus":
            await self._on_contact_status(event)
            return
        if event.name.lower() in MEMBER_EVENTS:
            published: BusEvent | None = status_event(event, self.unreachable)
        elif event.name.lower() == "agentcomplete" and call_id_of(event) is None:
            published = self._ended_without_caller(event)
        else:
            published = queue_event(event)
        if published is None or not self._watched(getattr(published, "queue", None)):
            return
        await self._publish(published)

    def _ended_without_caller(self, event: AmiEvent) -> AgentCallEnded | None:
        """An AgentComplete without the caller's channel: app_queue had no snapshot of it
        left (it hung up as the agent did; on a queue node the leg is hung up at once). The
        member's connected call is the one that ended."""
        key = (event.get("Queue") or "", event.get("Interface") or "")
        answered = self.connected.get(key)
        if answered is None:
            log.warning("AgentComplete without CALL_ID for %s %s and no call connected there: "
                        "ignored", *key)
            return None
        return AgentCallEnded(answered.call_id, key[0], key[1], answered.extension,
                              _int(event.get("TalkTime")), _clean(event.get("Reason")),
                              node=_clean(event.get("SystemName")))

    async def _on_contact_status(self, event: AmiEvent) -> None:
        """A phone's qualify result: Unreachable marks its members unreachable at once (the
        device state follows); Reachable, or a new or removed registration, clears it."""
        extension = (event.get("AOR") or "").strip()
        status = (event.get("ContactStatus") or "").strip().lower()
        if not extension:
            return
        if status == "unreachable":
            self.unreachable.add(extension)
            log.warning("agent phone %s is unreachable (no answer to SIP OPTIONS)", extension)
            for member in [m for m in self.members.values() if m.extension == extension]:
                if member.status != "unreachable":
                    await self._publish(AgentStatusChanged(
                        member.interface, extension, member.queue, "unreachable",
                        member.paused, member.member_name))
        elif status in ("reachable", "created", "removed") and extension in self.unreachable:
            self.unreachable.discard(extension)
            log.info("agent phone %s: %s", extension, status)
            for member in [m for m in self.members.values() if m.extension == extension]:
                if member.status == "unreachable":
                    now = "available" if status == "reachable" else "unavailable"
                    await self._publish(AgentStatusChanged(
                        member.interface, extension, member.queue,
                        "paused" if member.paused and now == "available" else now,
                        member.paused, member.member_name))

    async def _publish(self, event: BusEvent) -> None:
        if isinstance(event, AgentStatusChanged):
            key = (event.queue, event.interface)
            if event.status == "logged_out":
                self.members.pop(key, None)
            else:
                self.members[key] = event
            log.info("queue %s: member %s is %s", event.queue, event.interface, event.status)
        else:
            if isinstance(event, AgentAnswered):
                self.connected[(event.queue, event.interface)] = event
            elif isinstance(event, AgentCallEnded):
                answered = self.connected.get((event.queue, event.interface))
                if answered is not None and answered.call_id == event.call_id:
                    del self.connected[(event.queue, event.interface)]
            log.info("call %s: %s", event.call_id, type(event).__name__)
        await self._bus.publish(event)

    async def resync(self) -> None:
        """Ask Asterisk for every member's state; members gone meanwhile are logged out.
        Then a QueueSnapshot per queue (members and waiting callers) lets live views rebuild
        instead of patching."""
        try:
            items = await self._ami.action_list("QueueStatus")
        except AmiError as exc:
            log.warning("QueueStatus after login failed: %s", exc)
            return
        seen: set[tuple[str, str]] = set()
        queues: dict[str, list[WaitingCaller]] = {}
        for item in items:
            kind, queue = item.name.lower(), item.get("Queue") or ""
            if kind == "queueparams" and self._watched(queue):
                queues.setdefault(queue, [])
            elif kind == "queueentry" and self._watched(queue):
                if (waiting := waiting_caller(item)) is not None:
                    queues.setdefault(queue, []).append(waiting)
            elif kind == "queuemember":
                status = status_event(item, self.unreachable)
                if status is None or not self._watched(status.queue):
                    continue
                seen.add((status.queue, status.interface))
                await self._publish(status)
        for queue, interface in set(self.members) - seen:
            gone = self.members[(queue, interface)]
            await self._publish(AgentStatusChanged(interface, gone.extension, queue,
                                                   "logged_out", False, gone.member_name))
        for queue, waiting in queues.items():
            members = tuple(m for (q, _), m in sorted(self.members.items()) if q == queue)
            log.info("queue %s: resynchronised, %d member(s), %d caller(s) waiting", queue,
                     len(members), len(waiting))
            await self._bus.publish(QueueSnapshot(queue, members, tuple(waiting)))
        await self._resync_connections()

    async def _resync_connections(self) -> None:
        """Members' conversations that began or ended while we were not listening."""
        try:
            channels = await self._ami.action_list("CoreShowChannels")
        except AmiError as exc:
            log.warning("CoreShowChannels after login failed: %s", exc)
            return
        bridged = bridged_callers(channels)
        for key, answered in list(self.connected.items()):
            caller = bridged.get(answered.extension or "")
            if caller is None or caller.chan_variables().get("CALL_ID") != answered.call_id:
                await self._publish(AgentCallEnded(answered.call_id, *key, answered.extension,
                                                   reason="resynchronised",
                                                   node=answered.node))
        for (queue, interface), member in sorted(self.members.items()):
            caller = bridged.get(member.extension or "")
            call_id = caller.chan_variables().get("CALL_ID") if caller is not None else None
            known = self.connected.get((queue, interface))
            if caller is None or not call_id or (known is not None and known.call_id == call_id):
                continue
            await self._publish(AgentAnswered(
                call_id, queue, interface, member.extension, member.member_name,
                *caller_identity(caller), caller.get("Channel"), resynchronised=True,
                node=_clean(caller.get("SystemName"))))
