"""Issue 16, agents' phones through the SIP edge: two real SIPp agent phones register at
Kamailio, which sends each REGISTER (with its Path) to the queue node; a real caller through
the edge is handed to the queue node, which rings a phone back through the edge. Then the
queue node's Asterisk is killed (-9): each phone's next refresh (at half the expiry the
queue node granted, as phones do) goes through the edge to the standby, one refresh falling
at the kill (it meets the dead node: the edge fails it over), the other a whole interval
later; a new caller is answered there by one of the same agents. Every wait is for an event
(AMI ContactStatus, SIPp's output), bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from crm.storage.db import SessionFactory
from crm.telephony.events import AgentAnswered, CallStarted
from hotline.asterisk.render import render_config
from hotline.edge import config, kamailio, nodes
from hotline.edge.settings import EdgeSettings, MediaNode
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings
from hotline.tools.phones import AgentPhone, at_phones_port
from hotline.tools.sipp import CallResult, SippError, place_call
from ivr.ami.client import AmiEvent
from ivr.asterisk.queue_control import QueueControl
from tests.cluster.edge_bed import at_edge, node_cli, wait_for
from tests.cluster.queue_bed import (
    QUEUE,
    QUEUE_NODES,
    STANDBY,
    Control,
    running_control,
    running_queue_cluster,
)

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(150)]

EARLY, LATE = "2003", "2004"
"""Two agents' phones: EARLY's refresh timer fires at the kill (the REGISTER meets the dead
queue node: the edge's failover), LATE had just refreshed (it waits a whole interval)."""
AGENT_EXPIRY = 10
"""Seconds a queue node grants an agent's registration here (60 by default): the phones
refresh every 5 s, so the test stays short."""
CALL_S = 30.0


@pytest.fixture(scope="module")
def agent_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Kamailio, two media nodes, queue-1 and its standby queue-2 (127.0.17.x)."""
    with running_queue_cluster(tmp_path_factory, agent_expiry=AGENT_EXPIRY) as settings:
        yield settings


@pytest.fixture
async def control(agent_cluster: Settings, pg_sessions: SessionFactory,
                  tmp_path: Path) -> AsyncIterator[Control]:
    async with running_control(agent_cluster, pg_sessions, tmp_path / "journal") as running:
        yield running


async def caller(settings: Settings, number: str) -> CallResult:
    """A caller through the edge who stays until the hotline hangs up (the agent's talk)."""
    return await place_call(at_edge(settings), caller_number=number, wait_for_bye=True,
                            hold_ms=int(CALL_S * 1000), max_seconds=CALL_S + 5)


def edge_log(settings: Settings) -> str:
    return kamailio.EdgeFiles.of(settings).log_file.read_text(errors="replace")


def rung_through_edge(settings: Settings, node: str) -> int:
    """Calls from queue node ``node`` to a phone that the edge relayed."""
    return edge_log(settings).count(f"from queue node {QUEUE_NODES[node]} to phone")


def answered(control: Control) -> list[str]:
    return [e.call_id for e in control.events
            if isinstance(e, AgentAnswered) and e.extension in (EARLY, LATE)]


def mirrored(settings: Settings, extension: str) -> Callable[[], bool]:
    return lambda: f"PJSIP/{extension}" in node_cli(settings, STANDBY, "queue show")


class RefreshTimer:
    """A phone's refresh timer: re-register at half the granted expiry, as phones do; a
    refresh that fails is tried again at the next tick (the registration still holds)."""

    def __init__(self, phone: AgentPhone) -> None:
        self.phone = phone
        self.failed: list[str] = []
        self.refreshed = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.phone.granted / 2))
            await self.now()

    async def now(self) -> None:
        try:
            await self.phone.refresh()
        except SippError as error:
            self.failed.append(str(error))
        else:
            self.refreshed.set()


