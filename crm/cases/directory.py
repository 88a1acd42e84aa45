"""What the IVR's menu call asks of the CRM about cases, in one object the composition root
hands to it: the caller's language, a case's status, the resident's urge (催办), and the
guard against guessing. The IVR never sees the database behind it."""

from __future__ import annotations

from crm.cases import dispatch
from crm.cases.lookup import CaseStatus, LookupGuard, find_case_status, resident_language
from crm.storage.db import SessionFactory


class CaseDirectory:
    def __init__(self, sessions: SessionFactory, guard: LookupGuard | None = None) -> None:
        self._sessions = sessions
        self.guard = guard if guard is not None else LookupGuard(sessions)
        """Failed lookups and verifications per calling number and per case."""

    async def caller_language(self, phone: str | None) -> str | None:
        """The language a known resident calling from ``phone`` speaks."""
        return await resident_language(self._sessions, phone)

    async def case_status(self, number: str, language: str) -> CaseStatus | None:
        """The case ``number`` as the IVR reads it out in ``language`` (None: no such case)."""
        return await find_case_status(self._sessions, number, language)

    async def urge(self, number: str, channel: str) -> int:
        """Record that the caller wants case ``number`` hurried (催办); how often it has been
        urged in all."""
        return await dispatch.urge(self._sessions, number, channel=channel)
