"""What a survey call asks of the CRM, in one object the composition root hands to the IVR.

The IVR's survey driver (``ivr/survey_call.py``) never sees the database: it calls these
methods, and a database that is down reaches it as ``crm.errors.RecordsUnavailable``, the
one error it handles (no survey offered, or the write kept for later).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from crm.cases.lookup import resident_language
from crm.errors import RecordsUnavailable
from crm.storage.db import DATABASE_DOWN, SessionFactory
from crm.surveys import service as surveys
from crm.surveys.return_visits import RetryPolicy, ReturnVisitView, get_return_visit
from crm.surveys.service import SurveyView
from crm.surveys.writes import apply_survey_write

T = TypeVar("T")


async def _reached(what: str, call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except DATABASE_DOWN as exc:
        raise RecordsUnavailable(f"{what}: the database is unavailable ({exc})") from exc


class SurveyStore:
    """Surveys, return visits and callers' languages, over the CRM's database."""

    def __init__(self, sessions: SessionFactory, policy: RetryPolicy) -> None:
        self._sessions = sessions
        self.policy = policy

    async def start(self, *, kind: str, survey_call_id: str, call_id: str | None,
                    phone: str | None, language: str | None, agent_interface: str | None,
                    return_visit_id: int | None) -> SurveyView:
        return await _reached("start a survey", lambda: surveys.start_survey(
            self._sessions, kind=kind, survey_call_id=survey_call_id, call_id=call_id,
            phone=phone, language=language, agent_interface=agent_interface,
            return_visit_id=return_visit_id))

    async def write(self, op: str, survey_id: int, **fields: Any) -> SurveyView:
        """One survey write by name (rating, comment, finish, ...; see crm.surveys.writes)."""
        return await _reached(f"survey {survey_id}: {op}", lambda: apply_survey_write(
            self._sessions, op, survey_id, policy=self.policy, **fields))

    async def return_visit(self, visit_id: int) -> ReturnVisitView | None:
        return await _reached("read a return visit",
                              lambda: get_return_visit(self._sessions, visit_id))

    async def surveyed_recently(self, phone: str | None, *, days: int) -> bool:
        return await _reached("check survey fatigue", lambda: surveys.surveyed_recently(
            self._sessions, phone, days=days))

    async def caller_language(self, call_id: str | None, phone: str | None) -> str | None:
        """The language the caller heard during ``call_id``, else the resident's own."""
        async def find() -> str | None:
            return (await surveys.call_language(self._sessions, call_id)
                    or await resident_language(self._sessions, phone))
        return await _reached("find the caller's language", find)
