"""Control of a cluster: one AMI link with events per Asterisk node (``[edge] nodes`` and
``queue_nodes``), all publishing on the one bus.

A media node's link runs a call tracker (the calls start and end there: HotlineCallStart,
HotlineCallEnd); a queue node's link runs a queue tracker (callers handed over with their
CALL_ID wait and meet agents there). A queue node gets no call tracker: its handoff legs
carry CALL_ID but are not calls of their own, and its resynchronisation would open them
again. CALL_ID is a UUID made on the media node, so it is unique across nodes; the node a
call is on is in its HOTLINE_NODE channel variable and its Uniqueid's prefix.

Without a queue node (``[edge] queue_nodes`` empty) every media node queues its callers
itself, so a media node's link runs a queue tracker too, for the callers' events only
(queued, agent rung, answered, ended: the consultation's steps, the desk's pop, the
wallboard's waiting count). Members' states and queue snapshots stay with control's
``[ami]`` link's tracker: the nodes' queues share one name, and a second node's snapshot
would replace the first's waiting callers on the wallboard.

A node whose AMI address is the ``[ami]`` link's is skipped: control's own link already
tracks it (so a one-box setting never gets a second tracker).

An IVR worker (``--role ivr``) with ``control_links`` holds an events-off link per media
node too (:func:`start_worker_links`): the channel variables it sets (the route, the queue)
must reach the node the call is on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from crm.consultations.recorder import OpenCall
from crm.telephony.events import EventBus
from hotline.edge.nodes import ami_media_node, node_settings
from hotline.edge.settings import MediaNode
from hotline.reconciliation import call_record_path
from hotline.roles.node_loss import NodeLossWatch
from hotline.roles.queue_return import HandBack
from hotline.roles.queue_standby import MembershipMirror, StandbyStates
from hotline.settings import Settings, hotline_queues
from ivr.ami.client import AmiClient
from ivr.asterisk.call_records import CallRecordReader
from ivr.asterisk.call_tracker import ActiveCall, CallTracker
from ivr.asterisk.queue_announcements import QueueAnnouncements
from ivr.asterisk.queue_tracker import QueueTracker

log = logging.getLogger(__name__)

NodeKind = Literal["media", "queue"]


@dataclass
class NodeLink:
    name: str
    kind: NodeKind
    ami: AmiClient
    calls: CallTracker | None
    """The media node's call tracker (None on a queue node)."""
    queue: QueueTracker | None
    """The queue node's queue tracker; a media node's (callers' events only) when the
    cluster has no queue node; else None."""
    loss: NodeLossWatch | None = None
    """A media node's watch: its open calls are ended as lost once the node is (node_loss)."""


def cluster_nodes(settings: Settings) -> list[tuple[MediaNode, NodeKind]]:
    """Every node control links to: the media nodes, then the queue node and its standby;
    none unless ``[edge] control_links``."""
    if not settings.edge.control_links:
        return []
    return ([(m, "media") for m in settings.edge.nodes]
            + [(q, "queue") for q in settings.edge.queue_nodes])


def node_ami(settings: Settings, media: MediaNode) -> AmiClient:
    return AmiClient(node_settings(settings, media).ami, name=f"hotline-control-{media.name}")


def link_node(settings: Settings, media: MediaNode, kind: NodeKind, bus: EventBus,
              ami: AmiClient | None = None) -> NodeLink:
    """The AMI link of one node with its tracker subscribed (not started)."""
    ami = ami or node_ami(settings, media)
    if kind == "media":
        records = CallRecordReader(call_record_path(node_settings(settings, media)))
        own_queue = (None if settings.edge.queue_nodes else
                     QueueTracker(ami, bus, queues=hotline_queues(settings), members=False))
        return NodeLink(media.name, kind, ami, CallTracker(ami, bus, records=records),
                        own_queue)
    return NodeLink(media.name, kind, ami, None,
                    QueueTracker(ami, bus, queues=hotline_queues(settings)))


def linked_media(settings: Settings) -> list[MediaNode]:
    """The media nodes control links besides its ``[ami]`` link's."""
    own = (settings.ami.host, settings.ami.port)
    return [m for m, kind in cluster_nodes(settings)
            if kind == "media" and (m.address, m.ami_port) != own]


