"""The audit log: who read or changed residents' data, and when.

``record`` adds an entry to the caller's session so it commits (or rolls back) together with
the change it describes; ``write`` is for reads, which have no transaction of their own.
Entries made for a web request carry where it came from: ``source`` (the client's address as
the web server saw it) and ``web_session`` (the public id of the desk or console session, see
crm.web.session.audit_origin; never the cookie's secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.storage.db import SessionFactory
from crm.storage.models import AuditLog, utcnow

SOURCE_LENGTH = 64


def record(session: AsyncSession, *, actor: str, action: str, object_type: str,
           object_id: str | int | None = None, detail: dict[str, Any] | None = None,
           at: datetime | None = None, source: str | None = None,
           web_session: str | None = None) -> None:
    """``at`` is when it happened, for entries written behind (default: now)."""
    session.add(AuditLog(at=at or utcnow(), actor=actor, action=action, object_type=object_type,
                         object_id=None if object_id is None else str(object_id),
                         detail=detail or {},
                         source_address=source[:SOURCE_LENGTH] if source else None,
                         web_session_id=web_session[:SOURCE_LENGTH] if web_session else None))


async def write(sessions: SessionFactory, *, actor: str, action: str, object_type: str,
                object_id: str | int | None = None, detail: dict[str, Any] | None = None,
                source: str | None = None, web_session: str | None = None) -> None:
    async with sessions() as session, session.begin():
        record(session, actor=actor, action=action, object_type=object_type,
               object_id=object_id, detail=detail, source=source, web_session=web_session)


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    detail: dict[str, Any]
    source: str | None = None
    web_session: str | None = None


async def entries(sessions: SessionFactory, *, object_type: str | None = None,
                  object_id: str | int | None = None, limit: int = 100) -> list[AuditEntry]:
    """Newest first."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if object_type is not None:
        query = query.where(AuditLog.object_type == object_type)
    if object_id is not None:
        query = query.where(AuditLog.object_id == str(object_id))
    async with sessions() as session:
        rows = (await session.scalars(query)).all()
    return [AuditEntry(r.at, r.actor, r.action, r.object_type, r.object_id, r.detail,
                       r.source_address, r.web_session_id)
            for r in rows]
