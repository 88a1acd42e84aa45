"""Why a hotline call ended: who hung up and the real Q.850 cause.

The dialplan's hang-up handler (``UserEvent(HotlineCallEnd, ...)``) runs on the caller's
channel and reports ``Cause`` (that channel's HANGUPCAUSE), ``HangupSource`` (the channel
that hung up, CHANNEL(hangupsource)) and ``Party`` (HANGUP_PARTY, set where the dialplan
itself ends the call: ivr, agent, system).

A caller's BYE leaves the channel's own cause at 0 when the handler runs (chan_pjsip queues
the hang-up without a cause): the cause Asterisk gives that hang-up arrives on AMI before the
handler's event, in the caller leg's HangupRequest / SoftHangupRequest. :class:`HangupCauses`
keeps those per call (and the agent leg's, for a call the agent ended) until the call ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from crm.telephony.events import HANGUP_PARTIES

Q850: Final[Mapping[int, str]] = {
    0: "Unknown",
    1: "Unallocated number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "No answer",
    20: "Subscriber absent",
    21: "Call rejected",
    22: "Number changed",
    27: "Destination out of order",
    28: "Invalid number format",
    31: "Normal, unspecified",
    34: "No circuit available",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Switching equip. congestion",
    44: "Channel unavailable",
    58: "Bearer cap. not available",
    102: "Recovery on timer expiry",
    127: "Interworking, unspecified",
}
"""Q.850 cause texts (Asterisk's names, a few shortened to fit the consultation's column)."""
REQUEST_EVENTS: Final = frozenset({"hanguprequest", "softhanguprequest", "hangup"})


def cause_code(value: str | None) -> int:
    """A Cause header as a number; 0 (unknown) for anything else."""
    try:
        code = int((value or "").strip())
    except ValueError:
        return 0
    return code if 0 <= code <= 127 else 0


def describe_cause(code: int) -> str:
    """"16 Normal Clearing": the number and its Q.850 text."""
    return f"{code} {Q850.get(code, 'Cause ' + str(code))}"[:32]


def hangup_party(*, dialplan_party: str | None, hangup_source: str | None,
                 caller_channel: str | None) -> str:
    """Who ended the call.

    The agent, once the dialplan saw the agent hang up first (the caller may then finish the
    survey); otherwise the caller, when their own channel hung up; otherwise the party the
    dialplan named where it ended the call (ivr, system); otherwise the system (an AMI hang-up,
    an Asterisk shutdown)."""
    if dialplan_party == "agent":
        return "agent"
    if hangup_source and caller_channel and hangup_source == caller_channel:
        return "caller"
    if dialplan_party in HANGUP_PARTIES:
        return dialplan_party
    return "system"


@dataclass
class _CallCauses:
    caller: int = 0
    """Last non-zero cause seen on the caller's own leg."""
    others: int = 0
    """Last non-zero cause seen on another leg of the call (the agent's)."""
    legs: set[str] = field(default_factory=set)


class HangupCauses:
    """Non-zero causes of the hang-up requests and hang-ups of each live call's legs, so the
    end of the call can be told with the real cause."""

    def __init__(self, limit: int = 5000) -> None:
        self._calls: dict[str, _CallCauses] = {}
        self._limit = limit

    def note(self, call_id: str, *, caller_leg: bool, cause: str | None) -> None:
        code = cause_code(cause)
        if not code:
            return
        if call_id not in self._calls and len(self._calls) >= self._limit:
            self._calls.pop(next(iter(self._calls)))
        causes = self._calls.setdefault(call_id, _CallCauses())
        if caller_leg:
            causes.caller = code
        else:
            causes.others = code

    def final(self, call_id: str, *, party: str, reported: str | None) -> str:
        """The call's cause as "<number> <text>", and forget the call. The agent's leg's
        cause for a call the agent ended; else the handler's own cause when Asterisk set one;
        else the cause of the caller leg's hang-up request."""
        causes = self._calls.pop(call_id, _CallCauses())
        code = cause_code(reported)
        if party == "agent" and causes.others:
            code = causes.others
        elif not code:
            code = causes.caller
        return describe_cause(code)
