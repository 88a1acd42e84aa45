"""Return-visit calls placed with AMI ``Originate`` (crm.telephony.dialer.Dialer).

The call goes into the ``hotline-return-visit`` dialplan context, which hands the answered
call to the IVR's survey; how it ended comes back as ``OriginateResponse`` (and, when that
says nothing, the dialled channel's ``Hangup`` cause). The bookkeeping (which visits are due,
retries, calling hours) is the CRM's: crm.surveys.return_visits.ReturnVisitCampaign.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from crm.settings import SurveySettings
from ivr.asterisk.replies import Replies

RETURN_VISIT_CONTEXT = "hotline-return-visit"
ORIGINATE_REASONS = {"1": "no_answer", "3": "no_answer", "5": "busy", "8": "failed"}
"""AMI OriginateResponse Reason (the last control frame): 1 hung up before answer, 3 rang
until the timeout, 4 answered, 5 busy, 8 congestion; 0 says nothing (a PJSIP 486 Busy Here
arrives as 0), so the hang-up cause of the dialled channel decides then."""
HANGUP_CAUSES = {"17": "busy", "16": "no_answer", "18": "no_answer", "19": "no_answer",
                 "21": "no_answer", "31": "no_answer"}
"""Q.850 causes: 17 user busy; 16 normal clearing, 18 no user responding, 19 no answer,
21 call rejected, 31 normal unspecified. Anything else (unallocated number, no route,
congestion...) is a failed attempt."""
CAUSE_WAIT = 2.0
"""Seconds to wait for the dialled channel's Hangup event after a failed Originate."""


class AmiActions(Protocol):
    """What the dialer needs of an AMI client (ivr.ami.client.AmiClient fits)."""

    async def action(self, name: str, *, timeout: float = 5.0, **fields: Any) -> Any: ...

    def subscribe(self, pattern: str, handler: Callable[[Any], Any]) -> Callable[[], None]: ...


class ReturnVisitDialer:
    """Places return-visit calls with AMI Originate and says how each one went
    (crm.telephony.dialer.Dialer)."""

    def __init__(self, ami: AmiActions, survey: SurveySettings, *, hotline_number: str) -> None:
        self.ami = ami
        self.survey = survey
        self.hotline_number = hotline_number
        self._responses = Replies()
        self._hangup_causes = Replies()
        self._unsubscribe = [ami.subscribe("OriginateResponse", self._on_response),
                             ami.subscribe("Hangup", self._on_hangup)]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    async def _on_response(self, event: Any) -> None:
        if action_id := event.get("ActionID"):
            await self._responses.keep(action_id, event)

    async def _on_hangup(self, event: Any) -> None:
        if uniqueid := event.get("Uniqueid"):
            await self._hangup_causes.keep(uniqueid, event.get("Cause") or "")


    async def dial(self, phone: str, *, visit_id: int, survey_call_id: str) -> tuple[str, str]:
        """Dial the resident; (outcome, detail) once Asterisk reports how the call went.
        The channel's Uniqueid is the survey call id, so its Hangup event can be found."""
        caller_id = self.survey.caller_id or self.hotline_number
        fields = {
            "Channel": self.survey.dial.replace("{number}", phone),
            "Context": RETURN_VISIT_CONTEXT, "Exten": "s", "Priority": "1",
            "Timeout": str(int(self.survey.ring_timeout * 1000)),
            "CallerID": f'"{caller_id}" <{caller_id}>',
            "ChannelId": survey_call_id,
            "Async": "true",
            "Variable": [f"SURVEY_ID={survey_call_id}", f"RETURN_VISIT_ID={visit_id}"],
        }
        try:
            queued = await self.ami.action("Originate", **fields)
        except Exception as exc:  # AMI down or refused: the attempt failed, retry later
            return "failed", f"originate not sent: {exc}"
        response = await self._responses.take(queued.get("ActionID"),
                                        self.survey.ring_timeout + 15)
        if response is None:
            return "failed", "no OriginateResponse"
        if response.get("Response") == "Success":
            return "answered", "answered"
        reason = response.get("Reason") or "0"
        if reason in ORIGINATE_REASONS:
            return ORIGINATE_REASONS[reason], f"reason {reason}"
        cause = await self._hangup_causes.take(survey_call_id, CAUSE_WAIT)
        return HANGUP_CAUSES.get(cause or "", "failed"), f"reason {reason}, cause {cause}"

