"""Need to know: which cases a person at the agent desk may read and change.

The rule, in one place (the desk's case routes ask :func:`check`; nothing else decides):

- Supervisors and admins may read every case and change any case's stage.
- An agent may READ a case tied to them:
  * they created it (its "accepted" history entry names them);
  * it is linked to the call on their desk, once they answered it (connected or wrap-up);
  * it is linked to a call they answered within ``RECENT_WINDOW`` (7 days);
  * it is a case of the caller on their line (answered call): the caller's number is its
    contact phone, the resident behind that number is its resident, or it is the case the
    caller asked the IVR about.
- An agent may CHANGE A CASE'S STAGE only while handling it: they created it, or it is linked
  to the call on their desk. Otherwise moving a case on is the department's (the open API's
  back-office systems) or a supervisor's act.
- An agent takes up a case a caller names by LINKING it to a call (the desk's link form, or a
  note on that case): only to the call they answered and still have on their desk, or to a call
  they answered within the window. Linking is audited.

Every fact comes from data the hotline already keeps: the case history, the consultations'
answering agent and start time, consultation-case links, residents' phones, and the desk hub's
live calls. A refusal is :class:`NeedToKnow` (HTTP 403, code ``need_to_know``) and is audited.

Open API tokens belong to back-office systems, not to agents: their scopes decide (see
crm.web.api.routes), this rule does not apply to them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import exists, false, literal, or_, select

from crm.agents.auth import has_role
from crm.audit import log as audit
from crm.errors import PermissionDenied
from crm.i18n.phrases import Phrase
from crm.storage.db import SessionFactory
from crm.storage.models import (
    Case,
    CaseHistory,
    Consultation,
    ConsultationCase,
    ResidentPhone,
    utcnow,
)

log = logging.getLogger(__name__)

RECENT_WINDOW = timedelta(days=7)
"""How long after answering a call an agent may still read (and link) that call's cases."""
WIDER_ROLE = "supervisor"
"""This role and those above it see every case."""
ANSWERED_PHASES = frozenset({"connected", "ended"})
"""Phases of a desk call after the agent answered it (ended: wrap-up)."""

Act = Literal["read", "change_stage"]


class NeedToKnow(PermissionDenied):
    code = "need_to_know"


@dataclass(frozen=True)
class Line:
    """The call on an agent's desk."""

    call_id: str
    phase: str
    """ringing, connected or ended (wrap-up)."""
    caller_number: str | None = None
    asked_case: str | None = None
    """The case the caller asked the IVR about (shown in the screen pop)."""

    @property
    def answered(self) -> bool:
        return self.phase in ANSWERED_PHASES


@dataclass(frozen=True)
class Viewer:
    """Who is asking, as the desk knows them."""

    agent_id: int
    login: str
    role: str
    line: Line | None = None

    @property
    def actor(self) -> str:
        return f"agent:{self.login}"


@dataclass(frozen=True)
class CaseTies:
    """What ties a case to a viewer (all False: nothing, or no such case)."""

    exists: bool = False
    created: bool = False
    on_current_call: bool = False
    on_recent_call: bool = False
    callers_case: bool = False

    def names(self) -> list[str]:
        return [name for name in ("created", "on_current_call", "on_recent_call",
                                  "callers_case") if getattr(self, name)]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    """Why it is allowed (the tie or the role), or a message saying why not (English)."""
    phrase: Phrase | None = None
    """Why not, for the reader (the desk shows it in the agent's language)."""

    @classmethod
    def refused(cls, why: Phrase) -> Decision:
        return cls(False, why.render(), why)


# -- the rule (pure) ----------------------------------------------------------------------------
def sees_every_case(role: str) -> bool:
    return has_role(role, WIDER_ROLE)


def may_read(role: str, ties: CaseTies) -> Decision:
    if sees_every_case(role):
        return Decision(True, role)
    names = ties.names()
    if names:
        return Decision(True, names[0])
    return Decision.refused(Phrase(
        "this case is not one of yours: it is not linked to the call you are on or to a call "
        "you answered in the last {days} days, you did not create it, and it is not a case of "
        "the caller on your line. Link it to the call you are on if the caller asks about "
        "it, or ask a supervisor", {"days": RECENT_WINDOW.days}))


def may_change_stage(role: str, ties: CaseTies) -> Decision:
    if sees_every_case(role):
        return Decision(True, role)
    if ties.created:
        return Decision(True, "created")
    if ties.on_current_call:
        return Decision(True, "on_current_call")
    return Decision.refused(Phrase(
        "only the agent handling a case (it is linked to the call they are on, or they "
        "created it), its department or a supervisor may change its stage. Link it to the "
        "call you are on first, or ask a supervisor"))


