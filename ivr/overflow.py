"""Calls the IVR hands back at its limit (``audiosocket.max_calls``), recorded on their
consultation so supervisors see why a caller skipped the menu or was not surveyed.

The media server refuses the AudioSocket connection at once (the dialplan queues the caller,
or ends a survey leg); this runs afterwards, off the caller's path: it learns from the call
tracker what the AudioSocket id stood for and publishes one step on the call event bus.
"""

from __future__ import annotations

import logging
import uuid

from crm.telephony.events import CallStep, EventBus
from crm.telephony.steps import IvrAtCapacity, SurveySkipped
from ivr.asterisk.call_tracker import CallTracker, OfferLeg, SurveyLeg, node_lookup

log = logging.getLogger(__name__)

ANNOUNCE_WAIT = 3.0
"""Seconds to wait for AMI to say what the refused AudioSocket id stands for."""


class OverflowRecorder:
    def __init__(self, tracker: CallTracker, bus: EventBus, *, limit: int | None,
                 announce_wait: float = ANNOUNCE_WAIT) -> None:
        self._tracker = tracker
        self._bus = bus
        self._limit = limit
        self._wait = announce_wait

    async def __call__(self, session_id: uuid.UUID) -> None:
        sid = str(session_id)
        known = await self._tracker.wait_for_session(sid, self._wait)
        reason = "IVR at capacity"
        if isinstance(known, SurveyLeg):
            self._tracker.take_survey_leg(sid)
            if known.call_id is None:
                log.warning("%s survey leg %s not offered: the IVR is at capacity", known.kind,
                            sid)
                return
            await self._bus.publish(CallStep(known.call_id,
                                             SurveySkipped(reason, max_calls=self._limit),
                                             node=node_lookup(self._tracker, sid,
                                                              known.call_id)()))
        elif isinstance(known, OfferLeg):
            # The dialplan hears no answer and reports the offer as unheard.
            self._tracker.take_offer_leg(sid)
        elif known is not None:
            await self._bus.publish(CallStep(known.call_id,
                                             IvrAtCapacity(reason, max_calls=self._limit),
                                             node=node_lookup(self._tracker, sid)()))
        else:
            log.warning("AudioSocket %s handed back at capacity; AMI never said which call "
                        "it was", sid)
