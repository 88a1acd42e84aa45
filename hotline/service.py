"""Composition root: builds every part of the hotline service and runs it until stopped.

One process serves the IVR media server (AudioSocket), AMI control and the web app. Parts
receive what they need as arguments; nothing here is imported by the parts themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from crm.call_events import CallEventBus
from crm.case_lookup import LookupGuard
from crm.consultations import ConsultationRecorder
from crm.db import SessionFactory, make_engine, make_session_factory
from crm.migrate import upgrade
from crm.web.app import HealthReport, create_app
from hotline.settings import Settings
from ivr.ami import AmiClient
from ivr.call_tracker import CallTracker
from ivr.ivr_call import IvrDeps, SpeechIvrHandler
from ivr.media_server import MediaServer
from ivr.voice import StackVoice
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

    def health(self) -> HealthReport:
        return HealthReport(
            ami=self.ami.state,
            audiosocket_port=self.media.bound_port,
            active_calls=len(self.tracker.active_calls),
            consultations_written=self.recorder.written,
            speech=self.speech.health(),
        )


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[HotlineService]:
    """Start every part in dependency order and stop them in reverse, whatever happens."""
    async with contextlib.AsyncExitStack() as stack:
        await upgrade(settings.database_url)
        engine = make_engine(settings.database_url, echo=settings.database.echo)
        stack.push_async_callback(engine.dispose)
        sessions = make_session_factory(engine)

        bus = CallEventBus()
        recorder = ConsultationRecorder(sessions)
        bus.subscribe(recorder.handle)
        recorder.start()
        stack.push_async_callback(recorder.close)

        ami = AmiClient(settings.ami)
        tracker = CallTracker(ami, bus)
        await ami.start()
        stack.push_async_callback(ami.close)

        speech = await SpeechStack.start(settings)
        stack.push_async_callback(speech.close)
        _log_speech(speech)
        deps = IvrDeps(bus, sessions, LookupGuard(sessions), tracker, StackVoice(speech),
                       default_language=settings.speech.default_language)
        media = MediaServer(settings.audiosocket, SpeechIvrHandler(deps).handle)
        await media.start()
        stack.push_async_callback(media.close)

        service_ref: list[HotlineService] = []
        app = create_app(sessions, lambda: service_ref[0].health())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, settings.web.host, settings.web.port).start()

        service = HotlineService(settings, sessions, bus, recorder, ami, tracker, media, speech,
                                 runner)
        service_ref.append(service)
        log.info("hotline service up: AudioSocket %s:%s, web http://%s:%s/, AMI %s:%s",
                 settings.audiosocket.host, media.bound_port, settings.web.host,
                 settings.web.port, settings.ami.host, settings.ami.port)
        yield service


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
