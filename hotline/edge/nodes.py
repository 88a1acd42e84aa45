"""The media nodes: each an Asterisk from the one root, with its own settings derived from the
hotline's and its ``[edge]`` entry (address, ports, name), its own state directory
(``<state_dir>/nodes/<name>``) and its own directories inside the root
(hotline.asterisk.layout.NODES_DIR)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hotline.asterisk import process
from hotline.asterisk.errors import AsteriskError
from hotline.asterisk.layout import chroot_installation, node_installation
from hotline.edge.settings import MediaNode
from hotline.settings import Settings


class UnknownNodeError(AsteriskError):
    """No media or queue node of that name in the [edge] settings."""


def node(settings: Settings, name: str) -> MediaNode:
    for candidate in settings.edge.nodes + settings.edge.queue_nodes:
        if candidate.name == name:
            return candidate
    known = ", ".join(n.name for n in settings.edge.nodes + settings.edge.queue_nodes)
    raise UnknownNodeError(f"no media node {name!r} in the edge settings (nodes: {known})")


def node_settings(settings: Settings, media: MediaNode) -> Settings:
    """The settings one media node runs with: the hotline's, with the node's name, address
    and ports, the edge as its only PSTN gateway, and its own state directory (the prompt
    cache and overrides stay the hotline's; ``[edge] nodes_state_dir`` when another process
    started the nodes)."""
    edge = settings.edge
    queue_node = media in edge.queue_nodes
    asterisk = settings.asterisk.model_copy(update={
        "node_name": media.name, "bind_host": media.address, "sip_port": media.sip_port,
        "rtp_start": media.rtp_start, "rtp_end": media.rtp_end,
        "gateway_addresses": [edge.address],
        # The city-wide queue: media nodes hand callers to the queue node (then the
        # standby), which reads the handoff headers from the media nodes' addresses only.
        "queue_handoff": [] if queue_node else [f"{q.address}:{q.sip_port}"
                                                for q in edge.queue_nodes],
        "handoff_sources": [m.address for m in edge.nodes] if queue_node else [],
        # Agents' phones reach a queue node through the edge (and may still come directly).
        "sip_permit": [*settings.asterisk.sip_permit, edge.address] if queue_node
        else settings.asterisk.sip_permit,
        # Each node's own channel event record (in its directories), never one shared file.
        "call_record_file": None,
    })
    ami = settings.ami.model_copy(update={"host": media.address, "port": media.ami_port})
    speech = settings.speech.model_copy(update={
        "prompt_cache_dir": settings.speech.prompt_cache_dir
        or settings.state_dir / "prompt-cache",
        "prompt_override_dir": settings.speech.prompt_override_dir
        or settings.state_dir / "prompts",
    })
    return settings.model_copy(update={
        "asterisk": asterisk, "ami": ami, "speech": speech,
        "state_dir": (edge.nodes_state_dir or settings.state_dir) / "nodes" / media.name,
    })


def ami_media_node(settings: Settings) -> MediaNode | None:
    """The media node of ``[edge] nodes`` this process's ``[ami]`` link is to, if any."""
    own = (settings.ami.host, settings.ami.port)
    return next((m for m in settings.edge.nodes if (m.address, m.ami_port) == own), None)


def linked_node_settings(settings: Settings) -> Settings:
    """The settings of the media node this process's ``[ami]`` link is to, when it is one of
    ``[edge] nodes`` and control links the nodes (for its Asterisk installation and channel
    event record); else this process's own (one box)."""
    media = ami_media_node(settings)
    if media is None or not settings.edge.control_links:
        return settings
    return node_settings(settings, media)


def up(settings: Settings, name: str, progress: process.Progress = print) -> Settings:
    """Start media node ``name``; return the settings it runs with."""
    mine = node_settings(settings, node(settings, name))
    process.up(mine, progress=progress)
    return mine


def down(settings: Settings, name: str) -> None:
    """Stop media node ``name``; the root's /proc is unmounted with the last node."""
    process.down(node_settings(settings, node(settings, name)))


def status(settings: Settings, name: str) -> dict[str, Any]:
    media = node(settings, name)
    report = process.status(node_settings(settings, media))
    return report | {"name": media.name, "sip": f"udp {media.address}:{media.sip_port}",
                     "ami": f"{media.address}:{media.ami_port}"}


def pid(settings: Settings, name: str) -> int | None:
    """The running node's Asterisk pid, or None."""
    return status(settings, name)["pid"]


def log_dir(settings: Settings, name: str) -> Path:
    """Where the node's Asterisk writes messages.log and queue_log, seen from this host."""
    mine = node_settings(settings, node(settings, name))
    inst = node_installation(chroot_installation(mine.asterisk.root_dir), name)
    return inst.host_path(inst.dirs.log)
