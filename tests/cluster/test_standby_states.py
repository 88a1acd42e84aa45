"""The standby queue node's member states are withheld from the bus while the queue node's
AMI link is logged in, and pass once it is not; its callers' events always pass (a narrow
unit test: the link's state is all that is read of it)."""

from __future__ import annotations

from dataclasses import dataclass

from crm.telephony.events import AgentStatusChanged, CallerQueued, CallEventBus, QueueSnapshot
from hotline.roles.queue_standby import StandbyStates


@dataclass
class Link:
    state: str


async def test_member_states_pass_only_while_the_queue_node_is_unlinked() -> None:
    bus = CallEventBus()
    seen: list[object] = []

    async def keep(event: object) -> None:
        seen.append(event)

    bus.subscribe(keep)
    primary = Link("logged_in")
    standby = StandbyStates(bus, primary)  # type: ignore[arg-type]  # only .state is read
    status = AgentStatusChanged("PJSIP/2001", "2001", "hotline", "unavailable")
    snapshot = QueueSnapshot("hotline")
    requeued = CallerQueued("5f0c7a3e-0000-4000-8000-000000000001", "hotline", 1)
    for event in (status, snapshot, requeued):
        await standby.publish(event)
    assert seen == [requeued] and standby.withheld == 2
    primary.state = "disconnected"
    await standby.publish(status)
    assert seen == [requeued, status]
