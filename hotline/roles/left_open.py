"""Calls left open when a cluster's control starts (a standby taking over, or a restart),
placed on the media node they are live on.

On one box, control's call tracker adopts every call the records show as live and its first
resynchronisation (CoreShowChannels) closes those that ended meanwhile. In a cluster each
media node has its own tracker (hotline/roles/node_links.py), and a tracker's
resynchronisation only sees its own node's channels: one tracker adopting every call would
end the calls live on the other nodes. So before any tracker logs in, each media node's
live hotline calls are listed (CoreShowChannels on a short-lived AMI link): a call live on a
node is adopted by that node's tracker (which then follows it to its real end); a call live
nowhere ended while no control ran and is closed from the node's own channel event record
(hotline/reconciliation.py) when that has it, else as ``resynchronised``. A node whose AMI
does not answer within :data:`SCAN_S` is taken as having none of them (a node down at the
takeover has lost its calls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from crm.consultations.recorder import OpenCall
from crm.storage.db import SessionFactory
from crm.telephony.events import CallEnded, EventBus
from hotline.edge.nodes import node_settings
from hotline.edge.settings import MediaNode
from hotline.reconciliation import reconcile_open_calls
from hotline.settings import Settings
from ivr.ami.client import AmiClient
from ivr.settings import AmiSettings

log = logging.getLogger(__name__)

SCAN_S = 5.0
"""How long a media node's AMI has to log in and list its channels at start-up."""


async def live_call_ids(ami_settings: AmiSettings, name: str,
                        within: float = SCAN_S) -> set[str] | None:
    """The CALL_IDs of the callers' channels live on one node (None: its AMI did not answer
    within ``within`` s)."""
    ami = AmiClient(ami_settings, name=f"hotline-control-scan-{name}")
    await ami.start()
    try:
        async with asyncio.timeout(within):
            await ami.wait_ready(within)
            channels = await ami.action_list("CoreShowChannels")
    except Exception as exc:  # a node down or refusing: it holds none of the calls
        log.warning("control: cannot list the channels of node %s (%s)", name,
                    str(exc) or type(exc).__name__)
        return None
    finally:
        await ami.close()
    return {call_id for channel in channels
            if (call_id := channel.chan_variables().get("CALL_ID"))
            and channel.get("Uniqueid") == channel.get("Linkedid")}


@dataclass
class LeftOpenPlacement:
    """Places the calls left open on the media nodes (see the module): ``own`` is the node
    of control's ``[ami]`` link, ``nodes`` the media nodes it links besides."""

    settings: Settings
    sessions: SessionFactory
    bus: EventBus
    own: str
    nodes: Sequence[str]
    scan_s: float = SCAN_S
    by_node: dict[str, list[OpenCall]] = field(default_factory=dict)
    """Calls live on each of ``nodes``, for its tracker to adopt (node_links)."""

    async def place(self, calls: list[OpenCall]) -> list[OpenCall]:
        """Sort ``calls`` (not closed from the own node's record) by node; close those live
        nowhere; return the own node's share (for control's own tracker)."""
        if not calls:
            return []
        names = [self.own, *self.nodes]
        scans = await asyncio.gather(
            live_call_ids(self.settings.ami, self.own, self.scan_s),
            *(live_call_ids(node_settings(self.settings, self._media(n)).ami, n, self.scan_s)
              for n in self.nodes))
        mine: list[OpenCall] = []
        nowhere: list[OpenCall] = []
        for call in calls:
            node = next((n for n, live in zip(names, scans, strict=True)
                         if live is not None and call.call_id in live), None)
            if node == self.own:
                mine.append(call)
            elif node is not None:
                self.by_node.setdefault(node, []).append(call)
            else:
                nowhere.append(call)
        await self._close(nowhere)
        log.info("control: %d call(s) left open: %d live on %s, %s, %d ended meanwhile",
                 len(calls), len(mine), self.own,
                 ", ".join(f"{len(v)} on {k}" for k, v in self.by_node.items()) or "none "
                 "on the other nodes", len(nowhere))
        return mine

    def _media(self, name: str) -> MediaNode:
        return next(m for m in self.settings.edge.nodes if m.name == name)

    async def _close(self, calls: list[OpenCall]) -> None:
        """Calls live on no node: from a node's own record if it has them, else closed as
        resynchronised (as a tracker's resynchronisation closes them on one box)."""
        left = list(calls)
        for name in self.nodes:  # the own node's record was read by start_control
            if not left:
                return
            closed = await reconcile_open_calls(
                node_settings(self.settings, self._media(name)), self.sessions, left)
            left = [c for c in left if c.call_id not in closed]
        for call in left:
            log.info("call %s: ended while no control ran (resynchronised)", call.call_id)
            await self.bus.publish(CallEnded(call.call_id, None, "resynchronised"))
