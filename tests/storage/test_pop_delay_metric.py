"""The desk hub tells /metrics each screen pop's delay: the agent's phone rang (the
AgentRinging event, stamped when AMI's AgentCalled arrived) to the pop sent to the desk."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from crm.agents.accounts import get_agent
from crm.demo_data import seed_demo
from crm.live.desk_hub import DeskHub
from crm.storage.db import SessionFactory
from crm.storage.models import utcnow
from crm.telephony.events import AgentRinging, CallEventBus, CallStarted
from hotline.metrics import ServiceMetrics


class DeskSocket:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def send_json(self, data: Any) -> None:
        self.messages.append(data)

    async def close(self) -> None:
        return None


async def test_each_pop_shown_is_timed_from_the_ring(sessions: SessionFactory,
                                                     db_url: str) -> None:
    await seed_demo(db_url)
    metrics = ServiceMetrics()
    hub = DeskHub(sessions, on_pop=metrics.observe_pop)
    bus = CallEventBus()
    bus.subscribe(hub.handle)
    hub.start()
    socket = DeskSocket()
    try:
        hub.sign_in(await get_agent(sessions, "agent1"))
        hub.attach("agent1", socket)
        await bus.publish(CallStarted("pop-1", "13800138000", "张三", "PJSIP/gw-00000001"))
        rang = utcnow() - timedelta(seconds=0.5)  # AgentCalled arrived half a second ago
        await bus.publish(AgentRinging("pop-1", "hotline", "PJSIP/2001", "2001", "王芳",
                                       channel="PJSIP/gw-00000001", at=rang))
        await hub.wait_for(lambda: any(m["type"] == "pop" for m in socket.messages), within=10)
    finally:
        await hub.close()
    registry = metrics.registry
    assert registry.get_sample_value("hotline_screen_pop_delay_seconds_count") == 1
    delay = registry.get_sample_value("hotline_screen_pop_delay_seconds_sum") or 0
    assert 0.5 <= delay < 60
