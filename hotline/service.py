"""Composition root: builds every part of the hotline service and runs it until stopped.

One process serves the IVR media server (AudioSocket), AMI control and the web app
(``--role all``); the parts are built by role (hotline/roles/: storage, control, ivr, web).
Parts receive what they need as arguments; nothing here is imported by the parts themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from crm.callbacks.dialing import CallbackScheduler
from crm.callbacks.watcher import MissedCallWatcher
from crm.consultations.recorder import ConsultationRecorder
from crm.live.desk_hub import DeskHub
from crm.live.wallboard import Wallboard
from crm.storage.db import SessionFactory
from crm.surveys.writes import SurveyWriteQueue
from crm.telephony.events import CallEventBus
from crm.web.app import HealthReport
from hotline import systemd_notify
from hotline.bus.redis_bus import RedisStreamBus
from hotline.heap import freeze_startup_heap
from hotline.metrics import ScrapeSources, ServiceMetrics, recognition_pool
from hotline.retention import RetentionSchedule
from hotline.roles import Role
from hotline.roles.callback_commands import RemoteCallbacks, commands_key
from hotline.roles.cluster import check_role, cluster_client, start_cluster_bus
from hotline.roles.control import Control, start_control, start_recorder, start_schedules
from hotline.roles.ivr import Ivr, start_ivr
from hotline.roles.ivr import intake_keys as intake_keys
from hotline.roles.recorded_mark import wait_recorded
from hotline.roles.split import running_control, running_ivr, start_cluster_control
from hotline.roles.storage import open_storage
from hotline.roles.web import (
    Live,
    WebApp,
    begin_replay,
    finish_replay,
    resync_on_login,
    start_live,
    start_web,
)
from hotline.roles.web import hotline_zone as hotline_zone
from hotline.settings import Settings
from ivr.ami.client import AmiClient
from ivr.asterisk.call_tracker import CallTracker
from ivr.asterisk.queue_control import QueueControl
from ivr.asterisk.queue_tracker import QueueTracker
from ivr.audiosocket.server import MediaServer
from ivr.survey_call import SurveyCalls
from speech.stack import SpeechStack

log = logging.getLogger(__name__)


@dataclass
class HotlineService:
    settings: Settings
    sessions: SessionFactory
    bus: CallEventBus
    recorder: ConsultationRecorder
    ami: AmiClient
    tracker: CallTracker
    media: MediaServer
    speech: SpeechStack
    web_runner: web.AppRunner
    queue_tracker: QueueTracker | None = None
    desk_hub: DeskHub | None = None
    queue_control: QueueControl | None = None
    surveys: SurveyCalls | None = None
    wallboard: Wallboard | None = None
    survey_writes: SurveyWriteQueue | None = None
    retention: RetentionSchedule | None = None
    callbacks: CallbackScheduler | None = None
    callback_watcher: MissedCallWatcher | None = None
    metrics: ServiceMetrics | None = None

    def health(self) -> HealthReport:
        return HealthReport(
            ami=self.ami.state,
            audiosocket_port=self.media.bound_port,
            active_calls=len(self.tracker.active_calls),
            consultations_written=self.recorder.written,
            speech=self.speech.health(),
            calls_refused_overload=self.media.refused_overload,
            audiosocket_refused=self.media.refusals,
            pending_writes={"call_events": self.recorder.pending,
                            "pop_audits": self.desk_hub.pending_audits if self.desk_hub else 0,
                            "survey_writes": (self.survey_writes.pending
                                              if self.survey_writes else 0)},
            reminders=self.metrics.reminders.health() if self.metrics else {},
        )


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[HotlineService]:
    """Start every part in dependency order and stop them in reverse, whatever happens."""
    async with contextlib.AsyncExitStack() as stack:
        metrics = ServiceMetrics(answer_within_s=settings.service_levels.answer_within_s)
        sessions = await open_storage(
            stack, settings, on_open=lambda db: metrics.database_errors.watch(db.engine))
        bus = CallEventBus()
        bus.subscribe(metrics.calls.handle)
        stack.callback(metrics.calls.close)
        recorder = await start_recorder(stack, settings, sessions, bus)
        live = await start_live(stack, settings, sessions, bus, settle=recorder.drain,
                                on_pop=metrics.observe_pop)
        control = await start_control(stack, settings, sessions, bus, recorder)
        ivr = await start_ivr(stack, settings, sessions, bus, control)
        service_ref: list[HotlineService] = []
        webapp = await start_web(stack, settings, sessions, live, control.ami,
                                 callbacks=control.callbacks,
                                 health=lambda: service_ref[0].health(),
                                 metrics_text=metrics.exposition)
        retention = await start_schedules(stack, settings, sessions, control.ami,
                                          on_reminders=metrics.reminders.observe)

        service = HotlineService(settings, sessions, bus, recorder, control.ami,
                                 control.tracker, ivr.media, ivr.speech, webapp.runner,
                                 queue_tracker=control.queue_tracker,
                                 desk_hub=live.desk_hub, queue_control=webapp.queue_control,
                                 surveys=ivr.surveys, wallboard=live.wallboard,
                                 survey_writes=ivr.survey_writes, retention=retention,
                                 callbacks=control.callbacks,
                                 callback_watcher=control.callback_watcher,
                                 metrics=metrics)
        metrics.scrape_from(ScrapeSources(service.health, lambda: control.ami.logins,
                                          recognition_pool(ivr.speech.executor),
                                          metrics.database_errors))
        service_ref.append(service)
        log.info("hotline service up: AudioSocket %s:%s, web http://%s:%s/, AMI %s:%s",
                 settings.audiosocket.host, ivr.media.bound_port, settings.web.host,
                 settings.web.port, settings.ami.host, settings.ami.port)
        yield service


# -- a role per process (hotline serve --role core|web), over the Redis bus -------------------
@dataclass
class CoreService:
    """``--role core``: control and the IVR (the IVR learns calls from control's tracker)."""

    settings: Settings
    sessions: SessionFactory
    bus: RedisStreamBus
    recorder: ConsultationRecorder
    control: Control
    ivr: Ivr


@dataclass
class WebService:
    """``--role web``: desk, console and API, fed by its own reader of the stream."""

    settings: Settings
    sessions: SessionFactory
    bus: RedisStreamBus
    live: Live
    ami: AmiClient
    web: WebApp
    callbacks: RemoteCallbacks


@contextlib.asynccontextmanager
async def running_core(settings: Settings) -> AsyncIterator[CoreService]:
    async with contextlib.AsyncExitStack() as stack:
        parts = await start_cluster_control(stack, settings, "core")
        ivr = await start_ivr(stack, settings, parts.sessions, parts.bus, parts.control)
        await start_schedules(stack, settings, parts.sessions, parts.control.ami)
        log.info("hotline core up: AudioSocket %s:%s, AMI %s:%s, bus %s",
                 settings.audiosocket.host, ivr.media.bound_port, settings.ami.host,
                 settings.ami.port, settings.bus.stream)
        yield CoreService(settings, parts.sessions, parts.bus, parts.recorder, parts.control,
                          ivr)


@contextlib.asynccontextmanager
async def running_web(settings: Settings) -> AsyncIterator[WebService]:
    async with contextlib.AsyncExitStack() as stack:
        sessions = await open_storage(stack, settings, migrate=False)  # the core migrates
        bus = await start_cluster_bus(stack, settings, "web")
        client = cluster_client(stack, settings)
        replay = begin_replay(bus, settings)
        live = await start_live(stack, settings, sessions, bus, replaying=replay is not None,
                                settle=lambda: wait_recorded(client, bus))
        await finish_replay(bus, live, replay)  # before the AMI login's queue snapshot
        ami = AmiClient(settings.ami, name="hotline-web")  # actions: queue members, transfers
        stack.callback(resync_on_login(ami, live, settings))
        await ami.start()
        stack.push_async_callback(ami.close)
        callbacks = RemoteCallbacks(client, commands_key(settings.bus.stream), sessions, bus,
                                    settings.callbacks)
        webapp = await start_web(stack, settings, sessions, live, ami, callbacks=callbacks,
                                 health=lambda: HealthReport(
                                     ami=ami.state, audiosocket_port=None, active_calls=0,
                                     consultations_written=0, role="web",
                                     pending_writes={"pop_audits": live.desk_hub.pending_audits,
                                                     "bus": bus.unsent}))
        log.info("hotline web up: http://%s:%s/, AMI %s:%s, bus %s", settings.web.host,
                 settings.web.port, settings.ami.host, settings.ami.port, settings.bus.stream)
        yield WebService(settings, sessions, bus, live, ami, webapp, callbacks)


async def serve_forever(settings: Settings, role: Role = "all") -> None:
    check_role(settings, role)
    # A watchdog that finds the process hung aborts it (systemd, the test bed's supervisor):
    # every thread's stack goes to stderr (the journal, the process's log) first.
    faulthandler.enable()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = {"all": running_service, "core": running_core, "web": running_web,
               "control": running_control, "ivr": running_ivr}[role]
    async with running(settings):
        freeze_startup_heap()
        watchdog = await systemd_notify.serving(role)
        await stop.wait()
        log.info("stopping hotline %s", "service" if role == "all" else role)
        await systemd_notify.stopping(watchdog)
