"""Call events on a Redis stream, behind the interface of the in-process bus
(crm.telephony.events.EventBus), for a hotline served by several processes.

- ``publish(event)``: journaled locally and added to the stream in order by one sender task,
  retried while Redis is down (stream_publisher);
- ``subscribe(handler)``: every process reads the whole stream with its own reader, from where
  it started, and awaits its handlers in order for each event (stream_reader);
- ``consume(group, consumer, handler)``: competing consumers in a consumer group, each event
  handled once across the group, acknowledged after its handler returned, taken over from a
  consumer that died (stream_group).

Unlike the in-process bus, ``publish`` returns before the handlers ran (in this process and
the others): use :meth:`RedisStreamBus.flushed` to wait until the events are in the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from crm.telephony.events import BusEvent, Handler
from hotline.bus.settings import BusSettings
from hotline.bus.stream_entries import REDIS_DOWN, redis_client
from hotline.bus.stream_group import DeliveryHandler, GroupConsumer
from hotline.bus.stream_publisher import StreamPublisher, outbox_journal
from hotline.bus.stream_reader import StreamReader, clock_id, tail_id

log = logging.getLogger(__name__)

STOP_WAIT = 5.0
"""Seconds the reader and the consumers get to stop once cancelled."""


def _stack(task: asyncio.Task[None]) -> list[str]:
    out = io.StringIO()
    task.print_stack(file=out)
    return [out.getvalue()]


class RedisStreamBus:
    def __init__(self, settings: BusSettings, *, journal_dir: Path | None,
                 journal_name: str = "bus-outbox", read_from: str | None = None) -> None:
        """``journal_dir`` holds the events published but not yet in the stream
        (``<journal_name>.jsonl``; one name per process: two processes never share one);
        None keeps them in memory only. ``read_from``: the entry id this process's reader
        starts after (``0`` for the whole stream); None: the stream's end at :meth:`start`."""
        self.settings = settings
        self._handlers: list[Handler] = []
        self._journal_dir = journal_dir
        self._journal_name = journal_name
        self._read_from = read_from
        self._publish_client = redis_client(settings.redis_url,
                                            read_block_s=settings.read_block_s)
        self._publisher: StreamPublisher | None = None
        self.reader: StreamReader | None = None
        self._reader_client = redis_client(settings.redis_url,
                                           read_block_s=settings.read_block_s)
        self.consumers: list[GroupConsumer] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._clients = [self._publish_client, self._reader_client]
        self._started = False

    # -- EventBus -------------------------------------------------------------------------------
    def subscribe(self, handler: Handler) -> Callable[[], None]:
        """Add a handler of every event of the stream (see the module's docstring)."""
        self._handlers.append(handler)
        if self._started:
            self._start_reader()
        return lambda: self._handlers.remove(handler)

    async def publish(self, event: BusEvent) -> None:
        """Journal the event for the stream and return (it is sent soon, in order). Raises
        :class:`~crm.errors.WireFormatError` for an event that does not fit its class."""
        if self._publisher is None:
            raise RuntimeError("RedisStreamBus.publish before start()")
        self._publisher.publish(event)

    def read_from(self, entry_id: str) -> None:
        """Where this process's reader starts (after ``entry_id``; ``0``: the whole stream):
        set before the first subscription."""
        if self.reader is not None:
            raise RuntimeError("RedisStreamBus.read_from after the reader started")
        self._read_from = entry_id

    async def tail(self) -> str:
        """The stream's last entry id now (``0-0`` when empty)."""
        return await tail_id(self._reader_client, self.settings.stream)

    # -- competing consumers --------------------------------------------------------------------
    def consume(self, group: str, consumer: str, handler: DeliveryHandler, *,
                group_start: str = "0") -> GroupConsumer:
        """Hand each event of the stream to one consumer of ``group`` (``consumer`` names this
        one: stable across restarts, so its own pending entries come back to it). See
        hotline.bus.stream_group."""
        client = redis_client(self.settings.redis_url, read_block_s=self.settings.read_block_s)
        self._clients.append(client)
        worker = GroupConsumer(client, self.settings.stream, group, consumer, handler,
                               claim_idle_s=self.settings.claim_idle_s,
                               max_deliveries=self.settings.max_deliveries,
                               block_s=self.settings.read_block_s, group_start=group_start)
        self.consumers.append(worker)
        self._spawn(f"group {group}/{consumer}", worker.run())
        return worker

    async def stop_consuming(self, worker: GroupConsumer) -> None:
        """Stop one consumer (before what its handler feeds is closed); its entries read and
        not acknowledged stay pending for it, or for another consumer to take over."""
        name = f"group {worker.group}/{worker.consumer}"
        task = self._tasks.pop(name, None)
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task], timeout=STOP_WAIT)
        if not task.done():
            log.error("bus: %s did not stop within %.0f s", name, STOP_WAIT)

    # -- life -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the journal (what a previous run left unsent goes first), start the sender
        and, when there are subscribers, the reader."""
        journal = None
        if self._journal_dir is not None:
            journal = outbox_journal(self._journal_dir, self._journal_name,
                                     fsync=self.settings.journal_fsync)
        self._publisher = StreamPublisher(self._publish_client, self.settings.stream,
                                          maxlen=self.settings.maxlen, journal=journal)
        if self._read_from is None:
            try:
                self._read_from = await tail_id(self._reader_client, self.settings.stream)
            except REDIS_DOWN as exc:
                self._read_from = clock_id()
                log.warning("bus: Redis at %s unreachable at start (%s); events are kept "
                            "until it is back, and read from %s", self.settings.redis_url,
                            exc, self._read_from)
        self._publisher.start()
        self._started = True
        if self._handlers:
            self._start_reader()

    def flushed(self) -> Awaitable[None]:
        """Wait until every event published before this call is in the stream."""
        if self._publisher is None:
            raise RuntimeError("RedisStreamBus.flushed before start()")
        return self._publisher.drain()

    @property
    def unsent(self) -> int:
        """Events published and not yet in the stream (for the health report)."""
        return self._publisher.pending if self._publisher is not None else 0

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is waiting (for at most ``timeout`` s; the rest stays in the journal),
        stop the reader and the consumers, close the connections."""
        if self._publisher is not None:
            try:
                async with asyncio.timeout(timeout + STOP_WAIT):
                    await self._publisher.close(timeout)
            except TimeoutError:
                log.error("bus: the sender did not stop within %.0f s", timeout + STOP_WAIT)
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=STOP_WAIT)
        for name, task in self._tasks.items():
            if not task.done():
                log.error("bus: %s did not stop within %.0f s; it was at:\n%s", name,
                          STOP_WAIT, "".join(_stack(task)))
            elif not task.cancelled() and task.exception() is not None:
                log.error("bus: %s had stopped: %r", name, task.exception())
        self._tasks.clear()
        for client in self._clients:
            with contextlib.suppress(*REDIS_DOWN):
                await client.aclose()
        self._started = False

    def _start_reader(self) -> None:
        if self.reader is not None:
            return
        self.reader = StreamReader(self._reader_client, self.settings.stream, self._handlers,
                                   start_id=self._read_from, block_s=self.settings.read_block_s)
        self._spawn("reader", self.reader.run())

    def _spawn(self, name: str, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus: %s stopped", name)
                raise

        self._tasks[name] = asyncio.create_task(run(), name=f"bus {name}")
