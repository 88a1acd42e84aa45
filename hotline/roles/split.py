"""Control and the IVR as processes of their own, over the Redis bus.

- ``--role control``: the AMI link with events and its trackers (they publish the call
  events, survey legs and callback offers on the bus), the consultation recorder, the
  callbacks, return visits, the departments' reminders and retention: one at work per
  cluster, under the control lease (hotline/roles/control_lease.py: any other waits as a
  standby and takes over);
- ``--role ivr``: an IVR worker, any number of them: the speech stack and the AudioSocket
  server with its per-call handlers. It learns calls, survey legs and callback offers from
  the bus (:class:`ivr.asterisk.bus_calls.BusCallDirectory`), publishes what the caller
  did on it, and sets the channel variables the dialplan reads (the route, the queue) over
  an AMI link of its own (with ``[edge] control_links``, one per media node: the call's
  node, named in its events). The dialplan tries the workers in turn (``[audiosocket]
  workers``), so a dead worker's new calls go to another. At start it replays the last
  ``[bus] replay_s`` of the stream (worker_replay.py: calls announced just before it
  started); ``[audiosocket] health_port`` serves its /healthz and /metrics
  (worker_health.py).

``--role core`` is the two in one process (hotline/service.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from crm.consultations.recorder import ConsultationRecorder
from crm.storage.db import SessionFactory
from hotline.bus.redis_bus import RedisStreamBus
from hotline.roles.callback_commands import commands_key, take_commands
from hotline.roles.callback_watcher_member import CallbackWatcherMember
from hotline.roles.cluster import background, cluster_client, start_cluster_bus
from hotline.roles.control import Control, start_control, start_schedules
from hotline.roles.control_lease import control_lease
from hotline.roles.ivr import Ivr, bus_calls, start_ivr_from
from hotline.roles.left_open import LeftOpenPlacement
from hotline.roles.node_links import (
    linked_media,
    own_node_name,
    start_node_links,
    start_worker_links,
)
from hotline.roles.recorded_mark import wait_recorded
from hotline.roles.recorder_member import start_recorder_member
from hotline.roles.storage import open_storage
from hotline.roles.worker_health import WorkerParts, serve_health
from hotline.roles.worker_presence import WorkerMarks, announce
from hotline.roles.worker_replay import begin_replay, finish_replay
from hotline.settings import Settings
from ivr.ami.client import AmiClient
from ivr.asterisk.bus_calls import BusCallDirectory

log = logging.getLogger(__name__)


@dataclass
class ControlService:
    settings: Settings
    sessions: SessionFactory
    bus: RedisStreamBus
    recorder: ConsultationRecorder
    control: Control


@dataclass
class IvrWorker:
    settings: Settings
    bus: RedisStreamBus
    calls: BusCallDirectory
    ami: AmiClient
    ivr: Ivr


async def start_cluster_control(stack: contextlib.AsyncExitStack, settings: Settings,
                                role: str) -> ControlService:
    """The control part of a cluster process (``--role control`` and ``core``): storage,
    the bus, this process's member of the recorders group, AMI control (with ``[edge]
    control_links``, a link per node) and the web nodes' callback commands."""
    sessions = await open_storage(stack, settings)
    bus = await start_cluster_bus(stack, settings, role)
    client = cluster_client(stack, settings)
    recorder = (await start_recorder_member(stack, settings, sessions, bus, client,
                                            role=role)).recorder
    placement = (LeftOpenPlacement(settings, sessions, bus, own_node_name(settings),
                                   [m.name for m in linked_media(settings)])
                 if linked_media(settings) else None)  # calls left open, on their nodes
    watcher = CallbackWatcherMember(client, bus)  # continues after a takeover
    await watcher.open()
    control = await start_control(stack, settings, sessions, bus, recorder,
                                  settle=lambda: wait_recorded(client, bus),
                                  place_left_open=placement.place if placement else None,
                                  watch=watcher, start_callbacks=False)
    links = await start_node_links(stack, settings, bus,
                                   adopt=placement.by_node if placement else None)
    if queue_nodes := [link.ami for link in links if link.kind == "queue"]:
        control.callback_dialer.use_queue_nodes(queue_nodes)  # callbacks wait there
        control.callback_dialer.use_media_nodes(  # placeholders another control placed
            [link.ami for link in links if link.kind == "media"])
    if settings.callbacks.enabled:  # once it knows the nodes: it looks there first
        control.callbacks.start()
    # A dead IVR worker marked on every media node's dialplan (worker_presence.py).
    marks = WorkerMarks(client, settings.bus.stream,
                        [control.ami, *(link.ami for link in links if link.kind == "media")])
    stack.callback(marks.close)
    background(stack, "IVR worker marks", marks.run())
    background(stack, "callback commands", take_commands(
        cluster_client(stack, settings), commands_key(settings.bus.stream),
        control.callbacks))
    return ControlService(settings, sessions, bus, recorder, control)


@contextlib.asynccontextmanager
async def running_control(settings: Settings) -> AsyncIterator[ControlService]:
    # One control works at a time; another waits as a standby (control_lease.py).
    async with control_lease(settings), contextlib.AsyncExitStack() as stack:
        parts = await start_cluster_control(stack, settings, "control")
        await start_schedules(stack, settings, parts.sessions, parts.control.ami)
        log.info("hotline control up: AMI %s:%s, bus %s", settings.ami.host,
                 settings.ami.port, settings.bus.stream)
        yield parts


@contextlib.asynccontextmanager
async def running_ivr(settings: Settings) -> AsyncIterator[IvrWorker]:
    async with contextlib.AsyncExitStack() as stack:
        sessions = await open_storage(stack, settings, migrate=False)  # control migrates
        bus = await start_cluster_bus(stack, settings, "ivr")
        ami = AmiClient(settings.ami, name="hotline-ivr", events=False)  # channel variables
        calls = BusCallDirectory(ami, await start_worker_links(stack, settings))
        replay = begin_replay(bus, settings)  # the calls announced before it started
        bus.subscribe(calls.handle)
        await ami.start()
        stack.push_async_callback(ami.close)
        await finish_replay(bus, replay)
        ivr = await start_ivr_from(stack, settings, sessions, bus, bus_calls(calls))
        await serve_health(stack, settings.audiosocket.host, settings.audiosocket.health_port,
                           WorkerParts(ami, ivr.media, ivr.speech, bus, calls,
                                       lambda: ivr.survey_writes.pending))
        background(stack, "IVR worker presence", announce(  # worker_presence.py
            cluster_client(stack, settings), settings.bus.stream,
            lambda: f"{settings.audiosocket.host}:{ivr.media.bound_port}"))
        log.info("hotline ivr up: AudioSocket %s:%s, AMI %s:%s, bus %s",
                 settings.audiosocket.host, ivr.media.bound_port, settings.ami.host,
                 settings.ami.port, settings.bus.stream)
        yield IvrWorker(settings, bus, calls, ami, ivr)