def queue_node_linked(settings: Settings) -> bool:
    """Whether control links a queue node besides its ``[ami]`` link: that link's queue
    tracker reports the members and the queue snapshots, so the ``[ami]`` link's (a media
    node's, whose queue nobody signs in to) reports the callers' events only; its empty
    snapshot would wipe the wallboard's members and waiting callers."""
    own = (settings.ami.host, settings.ami.port)
    return any(kind == "queue" and (node.address, node.ami_port) != own
               for node, kind in cluster_nodes(settings))


def own_node_name(settings: Settings) -> str:
    """The name of the media node control's ``[ami]`` link is to (else the Asterisk's)."""
    media = ami_media_node(settings)
    return media.name if media is not None else settings.asterisk.node_name


async def start_node_links(stack: contextlib.AsyncExitStack, settings: Settings,
                           bus: EventBus, *,
                           adopt: Mapping[str, Sequence[OpenCall]] | None = None
                           ) -> list[NodeLink]:
    """Link every cluster node (connecting in the background: a node that is down is linked
    when it comes up); closed when ``stack`` exits. With a standby queue node, the standby
    is kept ready (hotline.roles.queue_standby). ``adopt``: calls left open that are live
    on a media node, by node name, for its tracker (hotline.roles.left_open)."""
    links: list[NodeLink] = []
    own = (settings.ami.host, settings.ami.port)
    queue_amis = {q.name: node_ami(settings, q) for q in settings.edge.queue_nodes}
    standby_bus = bus
    if settings.edge.control_links and len(queue_amis) == 2:
        primary, standby = queue_amis.values()
        mirror = MembershipMirror(primary, standby, hotline_queues(settings))
        stack.callback(mirror.close)
        hand_back = HandBack(primary, standby, hotline_queues(settings))
        stack.callback(hand_back.close)
        standby_bus = StandbyStates(bus, primary, hand_back.withholds_abandon)
    for media, kind in cluster_nodes(settings):
        if (media.address, media.ami_port) == own:
            continue
        on_standby = len(queue_amis) == 2 and media == settings.edge.queue_nodes[1]
        link = link_node(settings, media, kind, standby_bus if on_standby else bus,
                         queue_amis.get(media.name))
        if link.queue is not None:
            stack.callback(link.queue.close)
        if kind == "queue":  # the callers wait there: the announcements they hear are steps
            announcements = QueueAnnouncements(
                link.ami, bus, main_queue=settings.asterisk.queue_name,
                announce_position=settings.queue_wait.announce_position)
            stack.callback(announcements.close)
        if link.calls is not None:
            link.calls.adopt(ActiveCall(c.call_id, c.channel, c.caller_number, c.caller_name)
                             for c in (adopt or {}).get(link.name, ()))
            link.loss = NodeLossWatch(link.name, link.ami, link.calls, bus)
            link.loss.start()
            stack.push_async_callback(link.loss.close)
        await link.ami.start()
        stack.push_async_callback(link.ami.close)
        log.info("control: AMI link to %s node %s at %s:%s", kind, media.name, media.address,
                 media.ami_port)
        links.append(link)
    return links


async def start_worker_links(stack: contextlib.AsyncExitStack,
                             settings: Settings) -> dict[str, AmiClient]:
    """An IVR worker's AMI links by media node name, events off (it only sets channel
    variables), connecting in the background; none unless ``[edge] control_links``. A node
    whose AMI address is ``[ami]``'s is left to the worker's ``[ami]`` link."""
    links: dict[str, AmiClient] = {}
    if not settings.edge.control_links:
        return links
    own = (settings.ami.host, settings.ami.port)
    for media in settings.edge.nodes:
        if (media.address, media.ami_port) == own:
            continue
        ami = AmiClient(node_settings(settings, media).ami, name=f"hotline-ivr-{media.name}",
                        events=False)
        await ami.start()
        stack.push_async_callback(ami.close)
        log.info("ivr: AMI link to media node %s at %s:%s", media.name, media.address,
                 media.ami_port)
        links[media.name] = ami
    return links
