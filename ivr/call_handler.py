"""The foundation call handler: logs what the caller keys in and routes '0' to an agent.

The speech IVR replaces this with the full call flow; this one keeps the walking skeleton
honest end to end (AudioSocket in, consultation steps out, AMI routing back).
"""

from __future__ import annotations

import logging

from crm.call_events import CallEventBus, CallStep
from ivr.audiosocket_protocol import Dtmf, Hangup
from ivr.call_tracker import CallTracker
from ivr.media_session import Closed, MediaSession

log = logging.getLogger(__name__)

AGENT_KEY = "0"


class KeypadCallHandler:
    def __init__(self, bus: CallEventBus, tracker: CallTracker) -> None:
        self._bus = bus
        self._tracker = tracker

    async def handle(self, session: MediaSession) -> None:
        call_id = str(session.call_id)
        await self._bus.publish(CallStep(call_id, "ivr_connected", {}))
        while True:
            event = await session.next_event(timeout=None)
            if isinstance(event, Dtmf):
                await self._bus.publish(CallStep(call_id, "dtmf", {"key": event.key}))
                if event.key == AGENT_KEY:
                    await self._route(session, call_id, "agent")
                    return
            elif isinstance(event, Hangup | Closed):
                return

    async def _route(self, session: MediaSession, call_id: str, route: str) -> None:
        channel = self._tracker.channel_of(call_id)
        if channel:
            await self._tracker.set_route(channel, route)
        else:
            log.warning("call %s: channel unknown, the dialplan falls back to the queue", call_id)
        await self._bus.publish(CallStep(call_id, "route", {"route": route}))
        await session.hangup()
