"""A media node's call out (a callback, a return visit) goes through the edge to the carrier
(``[edge] carrier``), record-routed, never to a media node: real Kamailio, two real
Asterisk media nodes, a SIPp UAS as the carrier's gateway answering the resident's number."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline.edge import nodes
from hotline.edge.config import EdgeFiles, render_config
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings
from hotline.tools.phones import ResidentPhone
from hotline.tools.sipp import LOCAL_IP, free_udp_port
from ivr.ami.client import AmiClient
from tests.cluster.edge_bed import calls_processed, running_cluster

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(90)]

NET = "127.0.27"
CARRIER_PORT = free_udp_port()


@pytest.fixture(scope="module")
def out_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with running_cluster(tmp_path_factory, edge=f"{NET}.1",
                         media={"node-a": f"{NET}.2", "node-b": f"{NET}.3"},
                         carrier=f"{LOCAL_IP}:{CARRIER_PORT}") as settings:
        yield settings


async def test_a_media_nodes_call_out_reaches_the_carrier_through_the_edge(
        out_bed: Settings) -> None:
    node = nodes.node_settings(out_bed, nodes.node(out_bed, "node-a"))
    before = {n.name: calls_processed(out_bed, n.name) for n in out_bed.edge.nodes}
    ami = AmiClient(node.ami, name="test-calls-out")
    await ami.start()
    try:
        await ami.wait_ready(10)
        async with ResidentPhone(out_bed, mode="answer", hold_ms=1500,
                                 port=CARRIER_PORT) as carrier:
            edge = f"{out_bed.edge.address}:{out_bed.edge.port}"
            reply = await ami.action(
                "Originate", timeout=15, Channel=f"PJSIP/pstn-gateway/sip:13800138000@{edge}",
                Application="Wait", Data="1", Async="true")
            assert reply.get("Response") == "Success", reply.headers
            await carrier.wait_event("answered", within=15)
            assert await carrier.wait_event("remote_bye", "local_bye", within=15)
    finally:
        await ami.close()
    # The call went out, not in: no media node took a new inbound call from the edge.
    after = {n.name: calls_processed(out_bed, n.name) for n in out_bed.edge.nodes}
    assert after["node-b"] == before["node-b"], (before, after)


def test_without_a_carrier_a_media_nodes_call_out_is_refused(tmp_path: Path) -> None:
    settings = asterisk_test_settings(tmp_path)
    config = render_config(settings, EdgeFiles.of(settings))
    refusal = config[config.index('if (is_in_subnet("$si", "127.0.0.2,127.0.0.3"))'):]
    assert '"503", "No carrier"' in refusal.split("}")[0]
    with_carrier = settings.model_copy(update={"edge": settings.edge.model_copy(
        update={"carrier": "127.0.0.9:5080"})})
    assert '$du = "sip:127.0.0.9:5080";' in render_config(
        with_carrier, EdgeFiles.of(with_carrier))
