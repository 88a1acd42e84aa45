"""What the city-wide queue renders (no Asterisk runs here): one box queues its callers
itself as before; a media node hands them to the queue node, then the standby; the queue
node reads the handoff headers from the media nodes' addresses only."""

from __future__ import annotations

import re
from pathlib import Path

from hotline.asterisk.render import render_config
from hotline.edge import nodes
from hotline.edge.settings import MediaNode
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings


def cluster(tmp_path: Path) -> Settings:
    base = asterisk_test_settings(tmp_path)
    edge = base.edge.model_copy(update={
        "nodes": [MediaNode(name="media-a", address="127.0.18.2"),
                  MediaNode(name="media-b", address="127.0.18.3")],
        "queue_nodes": [MediaNode(name="queue-1", address="127.0.18.4"),
                        MediaNode(name="queue-2", address="127.0.18.5")]})
    return base.model_copy(update={"edge": edge})


def inbound(config: dict[str, str]) -> str:
    return config["hotline.conf"].split("[hotline-inbound]")[1].split("\n[")[0]


def test_one_box_queues_its_own_callers(tmp_path: Path) -> None:
    config = render_config(asterisk_test_settings(tmp_path))
    assert "Queue(${HOTLINE_QUEUE}" in inbound(config)
    assert "hotline-handoff" not in config["hotline.conf"]
    assert "queue-node-" not in config["pjsip.conf"]
    assert "media-nodes" not in config["pjsip.conf"]


def test_a_media_node_hands_callers_to_the_queue_node_then_the_standby(
        tmp_path: Path) -> None:
    settings = cluster(tmp_path)
    config = render_config(nodes.node_settings(settings, settings.edge.nodes[0]))
    dials = re.findall(r"Dial\(PJSIP/12345@(queue-node-\d),5,gb\(hotline-handoff-headers",
                       inbound(config))
    assert dials == ["queue-node-1", "queue-node-2"]
    assert "Queue(${HOTLINE_QUEUE}" not in inbound(config)
    assert "contact = sip:127.0.18.4:5060" in config["pjsip.conf"]
    assert "contact = sip:127.0.18.5:5060" in config["pjsip.conf"]
    assert "[media-nodes]" not in config["pjsip.conf"]


def test_the_queue_node_trusts_the_media_nodes_addresses_only(tmp_path: Path) -> None:
    settings = cluster(tmp_path)
    config = render_config(nodes.node_settings(settings, settings.edge.queue_nodes[0]))
    identify = config["pjsip.conf"].split("[media-nodes-identify]")[1].split("\n[")[0]
    assert re.findall(r"match = (\S+)", identify) == ["127.0.18.2", "127.0.18.3"]
    acl = config["acl.conf"].split("[hotline-media-nodes]")[1].split("\n[")[0]
    assert re.findall(r"permit = (\S+)", acl) == ["127.0.18.2", "127.0.18.3"]
    assert "[hotline-handoff]" in config["hotline.conf"]
    assert "Queue(${HOTLINE_QUEUE}" in inbound(config)  # its own dialplan is one box's
    assert "queue-node-" not in config["pjsip.conf"]
