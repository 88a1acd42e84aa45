"""speech.tts.Lanes: the synthesis slots, callers' requests before the prewarm's."""

from __future__ import annotations

import asyncio

from speech.tts import Lanes


async def hold(lanes: Lanes, ticket, started: list[int], release: asyncio.Event) -> None:
    async with lanes.slot(ticket):
        started.append(ticket.order)
        await release.wait()


async def settle() -> None:
    """Let every task created so far run until it waits (a few loop turns)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_callers_go_before_background_work_queued_earlier() -> None:
    lanes = Lanes(1)
    release = asyncio.Event()
    started: list[int] = []
    first = lanes.ticket(background=True)
    tasks = [asyncio.create_task(hold(lanes, first, started, release))]
    await asyncio.sleep(0)  # the first takes the slot
    queued = [lanes.ticket(background=True) for _ in range(3)] + [lanes.ticket(background=False)]
    tasks += [asyncio.create_task(hold(lanes, t, started, release)) for t in queued]
    await settle()
    assert lanes.waiting == 4
    release.set()
    await asyncio.gather(*tasks)
    assert started == [first.order, queued[-1].order, *(t.order for t in queued[:3])]


async def test_a_cancelled_waiter_neither_breaks_nor_keeps_the_slot() -> None:
    """Cancelled while waiting (the service stops): the release that follows must hand the
    slot to the next live waiter, not fail on the cancelled one's future."""
    lanes = Lanes(1)
    release = asyncio.Event()
    started: list[int] = []
    holder = asyncio.create_task(hold(lanes, lanes.ticket(background=False), started, release))
    await asyncio.sleep(0)
    doomed_ticket, live_ticket = lanes.ticket(background=False), lanes.ticket(background=True)
    doomed = asyncio.create_task(hold(lanes, doomed_ticket, started, release))
    live = asyncio.create_task(hold(lanes, live_ticket, started, release))
    await settle()
    assert lanes.waiting == 2
    release.set()  # the holder releases first...
    doomed.cancel()  # ...while the doomed waiter's future is cancelled but not yet seen
    async with asyncio.timeout(5):
        await holder
        await live
    assert doomed.cancelled()
    assert live_ticket.order in started and doomed_ticket.order not in started
    async with asyncio.timeout(5), lanes.slot(lanes.ticket(background=False)):
        pass  # the slot came back
