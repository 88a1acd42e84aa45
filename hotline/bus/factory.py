"""``open_bus``: the call-event bus the settings name (``[bus] kind``); ``consume``: work that
must happen once per event across the hotline (the consultation recorder), on either bus."""

from __future__ import annotations

import itertools
import uuid

from crm.telephony.events import BusEvent, CallEventBus, EventBus
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.stream_entries import Delivery
from hotline.bus.stream_group import DeliveryHandler
from hotline.settings import Settings


def open_bus(settings: Settings, *, journal_name: str = "bus-outbox") -> EventBus:
    """The in-process bus (``memory``, the default: one process serves the hotline), or a
    :class:`RedisStreamBus` (``redis``) journaling in ``<state_dir>/journal/<journal_name>``
    (one name per process sharing a state directory); ``await bus.start()`` it before
    publishing and ``await bus.close()`` it at the end."""
    if settings.bus.kind == "redis":
        return RedisStreamBus(settings.bus, journal_dir=settings.state_dir / "journal",
                              journal_name=journal_name)
    return CallEventBus()


def consume(bus: EventBus, group: str, consumer: str, handler: DeliveryHandler) -> None:
    """Hand each event to one consumer of ``group``: a Redis consumer group on the Redis bus
    (hotline/bus/stream_group.py); on the in-process bus, where this process is the only
    consumer, a subscription. Either way the handler gets a
    :class:`~hotline.bus.stream_entries.Delivery` whose ``event_id`` keys idempotent writes
    (on the in-process bus every event gets a fresh one; there are no second deliveries)."""
    if isinstance(bus, RedisStreamBus):
        bus.consume(group, consumer, handler)
        return
    origin = f"local-{uuid.uuid4().hex[:16]}"
    numbers = itertools.count(1)

    async def deliver(event: BusEvent) -> None:
        n = next(numbers)
        await handler(Delivery(event, entry_id=f"0-{n}", event_id=f"{origin}-{n}"))

    bus.subscribe(deliver)
