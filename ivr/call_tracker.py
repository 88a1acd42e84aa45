"""Turns the dialplan's AMI user events into call events on the bus.

The dialplan announces each hotline call with ``UserEvent(HotlineCallStart, ...)`` and its
hang-up handler with ``UserEvent(HotlineCallEnd, ...)``. Tracking from AMI rather than from
the media socket means a call is logged even when the IVR media server is down.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from crm.call_events import CallEnded, CallEventBus, CallStarted
from ivr.ami import AmiClient, AmiEvent

log = logging.getLogger(__name__)


@dataclass
class ActiveCall:
    call_id: str
    channel: str | None
    caller_number: str | None
    caller_name: str | None


class CallTracker:
    def __init__(self, ami: AmiClient, bus: CallEventBus) -> None:
        self._ami = ami
        self._bus = bus
        self.active_calls: dict[str, ActiveCall] = {}
        self._arrivals: dict[str, asyncio.Event] = {}
        ami.subscribe("UserEvent", self._on_user_event)

    async def _on_user_event(self, event: AmiEvent) -> None:
        kind = event.get("UserEvent")
        call_id = event.get("CallId")
        if kind not in ("HotlineCallStart", "HotlineCallEnd"):
            return
        if not call_id:
            log.warning("%s without CallId ignored: %r", kind, dict(event.headers))
            return
        if kind == "HotlineCallStart":
            call = ActiveCall(call_id, event.get("Channel"), _clean(event.get("CallerNum")),
                              _clean(event.get("CallerName")))
            self.active_calls[call_id] = call
            self._arrivals.pop(call_id, asyncio.Event()).set()
            log.info("call %s: started from %s (%s)", call_id, call.caller_number,
                     call.caller_name)
            await self._bus.publish(CallStarted(call_id, call.caller_number, call.caller_name,
                                                call.channel))
        else:
            self.active_calls.pop(call_id, None)
            log.info("call %s: ended, route=%s cause=%s", call_id, event.get("Route"),
                     event.get("Cause"))
            await self._bus.publish(CallEnded(call_id, _clean(event.get("Route")),
                                              _clean(event.get("Cause"))))

    async def wait_for_call(self, call_id: str, timeout: float) -> ActiveCall | None:
        """The call as announced on AMI; the media socket may connect a moment before."""
        if call_id not in self.active_calls:
            arrived = self._arrivals.setdefault(call_id, asyncio.Event())
            try:
                await asyncio.wait_for(arrived.wait(), timeout)
            except TimeoutError:
                log.warning("call %s: no HotlineCallStart on AMI within %.1f s", call_id, timeout)
            finally:
                self._arrivals.pop(call_id, None)
        return self.active_calls.get(call_id)

    async def set_route(self, channel: str, route: str) -> None:
        """Tell the dialplan where the caller goes when the AudioSocket ends."""
        await self._ami.setvar(channel, "IVR_ROUTE", route)

    def channel_of(self, call_id: str) -> str | None:
        call = self.active_calls.get(call_id)
        return call.channel if call else None


def _clean(value: str | None) -> str | None:
    """AMI renders empty or unknown caller fields as '' or '<unknown>'."""
    if value is None or value.strip() in ("", "<unknown>"):
        return None
    return value.strip()
