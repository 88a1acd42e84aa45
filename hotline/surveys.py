"""Wiring for satisfaction surveys and return visits (used by hotline.service and the CLI).

``survey_calls`` builds the media handler's survey runner; ``return_visit_loop`` runs the
return-visit dialer inside ``hotline serve`` when ``survey.return_visit_interval`` is set;
``run_return_visits`` is one dialling pass for the CLI (e.g. ``hotline surveys
return-visits`` from cron), against the running service's Asterisk and IVR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from crm.call_events import CallEventBus
from crm.db import SessionFactory, open_database
from crm.migrate import upgrade
from crm.return_visits import AmiActions, AttemptReport, ReturnVisitDialer
from crm.survey_writes import SurveyWriteQueue
from hotline.settings import Settings
from ivr.ami import AmiClient
from ivr.call_tracker import CallTracker
from ivr.survey_call import SurveyCalls, SurveyDeps, SurveyVoice

log = logging.getLogger(__name__)


def recordings_dir(settings: Settings) -> Path:
    return settings.survey.recordings_dir or settings.state_dir / "survey-comments"


def survey_calls(settings: Settings, bus: CallEventBus, sessions: SessionFactory,
                 tracker: CallTracker, voice: SurveyVoice, *,
                 deferred: SurveyWriteQueue | None = None) -> SurveyCalls:
    return SurveyCalls(SurveyDeps(bus, sessions, tracker, voice, settings.survey,
                                  recordings_dir(settings),
                                  default_language=settings.speech.default_language,
                                  deferred=deferred))


@contextlib.asynccontextmanager
async def return_visit_loop(settings: Settings, ami: AmiActions,
                            sessions: SessionFactory) -> AsyncIterator[ReturnVisitDialer | None]:
    """The dialer, running a pass every ``return_visit_interval`` minutes (none when 0 or
    surveys are disabled); stopped on exit."""
    interval = settings.survey.return_visit_interval
    if not settings.survey.enabled or interval <= 0:
        yield None
        return
    dialer = ReturnVisitDialer(ami, sessions, settings.survey,
                               hotline_number=settings.asterisk.hotline_number)
    task = asyncio.create_task(dialer.run_forever(interval * 60), name="return-visits")
    log.info("return visits: a pass every %g min within %s", interval,
             settings.survey.calling_hours)
    try:
        yield dialer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        dialer.close()


async def run_return_visits(settings: Settings) -> list[AttemptReport]:
    """One return-visit pass: schedule visits for resolved cases and call those due (within
    the calling hours); returns when every call placed has an outcome. The surveys run in
    the hotline service, which must be up."""
    if not settings.survey.enabled:
        log.info("surveys are disabled: no return visits")
        return []
    await upgrade(settings.database_url)
    database = open_database(settings.database_url, echo=settings.database.echo)
    ami = AmiClient(settings.ami, name="hotline-return-visits")
    try:
        await ami.start()
        await ami.wait_ready(10)
        dialer = ReturnVisitDialer(ami, database.sessions, settings.survey,
                                   hotline_number=settings.asterisk.hotline_number)
        try:
            return await dialer.run_once()
        finally:
            dialer.close()
    finally:
        await ami.close()
        await database.close()
