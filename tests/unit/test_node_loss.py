"""hotline.roles.node_loss in isolation (the real node killed -9 is
tests/cluster/test_cluster_faults.py): a link that stays down ends the node's open calls
once, as lost; a link back within the grace ends nothing; a node never linked is not
declared lost."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from crm.telephony.events import CallEnded, CallEventBus
from hotline.roles.node_loss import LOST_ROUTE, NodeLossWatch, lost_cause

GRACE_S = 0.3


@dataclass
class FakeAmi:
    state: str = "logged_in"
    logins: int = 1
    last_error: str | None = None


@dataclass
class FakeTracker:
    active_calls: dict[str, object] = field(default_factory=dict)


async def watched(ami: FakeAmi, tracker: FakeTracker
                  ) -> tuple[NodeLossWatch, list[CallEnded]]:
    bus = CallEventBus()
    ended: list[CallEnded] = []

    async def keep(event: Any) -> None:
        if isinstance(event, CallEnded):
            ended.append(event)

    bus.subscribe(keep)
    watch = NodeLossWatch("media-a", ami, tracker, bus, grace_s=GRACE_S)  # type: ignore[arg-type]
    watch.start()
    return watch, ended


async def test_a_node_whose_link_stays_down_has_its_calls_ended_as_lost_once() -> None:
    ami, tracker = FakeAmi(), FakeTracker({"c1": object(), "c2": object()})
    watch, ended = await watched(ami, tracker)
    try:
        ami.state, ami.last_error = "disconnected", "ConnectionRefusedError"
        async with asyncio.timeout(5):
            await watch.lost.wait()
        assert {e.call_id for e in ended} == {"c1", "c2"}
        assert all((e.route, e.cause, e.party) == (LOST_ROUTE, lost_cause("media-a"), "system")
                   for e in ended)
        assert tracker.active_calls == {}
        tracker.active_calls["c3"] = object()  # not the dead node's: a later one, if at all
        await asyncio.sleep(GRACE_S * 3)  # a bound to show nothing more comes, not a sync
        assert len(ended) == 2 and watch.losses == 1
    finally:
        await watch.close()


@pytest.mark.parametrize("ami", [FakeAmi(), FakeAmi(state="disconnected", logins=0)],
                         ids=["blip", "never-linked"])
async def test_a_blip_or_a_node_never_linked_ends_nothing(ami: FakeAmi) -> None:
    tracker = FakeTracker({"c1": object()})
    watch, ended = await watched(ami, tracker)
    try:
        if ami.logins:
            ami.state = "disconnected"
            await asyncio.sleep(GRACE_S / 3)
            ami.state = "logged_in"
        await asyncio.sleep(GRACE_S * 3)
        assert ended == [] and watch.losses == 0 and "c1" in tracker.active_calls
    finally:
        await watch.close()
