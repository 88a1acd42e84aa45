"""Handing callers back from the standby queue node (hotline.roles.queue_return), narrow
unit tests of its bookkeeping: a call handed back at most TIMES times, each after a growing
wait (with a check set for then), and the standby's abandon of a handed-back caller
withheld once. The hand-back itself runs against real Asterisks in test_city_queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from crm.telephony.events import CallerAbandoned, CallEventBus
from hotline.roles.queue_return import TIMES, HandBack
from hotline.roles.queue_standby import StandbyStates

CALL = "5f0c7a3e-0000-4000-8000-000000000001"


class Link:
    """What HandBack's constructor and StandbyStates read of an AMI link."""

    state = "logged_in"

    def subscribe(self, pattern: str, handler: Any) -> Callable[[], None]:
        return lambda: None

    def on_ready(self, handler: Any) -> Callable[[], None]:
        return lambda: None


async def test_a_call_is_handed_back_at_most_times_each_after_a_growing_wait() -> None:
    hand_back = HandBack(Link(), Link(), ("hotline",))  # type: ignore[arg-type]
    try:
        assert hand_back.wait_before(CALL, 100.0) == 0.0
        waits = []
        for times in range(1, TIMES):
            hand_back._times[CALL] = (times, 100.0)  # handed back `times` times, last at 100
            waits.append(hand_back.wait_before(CALL, 100.5))
        assert waits == [2 ** n - 0.5 for n in range(TIMES - 1)], waits
        hand_back._times[CALL] = (TIMES, 100.0)
        assert hand_back.wait_before(CALL, 10_000.0) is None  # no more
        assert hand_back.wait_before("another call", 100.5) == 0.0  # each call for itself

        # Too soon: not now, and a check is set for when it is due.
        hand_back._times[CALL] = (2, asyncio.get_running_loop().time())
        assert not hand_back._due(CALL)
        assert hand_back._again is not None
        assert 1.5 < hand_back._again.when() - asyncio.get_running_loop().time() <= 2.0
        assert hand_back._due("another call") and hand_back._times["another call"][0] == 1
    finally:
        hand_back.close()


async def test_the_standby_abandon_of_a_caller_handed_back_is_withheld_once() -> None:
    bus = CallEventBus()
    seen: list[object] = []

    async def keep(event: object) -> None:
        seen.append(event)

    bus.subscribe(keep)
    primary = Link()
    hand_back = HandBack(primary, Link(), ("hotline",))  # type: ignore[arg-type]
    standby = StandbyStates(bus, primary, hand_back.withholds_abandon)  # type: ignore[arg-type]
    hand_back.handed_back_ids.add(CALL)
    abandon = CallerAbandoned(CALL, "hotline", 1, 1, 3, node="queue-2")
    await standby.publish(abandon)
    assert seen == [] and standby.withheld == 1
    await standby.publish(abandon)  # a later abandon of that call is one
    assert seen == [abandon]
    hand_back.close()