async def test_agents_phones_registered_through_the_edge_follow_the_queue_to_its_standby(
        agent_cluster: Settings, control: Control, capsys: pytest.CaptureFixture[str]) -> None:
    settings = agent_cluster
    registered = {(node, ext): asyncio.Event() for node in (QUEUE, STANDBY)
                  for ext in (EARLY, LATE)}

    def watch(node: str) -> None:
        def on_contact(event: AmiEvent) -> None:
            key = (node, event.get("AOR") or "")
            if key in registered and event.get("ContactStatus") == "Reachable":
                registered[key].set()  # registered, and the node's OPTIONS pass the edge
        control.links[node].ami.subscribe("ContactStatus", on_contact)

    async def on(node: str, extension: str, within: float) -> float:
        started = time.monotonic()
        await asyncio.wait_for(registered[node, extension].wait(), within)
        return time.monotonic() - started

    for node in (QUEUE, STANDBY):
        watch(node)
    calls: list[asyncio.Task[CallResult]] = []
    timers: dict[str, RefreshTimer] = {}
    with pytest.raises(SippError):  # the carriers' port takes no REGISTER (405)
        async with AgentPhone(at_edge(settings), EARLY, register_timeout=5):
            pass
    async with contextlib.AsyncExitStack() as stack:
        for ext in (EARLY, LATE):
            phone = await stack.enter_async_context(
                AgentPhone(at_phones_port(settings), ext, hold_ms=700))
            timers[ext] = RefreshTimer(phone)
            stack.push_async_callback(cancel, timers[ext].task)
        stack.push_async_callback(lambda: cancel(*calls))
        queue = QueueControl(control.links[QUEUE].ami, settings.asterisk.queue_name)
        for ext in (EARLY, LATE):
            await on(QUEUE, ext, 10)
            assert 0 < timers[ext].phone.granted <= AGENT_EXPIRY
            await queue.join(f"PJSIP/{ext}", f"agent-{ext}")
            await wait_for(mirrored(settings, ext), 10, f"{ext}'s membership on {STANDBY}")
        assert not any(registered[STANDBY, ext].is_set() for ext in (EARLY, LATE))

        first = await caller(settings, "13950000001")
        assert first.answered and first.hung_up_by == "remote", first.stderr
        assert len(answered(control)) == 1 and rung_through_edge(settings, QUEUE) >= 1
        # An agent's own call through the edge: EARLY dials LATE on the queue node.
        rung = rung_through_edge(settings, QUEUE)
        own = await place_call(at_phones_port(settings), caller_number=EARLY, dial=LATE,
                               auth_password=timers[EARLY].phone.password, hold_ms=300)
        assert own.answered and own.ok, own.stderr
        assert f"from phone {EARLY} to queue node" in edge_log(settings)
        assert rung_through_edge(settings, QUEUE) == rung + 1

        timers[LATE].refreshed.clear()
        await asyncio.wait_for(timers[LATE].refreshed.wait(), AGENT_EXPIRY)
        pid = nodes.pid(settings, QUEUE)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        await timers[EARLY].now()  # EARLY's timer fires at the kill
        await on(STANDBY, EARLY, 5)
        early_after = time.monotonic() - killed
        await on(STANDBY, LATE, AGENT_EXPIRY + 5)
        late_after = time.monotonic() - killed
        calls.append(asyncio.create_task(caller(settings, "13950000002")))
        second = await asyncio.wait_for(calls[0], CALL_S + 10)
        answered_after = time.monotonic() - killed
    assert second.answered and second.hung_up_by == "remote", second.stderr
    assert len(answered(control)) == 2, answered(control)
    assert rung_through_edge(settings, STANDBY) >= 1
    assert f"REGISTER of {EARLY} fails over to queue node" in edge_log(settings)
    assert "refused" not in edge_log(settings)  # nothing looped back to the edge
    assert not timers[EARLY].failed and not timers[LATE].failed  # every refresh landed
    call_ids = {e.call_id for e in control.events if isinstance(e, CallStarted)}
    assert sorted(answered(control)) == sorted(call_ids)
    with capsys.disabled():
        print(f"\n{QUEUE} killed (agents registered through the edge, granted "
              f"{AGENT_EXPIRY} s, refreshing every {AGENT_EXPIRY // 2} s): a refresh made at "
              f"the kill was registered on {STANDBY} after {early_after:.1f} s (the edge's "
              f"failover); a phone that had just refreshed after {late_after:.1f} s; a new "
              f"caller answered there {answered_after:.1f} s after the kill")


async def cancel(*tasks: asyncio.Task[object]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_only_a_queue_node_takes_registrations_by_the_edge_path(tmp_path: Path) -> None:
    """No Asterisk here: what the edge and the nodes render for agents' phones."""
    one_box = asterisk_test_settings(tmp_path)
    edge = one_box.edge.model_copy(update={
        "nodes": [MediaNode(name="media-a", address="127.0.18.2")],
        "queue_nodes": [MediaNode(name="queue-1", address="127.0.18.4"),
                        MediaNode(name="queue-2", address="127.0.18.5")]})
    settings = one_box.model_copy(update={"edge": edge})
    queue_node = render_config(nodes.node_settings(settings, edge.queue_nodes[0]))
    aor = queue_node["pjsip.conf"].split("[2001](aor-phone)")[1].split("\n[")[0]
    assert "support_path = yes" in aor and "maximum_expiration = 60" in aor
    assert "load = res_pjsip_path.so" in queue_node["modules.conf"]
    for elsewhere in (render_config(nodes.node_settings(settings, edge.nodes[0])),
                      render_config(one_box)):
        assert "support_path" not in elsewhere["pjsip.conf"]
        assert "res_pjsip_path" not in elsewhere["modules.conf"]
    # The queue node first (highest priority), then its standby.
    assert config.render_dispatcher_list(edge).splitlines()[-2:] == [
        "2 sip:127.0.18.4:5060 0 2 duid=queue-1", "2 sip:127.0.18.5:5060 0 1 duid=queue-2"]
    files = config.EdgeFiles(tmp_path / "edge")
    edge_config = config.render_config(settings, files)
    assert 'ds_select_dst("2", "8")' in edge_config
    assert f"listen=udp:{edge.address}:{edge.phone_port}" in edge_config
    no_queue_node = one_box.model_copy(update={
        "edge": one_box.edge.model_copy(update={"queue_nodes": []})})
    without_queue = config.render_config(no_queue_node, files)
    assert "path.so" not in without_queue and f":{edge.phone_port}" not in without_queue


def test_the_phones_port_must_be_a_port_of_its_own() -> None:
    queue = [MediaNode(name="queue-1", address="127.0.18.4")]
    with pytest.raises(ValueError, match="its own SIP"):
        EdgeSettings(port=5060, phone_port=5060, queue_nodes=queue)
    with pytest.raises(ValueError, match="its own SIP"):
        EdgeSettings(address="127.0.18.4", phone_port=5060, queue_nodes=queue)
    with pytest.raises(ValueError, match="its own SIP"):  # the default has queue nodes
        EdgeSettings(port=5060, phone_port=5060)
    assert EdgeSettings(port=5060, phone_port=5060,  # no queue node: the port is unused
                        queue_nodes=[]).phone_port == 5060
