"""Tables of the callbacks beside ``callback_requests`` (crm.storage.models), registered on
the one metadata (crm.storage.models.Base).

``callback_decisions``: which call's decision (``<call id>:<reason>``) made or merged into
which request, written in the same transaction as the request. A decision taken again (the
watcher handed the same call event a second time: a new control after a takeover re-reads
the events the old one had not acknowledged) finds its row and changes nothing: no second
request, no second merge counted (crm.callbacks.service.request_callback).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from crm.storage.models import Base, UtcDateTime, utcnow


class CallbackDecision(Base):
    __tablename__ = "callback_decisions"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    """``<call id>:<reason>`` (call ids are at most 64 characters, reasons 32)."""
    request_id: Mapped[int] = mapped_column(
        ForeignKey("callback_requests.id", ondelete="CASCADE",
                   name="fk_callback_decisions_request_id_callback_requests"), index=True)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def decision_key(call_id: str, reason: str) -> str:
    return f"{call_id}:{reason}"
