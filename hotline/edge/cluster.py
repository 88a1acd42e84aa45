"""The SIP edge and its media nodes together, for a human (``hotline edge up|down|status``)
and for ``make run-cluster``: every node first (so the edge's first probes find them), then
Kamailio; down in the reverse order. Each step says where the part listens."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hotline.edge import kamailio, nodes
from hotline.settings import Settings

Progress = Callable[[str], None]


def up(settings: Settings, progress: Progress = print) -> None:
    """Start every media node of ``[edge] nodes`` and the edge in front of them."""
    quiet: Progress = lambda message: None  # noqa: E731
    for queue in settings.edge.queue_nodes:  # up first: media nodes hand callers to it
        mine = nodes.up(settings, queue.name, progress=quiet)
        progress(f"queue node {queue.name}: SIP udp {queue.address}:{queue.sip_port}, AMI "
                 f"{mine.ami.host}:{mine.ami.port}, logs {nodes.log_dir(settings, queue.name)}")
    for media in settings.edge.nodes:
        mine = nodes.up(settings, media.name, progress=quiet)
        progress(f"media node {media.name}: SIP udp {media.address}:{media.sip_port}, AMI "
                 f"{mine.ami.host}:{mine.ami.port}, RTP {media.rtp_start}-{media.rtp_end}, "
                 f"logs {nodes.log_dir(settings, media.name)}")
    pid = kamailio.up(settings)
    edge = settings.edge
    progress(f"SIP edge (Kamailio pid {pid}): udp {edge.address}:{edge.port}, probing every "
             f"{edge.probe_interval} s; log {kamailio.EdgeFiles.of(settings).log_file}")
    if edge.queue_nodes:
        progress(f"agents' phones register at udp {edge.address}:{edge.phone_port} (sent to "
                 f"{' then '.join(q.name for q in edge.queue_nodes)}; expiry "
                 f"{edge.agent_expiry} s)")


def down(settings: Settings, progress: Progress = print) -> None:
    """Stop the edge, then every media node (the last one unmounts the root's /proc)."""
    kamailio.down(settings)
    progress("SIP edge stopped")
    for media in reversed(settings.edge.nodes + settings.edge.queue_nodes):
        nodes.down(settings, media.name)
        progress(f"node {media.name} stopped")


def status(settings: Settings) -> dict[str, Any]:
    return {"edge": kamailio.status(settings),
            "nodes": [nodes.status(settings, media.name)
                      for media in settings.edge.nodes + settings.edge.queue_nodes]}


def command(settings: Settings, action: str, node: str | None = None) -> None:
    """``hotline edge up|down|status`` (the edge and every node), or with ``node``: that
    media node alone (``hotline edge up media-2``)."""
    if node is None and action == "up":
        up(settings)
    elif node is None and action == "down":
        down(settings)
    elif node is None:
        print(json.dumps(status(settings), indent=2, default=str))
    elif action == "up":
        mine = nodes.up(settings, node, progress=lambda message: None)
        print(f"media node {node}: SIP udp {mine.asterisk.bind_host}:{mine.asterisk.sip_port}, "
              f"AMI {mine.ami.host}:{mine.ami.port}")
    elif action == "down":
        nodes.down(settings, node)
        print(f"media node {node} stopped")
    else:
        print(json.dumps(nodes.status(settings, node), indent=2, default=str))
