"""The dashboard's knowledge-base figure: the share of calls in a report's period that an
agent answered from the knowledge base ("answered from article N" on the consultation)."""

from __future__ import annotations

from datetime import tzinfo

from crm.knowledge.service import AnsweredShare, answered_share
from crm.reports.satisfaction import ReportFilter
from crm.storage.db import SessionFactory


async def knowledge_share(sessions: SessionFactory, f: ReportFilter, tz: tzinfo
                          ) -> AnsweredShare:
    """Calls that started on the filter's local days, and how many were answered from an
    article."""
    since, until = f.bounds(tz)
    return await answered_share(sessions, since, until)
