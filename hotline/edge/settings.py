"""The ``[edge]`` section: the SIP edge (Kamailio's dispatcher) and the media nodes behind it.

Composed into the whole settings by hotline.settings; imports only ivr.settings (for the
address type the Asterisk ACLs use). Nothing here is used unless the cluster is started
(``hotline edge up``): the single-box hotline (``make run``) runs one Asterisk as before.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, model_validator

from ivr.settings import SipNetwork

NODE_NAME = r"[a-z][a-z0-9-]{0,31}"
"""A media node's name: Asterisk's systemname (prefix of every Uniqueid), the HOTLINE_NODE
channel variable and the node's directory name, so kept to a safe alphabet."""


def _ipv4_address(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address, e.g. 127.0.0.2") from None


Address = Annotated[str, AfterValidator(_ipv4_address)]


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class MediaNode(_Section):
    """One Asterisk of the pool: its own address (SIP, RTP and AMI bind to it) and ports."""

    name: str = Field(pattern=f"^{NODE_NAME}$")
    address: Address
    sip_port: int = Field(5060, ge=1, le=65535)
    ami_port: int = Field(5038, ge=1, le=65535)
    rtp_start: int = Field(10000, ge=1024, le=65535)
    rtp_end: int = Field(10199, ge=1024, le=65535)

    @model_validator(mode="after")
    def _rtp_range(self) -> MediaNode:
        if self.rtp_end <= self.rtp_start:
            raise ValueError(f"node {self.name}: rtp_end must be greater than rtp_start")
        return self


def _default_nodes() -> list[MediaNode]:
    return [MediaNode(name="media-1", address="127.0.0.2"),
            MediaNode(name="media-2", address="127.0.0.3")]


def _default_queue_nodes() -> list[MediaNode]:
    """The city-wide queue of the default cluster: the queue node, then its standby, each
    on an address of its own (127.0.0.4-.10 and .11 are the plan's Redis, role processes and
    an example's extra worker: hotline/cluster/plan.py)."""
    return [MediaNode(name="queue-1", address="127.0.0.12"),
            MediaNode(name="queue-2", address="127.0.0.13")]


class EdgeSettings(_Section):
    address: Address = "127.0.0.1"
    """Where the edge listens for SIP (UDP): the address carriers and softphones call. The
    media nodes trust this address alone as the PSTN gateway."""
    port: int = Field(5060, ge=1, le=65535)
    sources: list[SipNetwork] = Field(default_factory=lambda: ["127.0.0.0/8"], min_length=1)
    """Networks the edge accepts SIP from (the carrier's gateways); the media nodes are
    always accepted. Anything else gets 403."""
    carrier: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")
    """Where calls out go, ``host:port`` (UDP): the carrier's gateway. A media node's call to
    a resident (a callback, a return visit: ``[callbacks] dial`` and ``[survey] dial``
    aimed at the edge, e.g. ``PJSIP/pstn-gateway/sip:{number}@<edge address>:<port>``)
    is relayed there, record-routed. Empty: a media node's call out is refused (503)."""
    nodes: list[MediaNode] = Field(default_factory=_default_nodes, min_length=1)
    probe_interval: int = Field(2, ge=1, le=60)
    """Seconds between SIP OPTIONS probes of every node (dispatcher ds_ping_interval)."""
    probe_threshold: int = Field(1, ge=1, le=10)
    """Failed probes in a row before a node is taken out (ds_probing_threshold)."""
    reply_timeout: float = Field(2.0, ge=0.5, le=30)
    """Seconds a node has to answer a probe, or to start answering an INVITE, before the
    edge counts it failed and tries the next node (tm fr_timer)."""
    children: int = Field(2, ge=1, le=32)
    """Kamailio worker processes for the UDP socket."""
    control_links: bool = False
    """True: the control (``hotline serve --role core``) holds one AMI link with events per
    node of ``nodes`` and ``queue_nodes`` (hotline.roles.node_links), besides its ``[ami]``
    link; False (one box): the ``[ami]`` link alone."""
    nodes_state_dir: Path | None = None
    """Where the nodes' own state directories are (``<dir>/nodes/<name>``: the Asterisk
    installation of each node and its channel event record, which control reads when it
    starts or takes over). Empty: this process's ``state_dir`` (the process that starts
    the nodes); ``hotline cluster up`` sets it for the role processes it starts."""
    queue_nodes: list[MediaNode] = Field(default_factory=_default_queue_nodes, max_length=2)
    """The city-wide queue (docs/cluster.md): the queue node, then its standby, each an
    Asterisk from the same root with app_queue and the agents' phones. Media nodes hand
    callers to them over SIP instead of queueing them themselves. By default queue-1 on
    127.0.0.12 and queue-2 on 127.0.0.13 (SIP 5060, AMI 5038), so the cluster that
    ``hotline cluster up`` starts lets a caller on any media node reach any signed-in agent.
    Empty (``queue_nodes = []``): each media node queues its own callers, and a caller on a
    node whose queue no desk signs in to waits until they hang up."""
    phone_port: int = Field(5070, ge=1, le=65535)
    """The edge's UDP port for agents' phones (used with ``queue_nodes``): their REGISTER and
    their own calls go to the queue node, or the standby when it is down. The carriers' port
    (``port``) takes no REGISTER, and nothing from a phone reaches a media node as a
    carrier's call."""
    phone_sources: list[SipNetwork] = Field(default_factory=lambda: ["127.0.0.0/8"],
                                            min_length=1)
    """Networks agents' phones may use ``phone_port`` from (the queue nodes always may)."""
    agent_expiry: int = Field(60, ge=10, le=3600)
    """Seconds an agent phone's registration at a queue node lasts (the most a queue node
    grants): the phone refreshes it through the edge within that time, and a refresh after
    the queue node died lands on the standby, so this bounds how long an agent cannot be
    rung after the queue node is lost. Used only with ``queue_nodes``."""

    @model_validator(mode="after")
    def _queue_nodes_beside_the_media_nodes(self) -> EdgeSettings:
        """The default queue nodes are this machine's loopback addresses: media nodes on
        other machines would hand every caller to an address that is no queue node's."""
        elsewhere = [n.address for n in self.nodes
                     if not ipaddress.IPv4Address(n.address).is_loopback]
        if elsewhere and "queue_nodes" not in self.model_fields_set:
            raise ValueError(
                f"edge.queue_nodes: the media nodes are on other machines ({', '.join(elsewhere)})"
                " but the queue nodes are the defaults on this one (127.0.0.12, 127.0.0.13): "
                "set queue_nodes to the queue node and its standby, or queue_nodes = [] "
                "(each media node queues its own callers)")
        return self

    @model_validator(mode="after")
    def _distinct_nodes(self) -> EdgeSettings:
        every = self.nodes + self.queue_nodes
        names = [node.name for node in every]
        if len(set(names)) != len(names):
            raise ValueError(f"edge.nodes, edge.queue_nodes: node names must differ ({names})")
        bound = [(node.address, node.sip_port) for node in every]
        bound += [(node.address, node.ami_port) for node in every]
        edge = [(self.address, self.port)]
        if self.queue_nodes:
            edge.append((self.address, self.phone_port))
        if any(e in bound for e in edge) or len(set(bound + edge)) != len(bound + edge):
            raise ValueError("edge.nodes: every node needs its own SIP and AMI address:port, "
                             "none the edge's")
        return self
