"""Wiring for satisfaction surveys and return visits (used by hotline.service and the CLI).

``survey_calls`` builds the media handler's survey runner; ``return_visit_loop`` runs the
return-visit campaign inside ``hotline serve`` when ``survey.return_visit_interval`` is set;
``run_return_visits`` is one dialling pass for the CLI (e.g. ``hotline surveys
return-visits`` from cron), against the running service's Asterisk and IVR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from crm.storage.db import SessionFactory, open_database
from crm.storage.migrate import upgrade
from crm.surveys.return_visits import AttemptReport, RetryPolicy, ReturnVisitCampaign
from crm.surveys.store import SurveyStore
from crm.surveys.writes import SurveyWriteQueue
from crm.telephony.events import EventBus
from hotline.paths import survey_comments_dir
from hotline.settings import Settings
from ivr.ami.client import AmiClient
from ivr.asterisk.call_tracker import CallTracker
from ivr.asterisk.dialer import AmiActions, ReturnVisitDialer
from ivr.survey_call import SurveyCalls, SurveyDeps, SurveyVoice

log = logging.getLogger(__name__)


def survey_calls(settings: Settings, bus: EventBus, sessions: SessionFactory,
                 tracker: CallTracker, voice: SurveyVoice, *,
                 deferred: SurveyWriteQueue | None = None) -> SurveyCalls:
    store = SurveyStore(sessions, RetryPolicy.from_settings(settings.survey))
    return SurveyCalls(SurveyDeps(bus, store, tracker, voice, settings.survey,
                                  survey_comments_dir(settings),
                                  default_language=settings.speech.default_language,
                                  deferred=deferred))


@contextlib.asynccontextmanager
async def return_visit_loop(settings: Settings, ami: AmiActions,
                            sessions: SessionFactory) -> AsyncIterator[ReturnVisitCampaign | None]:
    """The campaign, running a pass every ``return_visit_interval`` minutes (none when 0 or
    surveys are disabled); stopped on exit."""
    interval = settings.survey.return_visit_interval
    if not settings.survey.enabled or interval <= 0:
        yield None
        return
    dialer = ReturnVisitDialer(ami, settings.survey,
                               hotline_number=settings.asterisk.hotline_number)
    campaign = ReturnVisitCampaign(dialer, sessions, settings.survey)
    task = asyncio.create_task(campaign.run_forever(interval * 60), name="return-visits")
    log.info("return visits: a pass every %g min within %s", interval,
             settings.survey.calling_hours)
    try:
        yield campaign
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
        dialer = ReturnVisitDialer(ami, settings.survey,
                                   hotline_number=settings.asterisk.hotline_number)
        campaign = ReturnVisitCampaign(dialer, database.sessions, settings.survey)
        try:
            return await campaign.run_once()
        finally:
            dialer.close()
    finally:
        await ami.close()
        await database.close()
