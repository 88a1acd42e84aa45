"""The standby queue node kept ready: the same queue members as the queue node, and its
member states kept off the bus while the queue node is linked.

Agents sign in and pause on the queue node (a web node's ``[ami]``). Every change of
membership there (AMI QueueMemberAdded, QueueMemberRemoved, QueueMemberPause,
QueueMemberPenalty) is applied to the standby at once, and the whole membership is copied
whenever either link logs in. So when the queue node dies, the callers it held arrive on a
standby that already has every signed-in agent: an agent's phone that registers there is
rung with no new sign-in. Membership does not survive an Asterisk restart
(``persistentmembers = no``), so a queue node that comes back gets it copied back from the
standby: when its link logs in and its Asterisk started since the link last saw it (AMI
CoreStatus), or, the first time this control sees it, when it has no members at all.
While it was gone nobody could sign in or pause (the web nodes' ``[ami]`` is the queue
node), so the standby's membership is the last word.

While the queue node's link is logged in, the standby's member states and queue snapshots
are withheld from the bus: its members' phones are registered on the queue node, so the
standby would report them unavailable and the wallboard and desks would flip between the
two. Its callers' events (a requeued caller, an agent answering there) always pass, but for
the abandon of a caller handed back to the queue node (hotline.roles.queue_return).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from crm.telephony.events import (
    AgentStatusChanged,
    BusEvent,
    CallerAbandoned,
    EventBus,
    Handler,
    QueueSnapshot,
)
from ivr.ami.client import AmiClient
from ivr.ami.codec import AmiEvent

log = logging.getLogger(__name__)

MIRRORED = ("QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPause",
            "QueueMemberPenalty")


class StandbyStates:
    """The bus as the standby's queue tracker sees it: member states withheld while the
    queue node's link is logged in."""

    def __init__(self, bus: EventBus, primary: AmiClient,
                 handed_back: Callable[[str], bool] = lambda call_id: False) -> None:
        self._bus = bus
        self._primary = primary
        self._handed_back = handed_back
        self.withheld = 0

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        return self._bus.subscribe(handler)

    async def publish(self, event: BusEvent) -> None:
        if (isinstance(event, AgentStatusChanged | QueueSnapshot)
                and self._primary.state == "logged_in"):
            self.withheld += 1
            return
        if isinstance(event, CallerAbandoned) and self._handed_back(event.call_id):
            self.withheld += 1
            return
        await self._bus.publish(event)


class MembershipMirror:
    """Applies the queue node's membership changes to the standby (see the module)."""

    def __init__(self, primary: AmiClient, standby: AmiClient,
                 queues: tuple[str, ...]) -> None:
        self._primary = primary
        self._standby = standby
        self._queues = set(queues)
        self.applied = 0
        self.copied_back = 0
        self._primary_started: str | None = None
        """The queue node's Asterisk start time as last seen (CoreStatus)."""
        self._undo = [primary.subscribe("QueueMember*", self._on_member_event),
                      primary.on_ready(self._on_primary_ready), standby.on_ready(self.copy)]

    def close(self) -> None:
        for undo in self._undo:
            undo()
        self._undo = []

    async def _on_member_event(self, event: AmiEvent) -> None:
        kind = event.name
        queue, interface = event.get("Queue") or "", event.get("Interface") or ""
        if queue not in self._queues or not interface or kind not in MIRRORED:
            return
        if kind == "QueueMemberRemoved":
            await self._apply("QueueRemove", tolerate="not there", Queue=queue,
                              Interface=interface)
        elif kind == "QueueMemberPenalty":
            await self._apply("QueuePenalty", Queue=queue, Interface=interface,
                              Penalty=event.get("Penalty") or "0")
        else:
            await self._add(queue, interface, event, name=event.get("MemberName"))

    async def _add(self, queue: str, interface: str, member: AmiEvent, name: str | None,
                   *, to: AmiClient | None = None) -> None:
        paused = "true" if member.get("Paused") == "1" else "false"
        await self._apply("QueueAdd", to=to, tolerate="already there", Queue=queue,
                          Interface=interface, MemberName=name or interface,
                          Penalty=member.get("Penalty") or "0", Paused=paused)
        await self._apply("QueuePause", to=to, Queue=queue, Interface=interface,
                          Paused=paused, Reason=member.get("PausedReason") or "")

    async def _members(self, link: AmiClient, which: str) -> list[AmiEvent] | None:
        """The link's members of our queues, or None (logged, not raised) if unreadable."""
        try:
            status = await link.action_list("QueueStatus")
        except Exception as exc:
            log.warning("standby queue: cannot read the %s's members: %s", which, exc)
            return None
        return [e for e in status if e.name == "QueueMember"
                and (e.get("Queue") or "") in self._queues]

    async def _copy(self, members: list[AmiEvent], to: AmiClient) -> None:
        for member in members:
            interface = member.get("Location") or member.get("StateInterface") or ""
            await self._add(member.get("Queue") or "", interface, member,
                            name=member.get("Name"), to=to)

    async def copy(self) -> None:
        """The queue node's whole membership onto the standby (both links logged in)."""
        if self._primary.state != "logged_in" or self._standby.state != "logged_in":
            return
        members = await self._members(self._primary, "queue node")
        if members is not None:
            await self._copy(members, self._standby)
            log.info("standby queue: %d membership(s) copied from the queue node",
                     len(members))

    async def _on_primary_ready(self) -> None:
        """The queue node's link logged in: copy its membership to the standby, or back
        from the standby if it is a queue node that came back empty (see the module)."""
        started = await self._started(self._primary)
        first, restarted = (self._primary_started is None,
                            started is not None and started != self._primary_started)
        if started is not None:
            self._primary_started = started
        if self._standby.state != "logged_in" or not (restarted or first):
            await self.copy()
            return
        mine = await self._members(self._primary, "queue node")
        if mine is None:
            return
        if not mine if first else restarted:
            await self.copy_back()
            return
        await self._copy(mine, self._standby)  # read once: the same copy as copy()
        log.info("standby queue: %d membership(s) copied from the queue node", len(mine))

    async def copy_back(self) -> None:
        """The standby's whole membership onto the queue node."""
        members = await self._members(self._standby, "standby")
        if not members or self._primary.state != "logged_in":
            return
        await self._copy(members, self._primary)
        self.copied_back += len(members)
        log.warning("standby queue: the queue node came back without its members: %d "
                    "membership(s) copied back from the standby", len(members))

    @staticmethod
    async def _started(link: AmiClient) -> str | None:
        try:
            core = await link.action("CoreStatus", timeout=5.0)
        except Exception as exc:
            log.warning("standby queue: cannot read the queue node's start time: %s", exc)
            return None
        return f"{core.get('CoreStartupDate') or ''} {core.get('CoreStartupTime') or ''}"

    async def _apply(self, action: str, *, to: AmiClient | None = None, tolerate: str = "",
                     **fields: str) -> None:
        target = to or self._standby
        if target.state != "logged_in":
            return  # copied whole when the link logs in
        try:
            await target.action(action, timeout=5.0, **fields)
            self.applied += 1
        except Exception as exc:
            if tolerate and tolerate in str(exc).lower():
                return
            log.warning("standby queue: %s %s failed: %s", action, fields.get("Interface"),
                        exc)
