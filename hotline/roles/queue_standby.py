"""The standby queue node kept ready: the same queue members as the queue node, and its
member states kept off the bus while the queue node is linked.

Agents sign in and pause on the queue node (a web node's ``[ami]``). Every change of
membership there (AMI QueueMemberAdded, QueueMemberRemoved, QueueMemberPause,
QueueMemberPenalty) is applied to the standby at once, and the whole membership is copied
whenever either link logs in. So when the queue node dies, the callers it held arrive on a
standby that already has every signed-in agent: an agent's phone that registers there is
rung with no new sign-in. Membership does not survive an Asterisk restart
(``persistentmembers = no``); a queue node that comes back gets its members from the next
sign-in (copying back from the standby is not built).

While the queue node's link is logged in, the standby's member states and queue snapshots
are withheld from the bus: its members' phones are registered on the queue node, so the
standby would report them unavailable and the wallboard and desks would flip between the
two. Its callers' events (a requeued caller, an agent answering there) always pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from crm.telephony.events import AgentStatusChanged, BusEvent, EventBus, Handler, QueueSnapshot
from ivr.ami.client import AmiClient
from ivr.ami.codec import AmiEvent

log = logging.getLogger(__name__)

MIRRORED = ("QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPause",
            "QueueMemberPenalty")


class StandbyStates:
    """The bus as the standby's queue tracker sees it: member states withheld while the
    queue node's link is logged in."""

    def __init__(self, bus: EventBus, primary: AmiClient) -> None:
        self._bus = bus
        self._primary = primary
        self.withheld = 0

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        return self._bus.subscribe(handler)

    async def publish(self, event: BusEvent) -> None:
        if (isinstance(event, AgentStatusChanged | QueueSnapshot)
                and self._primary.state == "logged_in"):
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
        self._undo = [primary.subscribe("QueueMember*", self._on_member_event),
                      primary.on_ready(self.copy), standby.on_ready(self.copy)]

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

    async def _add(self, queue: str, interface: str, member: AmiEvent,
                   name: str | None) -> None:
        paused = "true" if member.get("Paused") == "1" else "false"
        await self._apply("QueueAdd", tolerate="already there", Queue=queue,
                          Interface=interface, MemberName=name or interface,
                          Penalty=member.get("Penalty") or "0", Paused=paused)
        await self._apply("QueuePause", Queue=queue, Interface=interface, Paused=paused,
                          Reason=member.get("PausedReason") or "")

    async def copy(self) -> None:
        """The queue node's whole membership onto the standby (both links logged in)."""
        if self._primary.state != "logged_in" or self._standby.state != "logged_in":
            return
        try:
            status = await self._primary.action_list("QueueStatus")
        except Exception as exc:
            log.warning("standby queue: cannot read the queue node's members: %s", exc)
            return
        members = [e for e in status if e.name == "QueueMember"
                   and (e.get("Queue") or "") in self._queues]
        for member in members:
            interface = member.get("Location") or member.get("StateInterface") or ""
            await self._add(member.get("Queue") or "", interface, member,
                            name=member.get("Name"))
        log.info("standby queue: %d membership(s) copied from the queue node", len(members))

    async def _apply(self, action: str, *, tolerate: str = "", **fields: str) -> None:
        if self._standby.state != "logged_in":
            return  # copied whole when the standby's link logs in
        try:
            await self._standby.action(action, timeout=5.0, **fields)
            self.applied += 1
        except Exception as exc:
            if tolerate and tolerate in str(exc).lower():
                return
            log.warning("standby queue: %s %s failed: %s", action, fields.get("Interface"),
                        exc)
