"""``open_bus``: the call-event bus the settings name (``[bus] kind``)."""

from __future__ import annotations

from crm.telephony.events import CallEventBus, EventBus
from hotline.bus.redis_bus import RedisStreamBus
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
