"""Announcements a waiting caller heard, as steps of their call.

app_queue announces the position and expected wait itself (queues.conf announce-*), and tells
AMI nothing about it. What AMI does show is the hold music around it: the queue stops the
caller's music (MusicOnHoldStop), plays the announcement, and starts the music again
(MusicOnHoldStart). A stop followed by a start while the caller waits in one of the hotline's
queues is therefore one announcement, lasting from the stop to the start; it becomes a
:class:`~crm.telephony.steps.QueuePositionAnnounced` step (published when the music resumes,
dated when the announcement began).

The caller's position is kept as Asterisk keeps it: QueueCallerJoin gives it, and every
caller ahead who leaves the queue (QueueCallerLeave, QueueCallerAbandon) moves it up by one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from crm.telephony.events import CallStep, EventBus, utcnow
from crm.telephony.steps import QueuePositionAnnounced
from ivr.ami.client import AmiClient, AmiEvent

log = logging.getLogger(__name__)


def is_hotline_queue(queue: str | None, main_queue: str) -> bool:
    """The main queue and every queue named after it (per-language desks: hotline-en)."""
    return bool(queue) and (queue == main_queue or str(queue).startswith(main_queue + "-"))


@dataclass
class _Waiting:
    call_id: str
    queue: str
    position: int
    silenced_at: datetime | None = None
    language: str | None = None


class QueueAnnouncements:
    """Publishes a QueuePositionAnnounced step for each announcement a waiting caller hears.

    ``announce_position``: the queue says the position (its first sound is
    queue_youarenext or queue_thereare); otherwise it says the expected wait only."""

    def __init__(self, ami: AmiClient, bus: EventBus, *, main_queue: str,
                 announce_position: bool = True) -> None:
        self._bus = bus
        self._main_queue = main_queue
        self._announce_position = announce_position
        self.waiting: dict[str, _Waiting] = {}
        """Uniqueid of the caller's channel -> where they wait."""
        self._unsubscribe: Callable[[], None] | None = ami.subscribe("*", self._on_event)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def _on_event(self, event: AmiEvent) -> None:
        kind = event.name.lower()
        uniqueid = event.get("Uniqueid") or ""
        if kind == "queuecallerjoin":
            self._joined(event, uniqueid)
        elif kind in ("queuecallerleave", "queuecallerabandon"):
            self._left(event, uniqueid)
        elif kind == "hangup":
            self.waiting.pop(uniqueid, None)
        elif kind == "musiconholdstop" and (waiting := self.waiting.get(uniqueid)):
            waiting.silenced_at = utcnow()
            waiting.language = (event.get("Language") or "").strip() or None
        elif kind == "musiconholdstart" and (waiting := self.waiting.get(uniqueid)):
            if waiting.silenced_at is not None:
                await self._announced(waiting)

    def _joined(self, event: AmiEvent, uniqueid: str) -> None:
        queue = event.get("Queue") or ""
        call_id = (event.chan_variables().get("CALL_ID") or "").strip()
        if not is_hotline_queue(queue, self._main_queue) or not call_id:
            return
        try:
            position = int(event.get("Position") or "0")
        except ValueError:
            position = 0
        self.waiting[uniqueid] = _Waiting(call_id, queue, position)

    def _left(self, event: AmiEvent, uniqueid: str) -> None:
        gone = self.waiting.pop(uniqueid, None)
        if gone is None:
            return
        for other in self.waiting.values():
            if other.queue == gone.queue and other.position > gone.position:
                other.position -= 1

    async def _announced(self, waiting: _Waiting) -> None:
        began, waiting.silenced_at = waiting.silenced_at, None
        assert began is not None
        seconds = round((utcnow() - began).total_seconds(), 2)
        if not self._announce_position:
            prompt = "queue_holdtime"
        else:
            prompt = "queue_youarenext" if waiting.position == 1 else "queue_thereare"
        log.info("call %s: position %d in %s announced (%s, %s, %.1f s)", waiting.call_id,
                 waiting.position, waiting.queue, prompt, waiting.language, seconds)
        await self._bus.publish(CallStep(
            waiting.call_id,
            QueuePositionAnnounced(waiting.queue, waiting.position, prompt, waiting.language,
                                   seconds),
            at=began))
