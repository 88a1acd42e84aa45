"""Issue 16, agents' phones through the SIP edge: a real SIPp agent phone registers at
Kamailio, which sends the REGISTER (with its Path) to the queue node; a real caller through
the edge is handed to the queue node, which rings the phone back through the edge. Then the
queue node's Asterisk is killed (-9): the phone's next refresh (at half the expiry the
queue node granted, as phones do) goes through the edge to the standby, where a new caller
is answered by the same agent. Every wait is for an event (AMI ContactStatus, SIPp's
output, the edge's log), bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from crm.storage.db import SessionFactory
from crm.telephony.events import AgentAnswered, CallStarted
from hotline.asterisk.render import render_config
from hotline.edge import config, kamailio, nodes
from hotline.edge.settings import MediaNode
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings
from hotline.tools.phones import AgentPhone
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

EXTENSION = "2003"
AGENT_EXPIRY = 10
"""Seconds a queue node grants an agent's registration here (60 by default): the phone
refreshes every 5 s, so the test stays short."""
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
            if isinstance(e, AgentAnswered) and e.extension == EXTENSION]


async def keep_registered(phone: AgentPhone, failed: list[str]) -> None:
    """The phone's refresh timer: re-register at half the granted expiry, as phones do; a
    refresh that fails is tried again at the next tick (the registration still holds)."""
    while True:
        await asyncio.sleep(max(1.0, phone.granted / 2))
        try:
            await phone.refresh()
        except SippError as error:
            failed.append(str(error))


async def test_an_agent_phone_registered_through_the_edge_follows_the_queue_to_its_standby(
        agent_cluster: Settings, control: Control, capsys: pytest.CaptureFixture[str]) -> None:
    settings = agent_cluster
    registered = {QUEUE: asyncio.Event(), STANDBY: asyncio.Event()}

    def watch(node: str) -> None:
        def on_contact(event: AmiEvent) -> None:
            if event.get("AOR") == EXTENSION and event.get("ContactStatus") == "Reachable":
                registered[node].set()
        control.links[node].ami.subscribe("ContactStatus", on_contact)

    for node in registered:
        watch(node)
    failed: list[str] = []
    calls: list[asyncio.Task[CallResult]] = []
    async with AgentPhone(at_edge(settings), EXTENSION, hold_ms=700) as phone:
        refresher = asyncio.create_task(keep_registered(phone, failed))
        try:
            await asyncio.wait_for(registered[QUEUE].wait(), 10)
            assert 0 < phone.granted <= AGENT_EXPIRY
            assert not registered[STANDBY].is_set()
            await QueueControl(control.links[QUEUE].ami, settings.asterisk.queue_name).join(
                f"PJSIP/{EXTENSION}", "agent3")
            await wait_for(lambda: f"PJSIP/{EXTENSION}" in node_cli(settings, STANDBY,
                                                                  "queue show"),
                           10, f"the agent's membership mirrored on {STANDBY}")

            first = await caller(settings, "13950000001")
            assert first.answered and first.hung_up_by == "remote", first.stderr
            assert len(answered(control)) == 1 and rung_through_edge(settings, QUEUE) >= 1

            pid = nodes.pid(settings, QUEUE)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.wait_for(registered[STANDBY].wait(), 2 * AGENT_EXPIRY + 10)
            moved_after = time.monotonic() - killed
            calls.append(asyncio.create_task(caller(settings, "13950000002")))
            second = await asyncio.wait_for(calls[0], CALL_S + 10)
            answered_after = time.monotonic() - killed
        finally:
            refresher.cancel()
            for call in calls:
                call.cancel()
            await asyncio.gather(refresher, *calls, return_exceptions=True)
    assert second.answered and second.hung_up_by == "remote", second.stderr
    assert len(answered(control)) == 2, answered(control)
    assert rung_through_edge(settings, STANDBY) >= 1
    assert not failed, failed  # the edge sent every refresh to a live node
    call_ids = {e.call_id for e in control.events if isinstance(e, CallStarted)}
    assert sorted(answered(control)) == sorted(call_ids)
    with capsys.disabled():
        print(f"\n{EXTENSION} registered through the edge (granted {AGENT_EXPIRY} s, refresh "
              f"every {AGENT_EXPIRY // 2} s); {QUEUE} killed: registered on {STANDBY} after "
              f"{moved_after:.1f} s, a new caller answered there {answered_after:.1f} s "
              "after the kill")


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
    assert 'ds_select_dst("2", "8")' in config.render_config(settings, files)
    assert "path.so" not in config.render_config(one_box, files)
