"""What the stream publisher, reader and group consumer share: the layout of one stream
entry, the Redis client they each open, the errors that mean "Redis is down, try again", and
the memory of recently seen event ids that drops a resent event.

One entry's fields:

- ``id``: the event's id, given once by the publisher (``<publisher>-<n>``) and kept when the
  event is sent again (after a reply Redis sent was lost), so a reader can tell a resend from
  a new event: the stream entry id differs between the two copies, this one does not;
- ``type`` and ``call``: the event's class and call id, for people reading the stream;
- ``event``: the event in the wire format (crm/telephony/wire.py).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from crm.errors import WireFormatError
from crm.storage.write_behind import Backoff
from crm.telephony import wire
from crm.telephony.events import BusEvent

log = logging.getLogger(__name__)

REDIS_DOWN: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
"""Redis cannot be reached, refuses connections, or is loading its data after a restart
(BusyLoadingError is a ConnectionError): wait and try again."""
REDIS_BACKOFF = Backoff(first=0.1, most=2.0)
"""Seconds between attempts while Redis is down: back soon after a restart (it takes well
under a second here), without hammering it."""


def redis_client(url: str, *, read_block_s: float = 2.0) -> Redis:
    """A client of its own (blocking reads hold their connection), bytes in and out (a
    garbled entry must not break the reading of the others), no retries of its own (the
    callers retry, with their logging)."""
    return Redis.from_url(url, decode_responses=False, socket_connect_timeout=2.0,
                          socket_timeout=read_block_s + 5.0, retry=Retry(NoBackoff(), 0))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event as a group consumer's handler receives it."""

    event: BusEvent
    entry_id: str
    """The stream entry id (``<ms>-<n>``): unique per entry, rising in the stream's order."""
    event_id: str
    """The publisher's id of the event, the same in every copy of it: the key that makes a
    write idempotent (store it with what the event writes, in the same transaction, and
    skip an event whose id is stored already)."""
    redelivered: bool = False
    """Taken over from a consumer that died, or read again after a reconnect: the event may
    have been handled before (its handler may have finished without its acknowledgement)."""


def entries(response: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The (entry id, fields) pairs of an XREAD/XREADGROUP reply (either reply shape)."""
    if not response:
        return []
    streams = response.items() if isinstance(response, Mapping) else response
    out: list[tuple[bytes, dict[bytes, bytes]]] = []
    for _stream, items in streams:
        out += [(entry_id, fields or {}) for entry_id, fields in items or ()]
    return out


def text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def parse(fields: Mapping[bytes, bytes]) -> tuple[str, BusEvent]:
    """(event id, event) of an entry; WireFormatError if it is not one of ours."""
    raw = fields.get(b"event")
    event_id = fields.get(b"id")
    if raw is None or event_id is None:
        raise WireFormatError(f"an entry without id or event (fields: "
                              f"{sorted(text(k) for k in fields)})")
    return text(event_id), wire.loads(raw)


def describe(fields: Mapping[bytes, bytes], limit: int = 300) -> str:
    """The entry's fields for a log line, cut short."""
    shown = ", ".join(f"{text(k)}={text(v)!r}" for k, v in fields.items())
    return shown if len(shown) <= limit else shown[:limit] + "..."


class RecentIds:
    """The last ``size`` event ids seen: a resent copy of one of them is dropped."""

    def __init__(self, size: int = 10_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def seen(self, event_id: str) -> bool:
        """Whether the id was seen before; remembers it."""
        if event_id in self._ids:
            return True
        self.remember(event_id)
        return False

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def remember(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
