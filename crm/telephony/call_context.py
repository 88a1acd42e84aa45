"""Which call the code running now works for: a context variable, set where a call's work
starts (the media server's connection, the trackers' AMI events, the bus's delivery of a call
event), so that every log line written meanwhile carries the call id (``hotline/logs.py``)
without passing it down. asyncio copies it into the tasks started meanwhile."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from uuid import UUID

CALL_ID: ContextVar[str | None] = ContextVar("hotline_call_id", default=None)


def current_call_id() -> str | None:
    return CALL_ID.get()


def enter_call(call_id: str | UUID) -> None:
    """For the rest of this task (and the tasks it starts): working for ``call_id``."""
    CALL_ID.set(str(call_id))


@contextlib.contextmanager
def call_context(call_id: str | UUID | None) -> Iterator[None]:
    """Working for ``call_id`` inside the block (None or "": the surrounding call, if any)."""
    if not call_id:
        yield
        return
    token = CALL_ID.set(str(call_id))
    try:
        yield
    finally:
        CALL_ID.reset(token)
