"""A media node that dies: control finishes its open calls from what it knows.

Control holds one AMI link per media node (hotline.roles.node_links), and that link's call
tracker knows the node's open calls. When the link goes and the node stays unreachable for
``grace_s`` (the link keeps trying to log in meanwhile), the node is lost: every call the
tracker holds open is ended with route ``lost`` and cause ``node <name> lost`` by the
system, so its consultation is complete (outcome ``lost``) and the callbacks watcher asks
for its caller to be called back (crm.callbacks: reason ``lost``; not for a withheld
number). A link that comes back within the grace is an AMI blip, not a lost node: the
tracker's own resynchronisation closes what ended meanwhile. A node that comes back after
being declared lost starts from an empty tracker: its calls are not ended twice.

New calls are not this module's business: Kamailio's probes stop sending to the dead node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from crm.telephony.events import CallEnded, EventBus
from ivr.ami.client import AmiClient
from ivr.asterisk.call_tracker import CallTracker

log = logging.getLogger(__name__)

LOST_ROUTE = "lost"
"""The route (and consultation outcome) of a call whose media node died under it."""
GRACE_S = 3.0
"""How long a media node's AMI link must stay down before the node counts as lost."""
POLL_S = 0.25
"""How often the link's state is looked at (no state-change hook on the AMI client)."""


def lost_cause(node: str) -> str:
    return f"node {node} lost"[:32]


class NodeLossWatch:
    """Watches one media node's AMI link; ends the node's open calls once it is lost."""

    def __init__(self, node: str, ami: AmiClient, calls: CallTracker, bus: EventBus, *,
                 grace_s: float = GRACE_S) -> None:
        self.node = node
        self._ami = ami
        self._calls = calls
        self._bus = bus
        self._grace_s = grace_s
        self._task: asyncio.Task[None] | None = None
        self.losses = 0
        """Times the node was declared lost (each after a link that stayed down)."""
        self.lost = asyncio.Event()
        """Set once the node was declared lost and its open calls ended."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"node-loss-{self.node}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        down_since: float | None = None
        declared = False
        while True:
            await asyncio.sleep(POLL_S)
            if self._ami.state == "logged_in":
                down_since, declared = None, False
                continue
            if self._ami.logins == 0 or declared or self._ami.state == "closed":
                continue  # never linked yet (a node still starting), or already handled
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since >= self._grace_s:
                declared = True
                await self.end_open_calls()

    async def end_open_calls(self) -> list[str]:
        """The node is lost: end every call its tracker holds open (returns their ids)."""
        self.losses += 1
        ended = list(self._calls.active_calls)
        log.warning("media node %s lost (AMI link down %.0f s, %s): ending its %d open "
                    "call(s) as lost", self.node, self._grace_s,
                    self._ami.last_error or "no reply", len(ended))
        for call_id in ended:
            self._calls.active_calls.pop(call_id, None)
            await self._bus.publish(CallEnded(call_id, LOST_ROUTE, lost_cause(self.node),
                                              party="system", node=self.node))
        self.lost.set()
        return ended
