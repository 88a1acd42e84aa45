"""Publishing call events to the stream without losing one while Redis is down.

``publish`` encodes the event (a bad event fails here, in the publisher's hands), appends it
to a local journal and returns; one sender task (the project's
:class:`~crm.storage.write_behind.WriteBehind`) adds the events to the stream in the order
they were published, many per round trip, and retries while Redis is down or restarting,
so events wait in order and none is lost. Events journaled but not yet sent when the process
stopped are sent first at the next start.

A batch goes in one MULTI/EXEC: all of it or none. If Redis applied it but the reply was lost
(the connection broke at that moment), the batch is sent again: the copies carry the same
event ids (stream_entries), so readers drop them.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from crm.storage.journal import EventJournal
from crm.storage.write_behind import Queued, WriteBehind
from crm.telephony import wire
from crm.telephony.events import BusEvent
from hotline.bus.stream_entries import REDIS_BACKOFF

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An event on its way to the stream, encoded."""

    event_id: str
    type_name: str
    call_id: str
    event: str
    """The wire format (crm/telephony/wire.py)."""

    def fields(self) -> dict[str, str]:
        return {"id": self.event_id, "type": self.type_name, "call": self.call_id,
                "event": self.event}


def _to_journal(item: Outgoing) -> dict[str, Any]:
    return {"id": item.event_id, "type": item.type_name, "call": item.call_id,
            "event": item.event}


def _from_journal(data: Any) -> Outgoing:
    try:
        return Outgoing(str(data["id"]), str(data["type"]), str(data["call"]),
                        str(data["event"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an outgoing bus event: {exc!r}") from None


def outbox_journal(directory: Path, name: str, *, fsync: bool = False) -> EventJournal:
    """The journal of events published but not yet in the stream (``<name>.jsonl``)."""
    return EventJournal(directory, fsync=fsync, name=name, encode=_to_journal,
                        decode=_from_journal)


class StreamPublisher:
    def __init__(self, client: Redis, stream: str, *, maxlen: int,
                 journal: EventJournal | None) -> None:
        """``journal`` None keeps unsent events in memory only (they survive a Redis
        restart, not a restart of this process)."""
        self._client = client
        self._stream = stream
        self._maxlen = maxlen
        self._origin = uuid.uuid4().hex[:16]
        self._numbers = itertools.count(1)
        self._journal = journal
        self._sender: WriteBehind[Outgoing] = WriteBehind(
            "bus events", self._send, journal=journal, backoff=REDIS_BACKOFF,
            describe=lambda o: f"{o.type_name} of call {o.call_id or '-'} ({o.event_id})",
            logger=log)

    def publish(self, event: BusEvent) -> None:
        """Journal the event; it reaches the stream soon, in publication order. Raises
        :class:`~crm.errors.WireFormatError` for an event that does not fit its class."""
        self._sender.put(Outgoing(f"{self._origin}-{next(self._numbers)}",
                                  type(event).__name__, event.call_id, wire.dumps(event)))

    @property
    def pending(self) -> int:
        """Events published and not yet in the stream."""
        return self._sender.pending

    @property
    def sent(self) -> int:
        return self._sender.written

    def start(self) -> None:
        self._sender.start()

    def drain(self) -> Awaitable[None]:
        """Wait until every event published before this call is in the stream."""
        return self._sender.drain()

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is waiting for at most ``timeout`` s; the rest stays in the journal."""
        await self._sender.close(timeout)
        if self._journal is not None:
            self._journal.close()

    async def _send(self, batch: Sequence[Queued[Outgoing]]) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            for queued in batch:
                pipe.xadd(self._stream, queued.item.fields(),  # type: ignore[arg-type]
                          maxlen=self._maxlen, approximate=True)
            await pipe.execute()
