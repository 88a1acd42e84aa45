"""What the agent desk asks of the telephone side: its phone in the agent queue (join, leave,
pause) and blind transfers of the caller. The composition root hands in an implementation
(ivr.asterisk.queue_control.QueueControl, over AMI); the CRM never talks to Asterisk itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from crm.errors import Conflict, HotlineError, InvalidInput

_EXTEN = re.compile(r"[0-9]{2,16}")


class TelephonyUnavailable(HotlineError):
    """Asterisk could not be asked (AMI down, no answer in time)."""

    code = "telephony_unavailable"


class TelephonyRefused(Conflict):
    """Asterisk answered the action with an error (e.g. the channel is gone)."""

    code = "telephony_refused"


def interface_for(extension: str) -> str:
    """The queue member of an agent's desk phone."""
    if not _EXTEN.fullmatch(extension or ""):
        raise InvalidInput(f"extension {extension!r} must be 2-16 digits")
    return f"PJSIP/{extension}"


SPEAKER_PENALTY = 0
"""Queue penalty of an agent in the queue of a language they speak: offered such calls first."""
OTHER_PENALTY = 1
"""Penalty in the other queues: offered the call once the caller waited for the language
fallback (queuerules.conf ``hotline-language`` raises the caller's limit to this)."""


def member_penalties(queues: Mapping[str, str], speaks: Sequence[str]) -> dict[str, int]:
    """Queue -> the penalty an agent who speaks ``speaks`` joins it with."""
    return {queue: SPEAKER_PENALTY if lang in speaks else OTHER_PENALTY
            for lang, queue in queues.items()}


class AgentQueue(Protocol):
    """The agent queue as the desk uses it; members are queue interfaces (:func:`interface_for`)."""

    async def join(self, interface: str, member_name: str,
                   languages: Sequence[str] = (), *, agent_id: int | None = None) -> None:
        """Put the desk phone in every hotline queue, unpaused (a member already: just
        unpause); queues of the ``languages`` the agent speaks offer it their calls first.
        With ``agent_id``, also in the assigned-callbacks queue
        (``crm.settings.assigned_queue``), with that id as penalty."""
        ...

    async def leave(self, interface: str) -> None:
        """Take the desk phone out of every hotline queue (not a member: nothing to do)."""
        ...

    async def pause(self, interface: str, paused: bool, reason: str = "") -> None: ...

    async def blind_transfer(self, caller_channel: str, number: str) -> None:
        """Send the caller on ``caller_channel`` to ``number``; the agent's leg is released."""
        ...
