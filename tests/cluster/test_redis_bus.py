"""Call events on Redis Streams (hotline/bus/) with a real redis-server: what goes in comes out,
in order, to every reader; a consumer group handles each event once, also when a consumer
dies; a Redis restart loses nothing; a garbled entry is set aside and the rest flows."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from crm.telephony.events import (
    AgentRinging,
    BusEvent,
    CallEnded,
    CallEventBus,
    CallStarted,
    CallStep,
    EventBus,
)
from crm.telephony.steps import KeysEntered, PromptPlayed
from hotline.bus.factory import open_bus
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.redis_server import RedisServer
from hotline.bus.settings import BusSettings
from hotline.bus.stream_entries import Delivery, redis_client
from hotline.bus.stream_group import dead_stream
from hotline.settings import Settings
from tests.unit.test_wire import EXAMPLES

WAIT = 20.0
"""Seconds any wait for events may take at most (they take milliseconds)."""


class Seen:
    """What a handler received, and a way to wait until there is enough of it."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Condition()

    async def add(self, item: Any) -> None:
        async with self._changed:
            self.items.append(item)
            self._changed.notify_all()

    async def until(self, count: int, timeout: float = WAIT) -> list[Any]:
        async def enough() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.items) >= count)
        try:
            await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{len(self.items)} of {count} arrived within {timeout} s") from None
        return self.items


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     timeout: float = WAIT) -> None:
    """Poll ``check`` (a state in Redis, or a counter) until it holds, for ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def calls(n_calls: int, per_call: int = 4) -> list[BusEvent]:
    """Events of several calls, interleaved as a busy hotline publishes them."""
    out: list[BusEvent] = []
    for step in range(per_call):
        for call in range(n_calls):
            cid = f"call-{call}"
            if step == 0:
                out.append(CallStarted(cid, "13800000000", "张三"))
            elif step == per_call - 1:
                out.append(CallEnded(cid, "agent", "16 Normal Clearing", party="caller"))
            else:
                out.append(CallStep(cid, KeysEntered(str(step)) if step % 2
                                    else PromptPlayed(f"p{step}", "zh")))
    return out


@pytest.fixture
def bus_settings(redis_server: RedisServer) -> BusSettings:
    return BusSettings(kind="redis", redis_url=redis_server.url,
                       stream=f"test:{uuid.uuid4().hex[:8]}", claim_idle_s=0.5,
                       max_deliveries=3, read_block_s=0.2)


@pytest.fixture
async def buses(bus_settings: BusSettings, tmp_path: Path
                ) -> AsyncIterator[Callable[..., Awaitable[RedisStreamBus]]]:
    """Starts buses as separate processes would have them (each its own journal); closes
    them all at the end."""
    opened: list[RedisStreamBus] = []

    async def make(name: str = "p", *, settings: BusSettings | None = None,
                   subscribe: list[Callable[[BusEvent], Awaitable[None]]] | None = None,
                   **kwargs: Any) -> RedisStreamBus:
        bus = RedisStreamBus(settings or bus_settings, journal_dir=tmp_path / f"journal-{name}",
                             **kwargs)
        for handler in subscribe or []:
            bus.subscribe(handler)
        await bus.start()
        opened.append(bus)
        return bus

    yield make
    for bus in opened:
        await bus.close(timeout=1.0)


async def test_every_event_type_goes_through_redis_and_comes_back_equal(buses: Any) -> None:
    seen = Seen()
    bus = await buses(subscribe=[seen.add])
    for event in EXAMPLES:
        await bus.publish(event)
    assert await seen.until(len(EXAMPLES)) == EXAMPLES


async def test_every_subscriber_of_every_process_sees_every_event_in_order(buses: Any) -> None:
    first, second, third = Seen(), Seen(), Seen()
    await buses("web-1", subscribe=[first.add, second.add])
    await buses("web-2", subscribe=[third.add])
    control = await buses("control")
    events = calls(25)
    for event in events:
        await control.publish(event)
    for seen in (first, second, third):
        assert await seen.until(len(events)) == events


async def test_a_reader_given_an_id_reads_from_there(buses: Any) -> None:
    publisher = await buses("control")
    events = calls(3)
    for event in events:
        await publisher.publish(event)
    await asyncio.wait_for(publisher.flushed(), WAIT)
    late, from_start = Seen(), Seen()
    await buses("web-late", subscribe=[late.add])  # from where it started: the end
    await buses("web-replay", subscribe=[from_start.add], read_from="0")
    assert await from_start.until(len(events)) == events
    last = CallEnded("call-x", "end", None)
    await publisher.publish(last)
    assert await late.until(1) == [last]
    assert await from_start.until(len(events) + 1) == [*events, last]


async def test_the_stream_stays_bounded(buses: Any, bus_settings: BusSettings) -> None:
    settings = bus_settings.model_copy(update={"maxlen": 1000})
    publisher = await buses("control", settings=settings)
    for event in calls(750):  # 3000 events
        await publisher.publish(event)
    await asyncio.wait_for(publisher.flushed(), WAIT)
    client = redis_client(settings.redis_url)
    try:
        length = await client.xlen(settings.stream)
    finally:
        await client.aclose()
    assert 1000 <= length < 1500  # trimmed in whole nodes (100 entries), about maxlen


async def test_a_failing_subscriber_never_stops_the_others(buses: Any) -> None:
    seen = Seen()

    async def broken(event: BusEvent) -> None:
        raise RuntimeError("a subscriber with a bug")

    bus = await buses(subscribe=[broken, seen.add])
    events = calls(3)
    for event in events:
        await bus.publish(event)
    assert await seen.until(len(events)) == events


async def test_competing_consumers_see_each_event_once_in_total(buses: Any) -> None:
    seen = Seen()
    events = calls(40)
    publisher = await buses("control")
    for event in events:
        await publisher.publish(event)
    one, two = await buses("recorder-1"), await buses("recorder-2")
    one.consume("recorder", "r1", seen.add)
    two.consume("recorder", "r2", seen.add)
    deliveries: list[Delivery] = await seen.until(len(events))
    more = calls(10)
    for event in more:
        await publisher.publish(event)
    deliveries = await seen.until(len(events) + len(more))
    assert sorted(d.entry_id for d in deliveries) == sorted({d.entry_id for d in deliveries})
    assert sorted(map(repr, (d.event for d in deliveries))) == sorted(
        map(repr, events + more))
    assert not any(d.redelivered for d in deliveries)
    counters = [(c.handled, c.failed, c.dead) for c in (*one.consumers, *two.consumers)]
    assert sum(h for h, _, _ in counters) == len(events) + len(more)
    assert all(f == d == 0 for _, f, d in counters)


async def test_a_dead_consumers_events_are_taken_over_and_handled_once(
        buses: Any, bus_settings: BusSettings) -> None:
    events = calls(5)
    publisher = await buses("control")
    for event in events:
        await publisher.publish(event)
    await asyncio.wait_for(publisher.flushed(), WAIT)

    taken = asyncio.Event()
    never = asyncio.Event()

    async def hangs(delivery: Delivery) -> None:
        taken.set()
        await never.wait()  # the process dies here, the event not handled

    doomed = await buses("recorder-1")
    doomed.consume("recorder", "r1", hangs)
    await asyncio.wait_for(taken.wait(), WAIT)
    await doomed.close(timeout=0)  # killed: its entries stay pending, unacknowledged

    client = redis_client(bus_settings.redis_url)
    try:
        pending = await client.xpending(bus_settings.stream, "recorder")
        assert pending["pending"] == len(events)  # r1 had read them all

        seen = Seen()
        survivor = await buses("recorder-2")
        [worker] = [survivor.consume("recorder", "r2", seen.add)]
        deliveries: list[Delivery] = await seen.until(len(events))
        assert [d.event for d in deliveries] == events  # in stream order
        assert all(d.redelivered for d in deliveries)
        assert worker.reclaimed == len(events) and worker.handled == len(events)

        async def acknowledged() -> bool:
            return (await client.xpending(bus_settings.stream, "recorder"))["pending"] == 0
        await eventually(acknowledged, "every entry acknowledged")
        assert len(seen.items) == len(events)  # no second delivery
    finally:
        await client.aclose()


async def test_a_slow_consumer_keeps_its_events(buses: Any) -> None:
    """A handler waiting (for the database, say) longer than claim_idle_s does not lose its
    entries to the other consumer: they are handled once, by the slow one."""
    events = calls(3)
    publisher = await buses("control")
    for event in events:
        await publisher.publish(event)
    await asyncio.wait_for(publisher.flushed(), WAIT)
    slow_seen, other_seen = Seen(), Seen()
    stuck, go_on = asyncio.Event(), asyncio.Event()

    async def slow(delivery: Delivery) -> None:
        if not stuck.is_set():
            stuck.set()
            await go_on.wait()
        await slow_seen.add(delivery)

    [slow_worker] = [(await buses("recorder-1")).consume("recorder", "r1", slow)]
    await asyncio.wait_for(stuck.wait(), WAIT)
    [other] = [(await buses("recorder-2")).consume("recorder", "r2", other_seen.add)]
    rounds = other.reclaim_rounds

    async def long_past_the_claim_time() -> bool:  # claim_idle_s / 2 apart: > 3 x claim_idle_s
        return other.reclaim_rounds >= rounds + 7
    await eventually(long_past_the_claim_time, "the other consumer tried to take over")
    go_on.set()
    deliveries = await slow_seen.until(len(events))
    assert [d.event for d in deliveries] == events
    assert other_seen.items == [] and other.reclaimed == 0
    assert slow_worker.skipped == 0


async def test_an_event_whose_acknowledgement_was_lost_is_not_handled_twice(
        buses: Any, redis_server: RedisServer) -> None:
    events = calls(3)
    handled: list[BusEvent] = []
    seen = Seen()

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery.event)
        if len(handled) == 2:  # Redis dies after this handler, before its XACK
            await asyncio.to_thread(redis_server.kill)
        await seen.add(delivery)

    publisher = await buses("control")
    for event in events[:2]:
        await publisher.publish(event)
    await asyncio.wait_for(publisher.flushed(), WAIT)
    recorder = await buses("recorder")
    [worker] = [recorder.consume("recorder", "r1", handler)]
    await seen.until(2)
    await asyncio.to_thread(redis_server.start)
    for event in events[2:]:
        await publisher.publish(event)
    await seen.until(len(events))
    assert handled == events  # each once, in order

    async def copies_acknowledged() -> bool:  # the two of the read whose XACK was lost
        return worker.duplicates == 2
    await eventually(copies_acknowledged, "the pending copies acknowledged, not handled")


async def test_a_consumer_that_restarts_gets_its_own_pending_events_first(
        buses: Any, bus_settings: BusSettings) -> None:
    settings = bus_settings.model_copy(update={"claim_idle_s": 3600.0})  # no take-over
    events = calls(2)
    publisher = await buses("control", settings=settings)
    for event in events:
        await publisher.publish(event)
    await asyncio.wait_for(publisher.flushed(), WAIT)
    taken, never = asyncio.Event(), asyncio.Event()

    async def hangs(delivery: Delivery) -> None:
        taken.set()
        await never.wait()

    before = await buses("recorder-a", settings=settings)
    before.consume("recorder", "r1", hangs)
    await asyncio.wait_for(taken.wait(), WAIT)
    await before.close(timeout=0)
    seen = Seen()
    after = await buses("recorder-b", settings=settings)
    after.consume("recorder", "r1", seen.add)  # the same consumer, restarted
    deliveries = await seen.until(len(events))
    assert [d.event for d in deliveries] == events and all(d.redelivered for d in deliveries)


@pytest.mark.parametrize("outage", ["restart", "kill -9"])
async def test_events_published_while_redis_is_down_arrive_once_in_order(
        buses: Any, redis_server: RedisServer, outage: str) -> None:
    seen, group_seen = Seen(), Seen()
    events = calls(30)
    before, during, after = events[:40], events[40:80], events[80:]
    gate = asyncio.Event()

    async def held_at_the_outage(event: BusEvent) -> None:
        await seen.add(event)
        if len(seen.items) == len(before):
            await gate.wait()  # the reader is busy while Redis goes and comes back

    reader = await buses("web", subscribe=[held_at_the_outage])
    recorder = await buses("recorder")
    recorder.consume("recorder", "r1", group_seen.add)
    publisher = await buses("control")
    for event in before:
        await publisher.publish(event)
    await seen.until(len(before))
    await group_seen.until(len(before))
    # The publisher has had Redis's replies too: the readers can see events before the
    # publisher hears they were added, and an XADD whose reply the kill cuts off is sent
    # again (at least once; the readers drop the copy): not what this test is about.
    await asyncio.wait_for(publisher.flushed(), WAIT)

    await asyncio.to_thread(redis_server.stop if outage == "restart" else redis_server.kill)
    for event in during:
        await publisher.publish(event)  # never waits, never fails
    assert publisher.unsent > 0
    assert len(seen.items) == len(before)
    await asyncio.to_thread(redis_server.start)

    for event in after:
        await publisher.publish(event)
    await asyncio.wait_for(publisher.flushed(), WAIT)  # all in the stream before it reads on
    gate.set()
    assert await seen.until(len(events)) == events
    deliveries: list[Delivery] = await group_seen.until(len(events))
    assert [d.event for d in deliveries] == events
    await asyncio.wait_for(publisher.flushed(), WAIT)
    assert publisher.unsent == 0
    assert reader.reader is not None and reader.reader.duplicates == 0


async def test_events_left_unsent_at_a_stop_are_sent_by_the_next_start(
        buses: Any, redis_server: RedisServer, bus_settings: BusSettings) -> None:
    seen = Seen()
    await buses("web", subscribe=[seen.add])
    events = calls(4)
    await asyncio.to_thread(redis_server.stop)
    first = await buses("control")
    for event in events[:8]:
        await first.publish(event)
    await first.close(timeout=0)  # the process stops with everything unsent
    await asyncio.to_thread(redis_server.start)
    again = await buses("control")  # the same journal
    for event in events[8:]:
        await again.publish(event)
    assert await seen.until(len(events)) == events


async def test_a_stream_name_taken_by_another_key_is_reported_and_waited_out(
        buses: Any, bus_settings: BusSettings, caplog: pytest.LogCaptureFixture) -> None:
    client = redis_client(bus_settings.redis_url)
    try:
        await client.set(bus_settings.stream, "not a stream")
        seen, group_seen = Seen(), Seen()
        await buses("web", subscribe=[seen.add], read_from="0")
        recorder = await buses("recorder", read_from="0")
        [worker] = [recorder.consume("recorder", "r1", group_seen.add)]
        publisher = await buses("control", read_from="0")
        events = calls(2)
        for event in events:
            await publisher.publish(event)

        async def refused() -> bool:
            return any("Redis refuses" in r.getMessage() for r in caplog.records) and any(
                "WRONGTYPE" in r.getMessage() for r in caplog.records
                if r.name.endswith("stream_publisher"))
        await eventually(refused, "the refusals logged")
        assert seen.items == [] and publisher.unsent == len(events)
        await client.delete(bus_settings.stream)
        assert await seen.until(len(events)) == events
        assert [d.event for d in await group_seen.until(len(events))] == events
        assert worker.dead == 0
    finally:
        await client.aclose()


async def test_a_garbled_entry_is_logged_set_aside_and_the_rest_flows(
        buses: Any, bus_settings: BusSettings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    seen, group_seen = Seen(), Seen()
    await buses("web", subscribe=[seen.add])
    recorder = await buses("recorder")
    [worker] = [recorder.consume("recorder", "r1", group_seen.add)]
    publisher = await buses("control")
    events = calls(3)
    client = redis_client(bus_settings.redis_url)
    garbage = [
        {"id": "x-1", "event": "{this is not json"},
        {"id": "x-2", "event": b"\xff\xfe binary"},
        {"id": "x-3", "event": '{"type":"CallTeleported","v":1,"fields":{}}'},
        {"id": "x-4", "event": '{"type":"CallStarted","v":7,"fields":{}}'},
        {"something": "else"},
    ]
    try:
        for i, event in enumerate(events):
            await publisher.publish(event)
            if i % 2 == 0 and garbage:
                await asyncio.wait_for(publisher.flushed(), WAIT)
                await client.xadd(bus_settings.stream, garbage.pop())  # type: ignore[arg-type]
        assert not garbage
        assert await seen.until(len(events)) == events
        assert [d.event for d in await group_seen.until(len(events))] == events
        assert worker.dead == 5

        dead = await client.xrange(dead_stream(bus_settings.stream))
        reasons = sorted(fields[b"dead_reason"].decode() for _, fields in dead)
        assert len(reasons) == 5
        assert any("unknown bus event type 'CallTeleported'" in r for r in reasons)
        assert any("CallStarted version 7 cannot be read" in r for r in reasons)
        assert any("not JSON" in r for r in reasons)
        assert any("without id or event" in r for r in reasons)
        assert (await client.xpending(bus_settings.stream, "recorder"))["pending"] == 0
    finally:
        await client.aclose()
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert sum("cannot be read, skipped" in m for m in logged) == 5  # the reader
    assert sum("moved aside" in m for m in logged) == 5  # the group


async def test_an_event_whose_handler_keeps_failing_is_moved_aside_after_its_tries(
        buses: Any, bus_settings: BusSettings) -> None:
    seen = Seen()
    tries = 0

    async def fails_on_the_prompt(delivery: Delivery) -> None:
        nonlocal tries
        if isinstance(delivery.event, CallStep) and delivery.event.kind == "prompt":
            tries += 1
            raise RuntimeError("the database refuses this one")
        await seen.add(delivery)

    events = [CallStarted("c-1", None, None), CallStep("c-1", PromptPlayed("hello")),
              AgentRinging("c-1", "hotline", "PJSIP/2001", "2001"),
              CallEnded("c-1", "agent", None)]
    publisher = await buses("control")
    recorder = await buses("recorder")
    [worker] = [recorder.consume("recorder", "r1", fails_on_the_prompt)]
    for event in events:
        await publisher.publish(event)
    deliveries = await seen.until(3)
    assert [d.event for d in deliveries] == [events[0], events[2], events[3]]

    async def moved_aside() -> bool:
        return worker.dead == 1
    await eventually(moved_aside, "the failing event moved aside")
    assert tries == bus_settings.max_deliveries


async def test_open_bus_gives_the_in_process_bus_unless_told_otherwise(
        tmp_path: Path, bus_settings: BusSettings) -> None:
    memory = open_bus(Settings(state_dir=tmp_path))
    assert isinstance(memory, CallEventBus)
    redis_bus: EventBus = open_bus(Settings(state_dir=tmp_path, bus=bus_settings))
    assert isinstance(redis_bus, RedisStreamBus)
    await redis_bus.start()
    seen = Seen()
    redis_bus.subscribe(seen.add)
    await redis_bus.publish(CallStarted("c-1", None, None))
    assert len(await seen.until(1)) == 1
    await redis_bus.close()
    assert (tmp_path / "journal" / "bus-outbox.jsonl").exists()