def decide(act: Act, role: str, ties: CaseTies) -> Decision:
    return may_read(role, ties) if act == "read" else may_change_stage(role, ties)


def answered_recently(started_at: datetime | None, ended_at: datetime | None, *,
                      now: datetime, window: timedelta = RECENT_WINDOW) -> bool:
    since = now - window
    return any(t is not None and t >= since for t in (started_at, ended_at))


def may_link(viewer: Viewer, call_id: str, *, answered_by_viewer: bool,
             started_at: datetime | None, ended_at: datetime | None,
             now: datetime | None = None, window: timedelta = RECENT_WINDOW) -> Decision:
    """May the viewer link a case to this call (which is theirs: on their desk, or answered
    by them)? The live call once answered, or a call they answered within the window."""
    if sees_every_case(viewer.role):
        return Decision(True, viewer.role)
    line = viewer.line
    if line is not None and line.call_id == call_id:
        if line.answered:
            return Decision(True, "on_current_call")
        return Decision.refused(Phrase("answer the call before linking cases to it"))
    if answered_by_viewer and answered_recently(started_at, ended_at, now=now or utcnow(),
                                                window=window):
        return Decision(True, "on_recent_call")
    return Decision.refused(Phrase("cases can be linked only to the call you are on or to a "
                                   "call you answered in the last {days} days",
                                   {"days": window.days}))


# -- the one query ------------------------------------------------------------------------------
async def case_ties(sessions: SessionFactory, number: str, viewer: Viewer, *,
                    now: datetime | None = None,
                    window: timedelta = RECENT_WINDOW) -> CaseTies:
    """Everything that ties case ``number`` to ``viewer``, in one statement."""
    since = (now or utcnow()) - window
    line = viewer.line if viewer.line is not None and viewer.line.answered else None
    created = exists().where(CaseHistory.case_id == Case.id,
                             CaseHistory.from_stage.is_(None),
                             CaseHistory.to_stage == "accepted",
                             CaseHistory.actor == viewer.actor).correlate(Case)
    linked = (select(ConsultationCase.case_id)
              .join(Consultation, Consultation.id == ConsultationCase.consultation_id)
              .where(ConsultationCase.case_id == Case.id).correlate(Case))
    on_current = (linked.where(Consultation.call_id == line.call_id).exists()
                  if line is not None else false())
    on_recent = linked.where(Consultation.agent_id == viewer.agent_id,
                             or_(Consultation.started_at >= since,
                                 Consultation.ended_at >= since)).exists()
    callers: Any = false()
    if line is not None and line.caller_number:
        callers = or_(Case.contact_phone == line.caller_number,
                      Case.resident_id.in_(select(ResidentPhone.resident_id)
                                           .where(ResidentPhone.phone == line.caller_number)))
    if line is not None and line.asked_case:
        callers = or_(callers, Case.number == line.asked_case)
    query = select(literal(True), created, on_current, on_recent, callers).where(
        Case.number == number)
    async with sessions() as session:
        row = (await session.execute(query)).first()
    if row is None:
        return CaseTies()
    return CaseTies(True, *(bool(v) for v in row[1:]))


async def check(sessions: SessionFactory, number: str, viewer: Viewer, act: Act, *,
                via: str, audit_origin: dict[str, Any] | None = None,
                now: datetime | None = None) -> Decision:
    """Allow ``act`` on case ``number`` or raise :class:`NeedToKnow` (audited). A case that
    does not exist is refused like one that is not the viewer's, so agents cannot probe for
    numbers; to supervisors it is a 404 later. ``audit_origin`` are the audit log's extra
    fields for where the request came from (source address, session)."""
    if sees_every_case(viewer.role):
        return Decision(True, viewer.role)
    ties = await case_ties(sessions, number, viewer, now=now)
    decision = decide(act, viewer.role, ties)
    if not decision.allowed:
        log.info("case %s: %s refused to %s (%s)", number, act, viewer.actor, via)
        await audit.write(sessions, actor=viewer.actor, action="case.access_denied",
                          object_type="case", object_id=number,
                          detail={"wanted": act, "via": via, "ties": ties.names()},
                          **(audit_origin or {}))
        raise NeedToKnow(decision.phrase or decision.reason,
                         details={"case": number, "wanted": act})
    return decision
