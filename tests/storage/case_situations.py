"""Cases in every relation the need-to-know rule knows (crm.cases.access), built from real call
events and desk actions over a real database, for the role matrix and the two-agent tests.

``EXPECTED`` is the rule written out as a table, by hand: what an agent may do with a case in
each relation. Supervisors and admins may do everything with every case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from crm.cases import service as cases
from crm.consultations.recorder import apply_event
from crm.consultations.service import link_case
from crm.live.desk_hub import DeskHub
from crm.storage.db import SessionFactory
from crm.storage.models import Consultation, utcnow
from crm.telephony.events import AgentAnswered, CallStarted

CALLER = "13500135000"
"""The caller on the agent's line (no resident on file)."""
ELSEWHERE = "13300133000"
"""The contact phone of every case that is not the caller's."""

EXPECTED: dict[str, tuple[bool, bool]] = {
    # relation of the case to the agent: (may read it, may change its stage)
    "none": (False, False),
    "created": (True, True),
    "on_current_call": (True, True),
    "callers_case": (True, False),
    "on_recent_call": (True, False),
    "on_old_call": (False, False),
    "other_agents_call": (False, False),
}


@dataclass(frozen=True)
class Situations:
    numbers: dict[str, str]
    """relation -> the number of a case in that relation to the agent."""
    live_call: str


async def _answered_call(sessions: SessionFactory, call_id: str, extension: str, *,
                         caller: str, ago: timedelta) -> None:
    at = utcnow() - ago
    async with sessions() as session, session.begin():
        await apply_event(session, CallStarted(call_id, caller, "来电人", at=at))
        await apply_event(session, AgentAnswered(call_id, "hotline", f"PJSIP/{extension}",
                                                 extension, caller_number=caller, at=at))


async def _consultation_id(sessions: SessionFactory, call_id: str) -> int:
    async with sessions() as session:
        found = await session.scalar(select(Consultation.id)
                                     .where(Consultation.call_id == call_id))
    assert found is not None, call_id
    return found


async def build_situations(sessions: SessionFactory, hub: DeskHub, *, login: str,
                           extension: str, other_extension: str,
                           prefix: str = "") -> Situations:
    """A case per relation of ``EXPECTED`` for the agent ``login`` at desk phone
    ``extension``; that agent's desk (signed in) ends up connected to a call from CALLER."""
    numbers: dict[str, str] = {}
    for relation in EXPECTED:
        actor = f"agent:{login}" if relation == "created" else "token:setup"
        phone = CALLER if relation == "callers_case" else ELSEWHERE
        view = await cases.create_case(sessions, category="repair",
                                       description=f"{relation} 测试", actor=actor,
                                       contact_phone=phone)
        numbers[relation] = view.number
    calls = {"on_current_call": (f"{prefix}live", extension, timedelta(minutes=1)),
             "on_recent_call": (f"{prefix}recent", extension, timedelta(days=2)),
             "on_old_call": (f"{prefix}old", extension, timedelta(days=8)),
             "other_agents_call": (f"{prefix}other", other_extension, timedelta(hours=1))}
    for relation, (call_id, ext, ago) in calls.items():
        await _answered_call(sessions, call_id, ext, caller=CALLER if ext == extension
                             else ELSEWHERE, ago=ago)
        await link_case(sessions, await _consultation_id(sessions, call_id),
                        numbers[relation], actor="agent:setup")
    live = calls["on_current_call"][0]
    await hub.handle(AgentAnswered(live, "hotline", f"PJSIP/{extension}", extension,
                                   caller_number=CALLER, caller_name="来电人"))
    desk = hub.desk(login)
    assert desk is not None, f"{login} must be signed in at the desk"
    await hub.wait_for(lambda: desk.call is not None and desk.call.call_id == live
                       and desk.call.phase == "connected", 5)
    return Situations(numbers, live)
