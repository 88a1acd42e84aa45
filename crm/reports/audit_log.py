"""Searching the audit log: who read or changed residents' data, by date range, actor,
action and object (for admins, in the supervisor console)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import select

from crm.i18n.catalogs import LOCALE_NAMES
from crm.i18n.labels import LABELS
from crm.reports.satisfaction import PAGE_SIZE, ReportFilter, checked_text, page_number
from crm.storage.db import SessionFactory
from crm.storage.models import AuditLog

_AUDIT_TEXT = re.compile(r"[\w.:@/-]{1,128}")


@dataclass(frozen=True)
class AuditFilter:
    since: date
    until: date
    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    page: int = 1

    FIELDS = ("since", "until", "actor", "action", "object_type", "object_id")

    @classmethod
    def from_query(cls, query: Mapping[str, str], *, today: date) -> AuditFilter:
        dates = ReportFilter.from_query(
            {k: v for k, v in query.items() if k in ("since", "until")}, today=today,
            default_days=7)
        return cls(dates.since, dates.until,
                   **{name: checked_text(query.get(name), _AUDIT_TEXT, name)
                      for name in ("actor", "action", "object_type", "object_id")},
                   page=page_number(query.get("page")))

    def query(self, **changes: Any) -> dict[str, str]:
        values = replace(self, **changes) if changes else self
        params = {name: str(getattr(values, name)) for name in self.FIELDS
                  if getattr(values, name) not in (None, "")}
        if values.page > 1:
            params["page"] = str(values.page)
        return params


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    detail: dict[str, Any]


CSV_AUDIT_COLUMNS = ("id", "at", "actor", "action", "object_type", "object_id", "detail")


async def audit_entries(sessions: SessionFactory, f: AuditFilter, tz: tzinfo, *,
                        limit: int = PAGE_SIZE) -> list[AuditRow]:
    """Newest first. ``actor`` matches a whole actor (agent:chen) or its kind (agent:)."""
    start = datetime.combine(f.since, time(0), tz).astimezone(UTC)
    end = datetime.combine(f.until + timedelta(days=1), time(0), tz).astimezone(UTC)
    query = select(AuditLog).where(AuditLog.at >= start, AuditLog.at < end)
    if f.actor:
        query = query.where(AuditLog.actor.startswith(f.actor, autoescape=True)
                            if f.actor.endswith(":") else AuditLog.actor == f.actor)
    if f.action:
        query = query.where(AuditLog.action == f.action)
    if f.object_type:
        query = query.where(AuditLog.object_type == f.object_type)
    if f.object_id:
        query = query.where(AuditLog.object_id == f.object_id)
    query = (query.order_by(AuditLog.id.desc()).limit(limit).offset((f.page - 1) * limit))
    async with sessions() as session:
        return [AuditRow(a.id, a.at.astimezone(tz), a.actor, a.action, a.object_type,
                         a.object_id, a.detail or {})
                for a in (await session.scalars(query)).all()]


def actor_parts(actor: str) -> tuple[str, str]:
    """(the kind of actor, a code of the "audit_actor" labels; who, as recorded): a page
    names the kind in the reader's language and shows who as data ("agent:chen" ->
    ("agent", "chen"); "system:reminders" -> ("system:reminders", ""))."""
    if actor in LABELS["audit_actor"]:
        return actor, ""
    kind, colon, who = actor.partition(":")
    return (kind, who) if colon else ("", actor)


_VALUE_KINDS = {"via": "audit_via", "changed": "audit_detail", "removed": "audit_detail",
                "stage": "stage", "stages": "stage", "role": "role", "status": "audit_status",
                "department": "department"}
"""Detail keys whose values are codes, and the label kind that names them ("department":
the caller's ``label`` names departments from the directory)."""
HIDDEN = frozenset({"call_id"})
"""Detail keys a reader does not need (the call's internal id: the record's number is
shown); the CSV export keeps every key."""


def detail_pairs(detail: Mapping[str, Any],
                 label: Callable[[str, str], str] = lambda kind, code: code
                 ) -> list[tuple[str, str]]:
    """A detail as a reader reads it: (key, value) pairs in key order, keys named by
    ``label`` ("audit_detail" kind) and values that are codes named too; other values (case
    numbers, titles, logins, counts) are shown as recorded."""

    def text(key: str, value: Any) -> str:
        if isinstance(value, Mapping):
            return "; ".join(f"{label('audit_detail', k)}={text(k, v)}"
                             for k, v in sorted(value.items()))
        if isinstance(value, list | tuple):
            return ", ".join(text(key, v) for v in value)
        if value is None:
            return ""
        if key == "locale":
            return LOCALE_NAMES.get(str(value), str(value))
        kind = _VALUE_KINDS.get(key)
        return label(kind, str(value)) if kind else str(value)

    return [(label("audit_detail", key), text(key, detail[key]))
            for key in sorted(detail) if key not in HIDDEN]
