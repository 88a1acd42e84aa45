"""How the CRM has a missed caller called back: through a callback dialer the composition
root hands in (ivr.asterisk.callback_dialer.AmiCallbackDialer, over AMI). The CRM keeps the
requests and their rules (crm.callbacks); the dialer places one callback call and says how
it went."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

CallbackOrder = Literal["agent_first", "resident_first"]
CALLBACK_CONTEXTS = ("hotline-callback-slot", "hotline-callback-resident")
"""The dialplan contexts callback calls run in (dialplans/hotline.conf.j2)."""


def is_callback_channel(channel: str | None) -> bool:
    """A channel of a callback call the hotline placed (Local/<id>@hotline-callback-slot-...),
    known as such even by a service started after it was placed."""
    return bool(channel) and any(f"@{c}-" in str(channel) for c in CALLBACK_CONTEXTS)


@dataclass(frozen=True)
class CallbackJob:
    """One callback call to place."""

    request_id: int
    call_id: str
    """The callback call's own CALL_ID (its consultation)."""
    number: str
    """The resident's number (digits, checked by the CRM)."""
    queue: str
    """The queue the caller waited in."""
    arrival: datetime
    """When the caller first joined the queue (or asked for the callback): its place."""
    attempt: int
    order: CallbackOrder = "agent_first"
    wait_s: float | None = None
    """At most this long in the queue (the calling hours end); None: the dialer's own limit."""
    penalty: int | None = None
    """An assigned callback: ``queue`` is the assigned-callbacks queue and only the member
    with this penalty (the agent's id) is offered it. None: any agent of ``queue``."""


@dataclass(frozen=True)
class CallbackResult:
    outcome: str | None
    """reached, no_answer, busy or failed when the resident was dialled; None when the
    callback left the queue before an agent took it (withdrawn, timed out, Asterisk gone)."""
    detail: str = ""
    timed_out: bool = False
    """It left the queue because its wait ran out (Queue() TIMEOUT), not withdrawn."""


Placed = Callable[[int | None], Awaitable[None]]
"""Told the queue position the callback joined at (None: not known), once it is placed."""


Report = Callable[[int, str, CallbackResult], Awaitable[None]]
"""How a callback call the dialer is not waiting for went (request id, call id, result): a
call placed before the service restarted."""


class CallbackDialer(Protocol):
    async def call_back(self, job: CallbackJob, placed: Placed) -> CallbackResult:
        """Place ``job``'s callback so that it keeps its arrival place in the queue; returns
        once the call is over. Cancelling the call withdraws the callback from the queue
        (or hangs it up)."""
        ...

    async def live_callbacks(self, arrivals: dict[int, datetime]) -> set[int]:
        """Of these requests (id -> arrival), those whose callback call is still up (placed
        before a restart of the service): they keep their place; their outcome comes to the
        ``on_report`` handler."""
        ...

    async def withdraw(self, request_id: int) -> None:
        """Take a request's callback out of the queue (one placed before a restart)."""
        ...

    on_report: Report | None
