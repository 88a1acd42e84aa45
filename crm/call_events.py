"""Call events and the small publish/subscribe interface the CRM receives them through.

The IVR (and anything else that watches Asterisk) publishes; consultation logging, screen pops
and wallboards subscribe. In-process by default; a networked bus can implement the same
``publish``/``subscribe`` pair.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crm.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallStarted:
    call_id: str
    caller_number: str | None
    caller_name: str | None
    channel: str | None = None
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class CallStep:
    """Something that happened in the IVR: kind is prompt, dtmf, transcript, intent, ..."""

    call_id: str
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class CallEnded:
    call_id: str
    route: str | None
    cause: str | None
    at: datetime = field(default_factory=utcnow)


CallEvent = CallStarted | CallStep | CallEnded
Handler = Callable[[CallEvent], Awaitable[None]]


class CallEventBus:
    """In-process bus: handlers are awaited in subscription order; one failing never stops
    the others."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler)

    async def publish(self, event: CallEvent) -> None:
        for handler in list(self._handlers):
            try:
                await handler(event)
            except Exception:
                log.exception("call %s: subscriber %r failed on %s",
                              event.call_id, handler, type(event).__name__)
