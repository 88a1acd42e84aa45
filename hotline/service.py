"""Composition root: builds every part of the hotline service and runs it until stopped.

One process serves the IVR media server (AudioSocket), AMI control and the web app. Parts
receive what they need as arguments; nothing here is imported by the parts themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import zoneinfo
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from aiohttp import web

from crm.audit.retention import RetentionFiles
from crm.callbacks.dialing import CallbackScheduler
from crm.callbacks.watcher import MissedCallWatcher
from crm.cases.directory import CaseDirectory
from crm.consultations.recorder import ConsultationRecorder, open_calls
from crm.live.desk_hub import DeskHub
from crm.live.wallboard import Wallboard
from crm.reports.service_levels import TodayCounter
from crm.storage.db import SessionFactory, open_database
from crm.storage.journal import EventJournal, json_journal
from crm.storage.migrate import upgrade
from crm.storage.private_files import SERVICE_UMASK, tighten_all, umask
from crm.surveys.return_visits import RetryPolicy
from crm.surveys.writes import SurveyWriteQueue
from crm.telephony.events import CallEventBus
from crm.web.app import HealthReport, create_app
from crm.web.console.app import ConsoleDeps
from crm.web.desk import DeskDeps
from crm.web.session import SessionPolicy
from hotline.metrics import ScrapeSources, ServiceMetrics, recognition_pool
from hotline.paths import asterisk_trees, recording_store, service_trees, survey_comments_dir
from hotline.reconciliation import call_record_path, reconcile_open_calls
from hotline.retention import RetentionSchedule, retention_loop
from hotline.settings import (
    Settings,
    assigned_callback_queue,
    hotline_queues,
    queues_by_language,
)
from hotline.surveys import return_visit_loop, survey_calls
from ivr.ami.client import AmiClient
from ivr.asterisk.call_records import CallRecordReader
from ivr.asterisk.call_tracker import ActiveCall, CallTracker
from ivr.asterisk.callback_dialer import AmiCallbackDialer
from ivr.asterisk.queue_announcements import QueueAnnouncements
from ivr.asterisk.queue_control import QueueControl
from ivr.asterisk.queue_tracker import QueueTracker
from ivr.audiosocket.server import MediaServer
from ivr.callback_offer_call import CallbackOffers, OfferDeps
from ivr.flows.menu import IntakeKeys
from ivr.menu_call import IvrDeps, SpeechIvrHandler
from ivr.overflow import OverflowRecorder
from ivr.settings import IntakeSettings
from ivr.survey_call import SurveyCalls
from ivr.voice import StackVoice
from speech.stack import SpeechStack

log = logging.getLogger(__name__)

STARTUP_REPLAY_WAIT = 10.0
"""Seconds start-up waits for journaled call events to be written before it reads which
calls are still open."""


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
        )


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[HotlineService]:
    """Start every part in dependency order and stop them in reverse, whatever happens."""
    async with contextlib.AsyncExitStack() as stack:
        # Residents' data on disk is for the service's user only: new files owner-only,
        # older ones tightened (each change logged).
        stack.enter_context(umask(SERVICE_UMASK))
        recordings = recording_store(settings)
        tighten_all(service_trees(settings) + asterisk_trees(
            settings, recordings.host_dir if recordings is not None else None))
        await upgrade(settings.database_url)
        database = open_database(settings.database_url, echo=settings.database.echo)
        stack.push_async_callback(database.close)
        sessions = database.sessions

        bus = CallEventBus()
        metrics = ServiceMetrics(answer_within_s=settings.service_levels.answer_within_s)
        metrics.database_errors.watch(database.engine)
        bus.subscribe(metrics.calls.handle)
        stack.callback(metrics.calls.close)
        journal = EventJournal(settings.state_dir / "journal")
        stack.callback(journal.close)
        recorder = ConsultationRecorder(sessions, journal=journal)
        bus.subscribe(recorder.handle)
        recorder.start()
        stack.push_async_callback(recorder.close)

        pop_audits = json_journal(settings.state_dir / "journal", "pop-audits")
        stack.callback(pop_audits.close)
        desk_hub = DeskHub(sessions, audit_journal=pop_audits, on_pop=metrics.observe_pop)
        bus.subscribe(desk_hub.handle)
        desk_hub.start()
        stack.push_async_callback(desk_hub.close)

        local_zone = hotline_zone(settings)
        wallboard = Wallboard(sessions, queue=settings.asterisk.queue_name, tz=local_zone,
                              queues=hotline_queues(settings), settle=recorder.drain,
                              service_level_s=settings.service_levels.answer_within_s,
                              levels=TodayCounter(
                                  sessions, local_zone, settings.service_levels,
                                  full_every_s=settings.service_levels.wallboard_refresh_s),
                              levels_refresh_s=settings.service_levels.wallboard_refresh_s)
        bus.subscribe(wallboard.handle)  # before the AMI login: its QueueSnapshot rebuilds it
        await wallboard.start()
        stack.push_async_callback(wallboard.close)

        ami = AmiClient(settings.ami)
        tracker = CallTracker(ami, bus, records=CallRecordReader(call_record_path(settings)))
        # Calls a previous run left open (once the journal's replay is written): the first
        # resynchronisation closes those that ended while no service was running.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STARTUP_REPLAY_WAIT):
                await recorder.drain()
        left_open = await open_calls(sessions)
        reconciled = await reconcile_open_calls(settings, sessions, left_open)
        tracker.adopt(ActiveCall(c.call_id, c.channel, c.caller_number, c.caller_name)
                      for c in left_open if c.call_id not in reconciled)
        queue_tracker = QueueTracker(ami, bus, queues=hotline_queues(settings))
        announcements = QueueAnnouncements(
            ami, bus, main_queue=settings.asterisk.queue_name,
            announce_position=settings.queue_wait.announce_position)
        stack.callback(announcements.close)
        callback_dialer = AmiCallbackDialer(ami, settings.callbacks,
                                            hotline_number=settings.asterisk.hotline_number)
        await ami.start()
        stack.push_async_callback(ami.close)
        stack.callback(callback_dialer.close)
        callbacks = CallbackScheduler(callback_dialer, sessions, bus, settings.callbacks,
                                      queue=settings.asterisk.queue_name, settle=recorder.drain)
        callback_watcher = MissedCallWatcher(sessions, bus, settings.callbacks,
                                             settle=recorder.drain, on_created=callbacks.wake,
                                             on_closed=callbacks.withdraw)
        bus.subscribe(callback_watcher.handle)
        stack.push_async_callback(callback_watcher.close)
        if settings.callbacks.enabled:
            callbacks.start()
        stack.push_async_callback(callbacks.close)

        speech = await SpeechStack.start(settings)
        stack.push_async_callback(speech.close)
        _log_speech(speech)
        deps = IvrDeps(bus, CaseDirectory(sessions), tracker, StackVoice(speech),
                       default_language=settings.speech.default_language,
                       intake=intake_keys(settings.intake),
                       queues=queues_by_language(settings))
        survey_journal = json_journal(settings.state_dir / "journal", "survey-writes")
        stack.callback(survey_journal.close)
        survey_writes = SurveyWriteQueue(sessions, survey_journal,
                                         policy=RetryPolicy.from_settings(settings.survey))
        survey_writes.start()
        stack.push_async_callback(survey_writes.close)
        surveys = survey_calls(settings, bus, sessions, tracker, StackVoice(speech),
                               deferred=survey_writes)
        offers = CallbackOffers(OfferDeps(bus, tracker, StackVoice(speech),
                                          language_of=callback_watcher.language_of,
                                          first_queued=callback_watcher.first_queued,
                                          return_position=callback_dialer.return_position,
                                          default_language=settings.speech.default_language))
        media = MediaServer(settings.audiosocket,
                            SpeechIvrHandler(deps, survey=surveys.run, offer=offers.run).handle,
                            on_overflow=OverflowRecorder(
                                tracker, bus, limit=settings.audiosocket.call_limit()),
                            announcements=tracker)
        await media.start()
        stack.push_async_callback(media.close)
        await stack.enter_async_context(return_visit_loop(settings, ami, sessions))

        service_ref: list[HotlineService] = []
        queue_control = QueueControl(ami, settings.asterisk.queue_name,
                                     queues=queues_by_language(settings),
                                     default_language=settings.speech.default_language,
                                     assigned=assigned_callback_queue(settings))
        session_secret = settings.web.session_secret or secrets.token_urlsafe(32)
        desk = DeskDeps(sessions, desk_hub, queue_control, session_secret,
                        idle_timeout=settings.web.session_idle_timeout,
                        secure_cookies=settings.web.secure_cookies, callbacks=callbacks)
        console = ConsoleDeps(sessions, session_secret, wallboard=wallboard,
                              recordings=recording_store(settings),
                              survey_comments=survey_comments_dir(settings),
                              idle_timeout=settings.web.session_idle_timeout, tz=local_zone,
                              secure_cookies=settings.web.secure_cookies,
                              service_levels=settings.service_levels, callbacks=callbacks)
        app = create_app(sessions, lambda: service_ref[0].health(), desk=desk, console=console,
                         session_policy=SessionPolicy.from_settings(settings.web),
                         report_tz=local_zone, service_levels=settings.service_levels,
                         metrics_text=metrics.exposition)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, settings.web.host, settings.web.port).start()
        retention = await stack.enter_async_context(retention_loop(
            settings, sessions, RetentionFiles(recordings, survey_comments_dir(settings))))

        service = HotlineService(settings, sessions, bus, recorder, ami, tracker, media, speech,
                                 runner, queue_tracker=queue_tracker, desk_hub=desk_hub,
                                 queue_control=queue_control, surveys=surveys,
                                 wallboard=wallboard, survey_writes=survey_writes)
        service.retention = retention
        service.callbacks, service.callback_watcher = callbacks, callback_watcher
        service.metrics = metrics
        metrics.scrape_from(ScrapeSources(service.health, lambda: ami.logins,
                                          recognition_pool(speech.executor),
                                          metrics.database_errors))
        service_ref.append(service)
        log.info("hotline service up: AudioSocket %s:%s, web http://%s:%s/, AMI %s:%s",
                 settings.audiosocket.host, media.bound_port, settings.web.host,
                 settings.web.port, settings.ami.host, settings.ami.port)
        yield service


def intake_keys(intake: IntakeSettings) -> IntakeKeys:
    """The greeting's keys and silence timeout, from ``[intake]``."""
    return IntakeKeys(languages=dict(intake.language_keys), service_info=intake.service_info_key,
                      check_status=intake.check_status_key,
                      silence_timeout=intake.silence_timeout)


def hotline_zone(settings: Settings) -> tzinfo:
    """The hotline's local time zone (report days, the wallboard's "today"): the survey
    calling-hours zone when set, else the host's."""
    if settings.survey.timezone:
        return zoneinfo.ZoneInfo(settings.survey.timezone)
    return datetime.now().astimezone().tzinfo or UTC


def _log_speech(speech: SpeechStack) -> None:
    for lang, info in speech.health()["languages"].items():
        if info["speech"]:
            log.info("speech %s: recognition on (%s)", lang, info["model_dir"])
        else:
            log.warning("speech %s: keypad only: %s", lang, info["reason"])


async def serve_forever(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_service(settings):
        await stop.wait()
        log.info("stopping hotline service")
