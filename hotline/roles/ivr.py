"""The IVR part: the speech stack, the AudioSocket media server and the call handlers it runs
(intake, survey, callback offer). It learns calls from the control part's call tracker in
the same process (``--role all|core``), or from the bus's call events in an IVR worker of
its own (``--role ivr``, hotline/roles/split.py)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from crm.cases.directory import CaseDirectory
from crm.knowledge.ivr_topics import KnowledgeDirectory
from crm.storage.db import SessionFactory
from crm.storage.journal import json_journal
from crm.surveys.return_visits import RetryPolicy
from crm.surveys.writes import SurveyWriteQueue
from crm.telephony.events import EventBus
from hotline.roles.control import Control
from hotline.settings import Settings, queues_by_language
from hotline.surveys import survey_calls
from ivr.asterisk.bus_calls import BusCallDirectory
from ivr.asterisk.call_tracker import CallTracker
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


@dataclass
class Ivr:
    speech: SpeechStack
    media: MediaServer
    surveys: SurveyCalls
    survey_writes: SurveyWriteQueue


@dataclass
class CallSource:
    """Where the IVR learns its calls: control's AMI call tracker (``--role core``, ``all``)
    or the bus's call events (``--role ivr``: :class:`BusCallDirectory`), and what a callback
    offer asks about the call."""

    calls: CallTracker
    language_of: Callable[[str], str | None]
    first_queued: Callable[[str], tuple[str, datetime] | None]
    return_position: Callable[[str, str, datetime, str | None], Awaitable[int]] | None


def control_calls(control: Control) -> CallSource:
    watcher = control.callback_watcher
    return CallSource(control.tracker, watcher.language_of, watcher.first_queued,
                      control.callback_dialer.return_position)


def bus_calls(directory: BusCallDirectory) -> CallSource:
    """An IVR worker's calls from the bus; the requeue position of a callback offer is the
    control process's to keep, so a worker's offer sends a caller back to the queue's end."""
    return CallSource(cast(CallTracker, directory), directory.language_of,
                      directory.first_queued, None)


async def start_ivr(stack: contextlib.AsyncExitStack, settings: Settings,
                    sessions: SessionFactory, bus: EventBus, control: Control) -> Ivr:
    return await start_ivr_from(stack, settings, sessions, bus, control_calls(control))


async def start_ivr_from(stack: contextlib.AsyncExitStack, settings: Settings,
                         sessions: SessionFactory, bus: EventBus, source: CallSource) -> Ivr:
    speech = await SpeechStack.start(settings)
    stack.push_async_callback(speech.close)
    _log_speech(speech)
    tracker = source.calls
    deps = IvrDeps(bus, CaseDirectory(sessions), tracker, StackVoice(speech),
                   default_language=settings.speech.default_language,
                   intake=intake_keys(settings.intake),
                   queues=queues_by_language(settings),
                   knowledge=KnowledgeDirectory(sessions))
    survey_journal = json_journal(settings.state_dir / "journal", "survey-writes")
    stack.callback(survey_journal.close)
    survey_writes = SurveyWriteQueue(sessions, survey_journal,
                                     policy=RetryPolicy.from_settings(settings.survey))
    survey_writes.start()
    stack.push_async_callback(survey_writes.close)
    surveys = survey_calls(settings, bus, sessions, tracker, StackVoice(speech),
                           deferred=survey_writes)
    offers = CallbackOffers(OfferDeps(bus, tracker, StackVoice(speech),
                                      language_of=source.language_of,
                                      first_queued=source.first_queued,
                                      return_position=source.return_position,
                                      default_language=settings.speech.default_language))
    media = MediaServer(settings.audiosocket,
                        SpeechIvrHandler(deps, survey=surveys.run, offer=offers.run).handle,
                        on_overflow=OverflowRecorder(
                            tracker, bus, limit=settings.audiosocket.call_limit()),
                        announcements=tracker)
    await media.start()
    stack.push_async_callback(media.close)
    return Ivr(speech, media, surveys, survey_writes)


def intake_keys(intake: IntakeSettings) -> IntakeKeys:
    """The greeting's keys and silence timeout, from ``[intake]``."""
    return IntakeKeys(languages=dict(intake.language_keys), service_info=intake.service_info_key,
                      check_status=intake.check_status_key,
                      silence_timeout=intake.silence_timeout)


def _log_speech(speech: SpeechStack) -> None:
    for lang, info in speech.health()["languages"].items():
        if info["speech"]:
            log.info("speech %s: recognition on (%s)", lang, info["model_dir"])
        else:
            log.warning("speech %s: keypad only: %s", lang, info["reason"])
