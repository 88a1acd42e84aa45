"""Satisfaction surveys seeded through the survey service (crm.surveys.service), with what the
console must report about them. Used by the storage tests and the browser test.

Six calls over the last three local days, each answered by an agent, about a demo case or
none, and surveyed; one caller hung up before rating:

    day-2 12:00  agent1 repair/housing      5
    day-2 13:00  agent1 garbage/sanitation  4
    day-1 12:00  agent2 repair/housing      1   (follow-up)
    day-1 13:00  agent2 no case             2   (follow-up)
    today 09:00  agent1 subsidy/civil       3
    today 09:30  agent1 repair/housing      5
    today 10:00  agent2 no case             not rated
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from sqlalchemy import select

from crm.consultations.recorder import apply_event
from crm.consultations.service import link_case, update_consultation
from crm.storage.db import SessionFactory
from crm.storage.models import Case, CaseCategory, Consultation
from crm.surveys.service import finish_survey, record_rating, start_survey
from crm.telephony.events import AgentAnswered, CallEnded, CallStarted, CallStep
from crm.telephony.steps import RouteChosen

CALLER, CALLER_NAME = "13800138000", "张三"
EXTENSIONS = {"agent1": "2001", "agent2": "2002"}
# (days ago, local time, agent, case category or None, score or None)
SEED = [
    (2, time(12, 0), "agent1", "repair", 5),
    (2, time(13, 0), "agent1", "garbage", 4),
    (1, time(12, 0), "agent2", "repair", 1),
    (1, time(13, 0), "agent2", None, 2),
    (0, time(9, 0), "agent1", "subsidy", 3),
    (0, time(9, 30), "agent1", "repair", 5),
    (0, time(10, 0), "agent2", None, None),
]


# What the console must show for the default range (the last 30 days):
OFFERED, RATED = 7, 6
DISTRIBUTION = {1: 1, 2: 1, 3: 1, 4: 1, 5: 2}
PER_AGENT = {"agent1": (4, 4.25, 0), "agent2": (2, 1.5, 2)}  # count, average, low
PER_DEPARTMENT = {"housing": (3, 3.67, 1), "sanitation": (1, 4.0, 0), "civil": (1, 3.0, 0),
                  "": (1, 2.0, 1)}
PER_CATEGORY = {"repair": (3, 3.67, 1), "garbage": (1, 4.0, 0), "subsidy": (1, 3.0, 0),
                "": (1, 2.0, 1)}


@dataclass
class Seeded:
    today: date
    consultations: list[int] = field(default_factory=list)
    surveys: list[int] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)

    def trend(self) -> dict[str, tuple[int, float]]:
        """Local day -> (scores, average)."""
        day = self.today
        return {(day - timedelta(days=2)).isoformat(): (2, 4.5),
                (day - timedelta(days=1)).isoformat(): (2, 1.5),
                day.isoformat(): (2, 4.0)}


async def _case_of(sessions: SessionFactory, category: str) -> str:
    async with sessions() as session:
        return str(await session.scalar(
            select(Case.number).join(CaseCategory).where(CaseCategory.code == category)
            .order_by(Case.id).limit(1)))


async def seed_surveys(sessions: SessionFactory, tz: tzinfo, *,
                       today: date | None = None) -> Seeded:
    """Needs the demo data (crm.demo_data.seed_demo)."""
    today = today or datetime.now(tz).date()
    seeded = Seeded(today)
    for ago, at_time, agent, category, score in SEED:
        at = datetime.combine(today - timedelta(days=ago), at_time, tz)
        call_id = str(uuid.uuid4())
        extension = EXTENSIONS[agent]
        async with sessions() as session, session.begin():
            await apply_event(session, CallStarted(call_id, CALLER, CALLER_NAME,
                                                   "PJSIP/gw-0001", at=at))
            await apply_event(session, CallStep(call_id, RouteChosen("agent"),
                                                at=at + timedelta(seconds=20)))
            await apply_event(session, AgentAnswered(
                call_id, "hotline", f"PJSIP/{extension}", extension, None, CALLER,
                CALLER_NAME, hold_time_s=8, at=at + timedelta(seconds=30)))
            await apply_event(session, CallEnded(call_id, "agent", "16",
                                                 at=at + timedelta(seconds=200)))
        async with sessions() as session:
            consultation_id = int(await session.scalar(
                select(Consultation.id).where(Consultation.call_id == call_id)))
        await update_consultation(sessions, consultation_id, actor=f"agent:{agent}",
                                  notes=f"来电咨询 <b>{category or '其他'}</b>")
        if category:
            await link_case(sessions, consultation_id, await _case_of(sessions, category),
                            actor=f"agent:{agent}")
        survey = await start_survey(sessions, kind="after_call", survey_call_id=str(uuid.uuid4()),
                                    call_id=call_id, phone=CALLER, language="cmn",
                                    agent_interface=f"PJSIP/{extension}",
                                    now=at + timedelta(seconds=201))
        if score is not None:
            await record_rating(sessions, survey.id, score, by="keys",
                                now=at + timedelta(seconds=210))
        await finish_survey(sessions, survey.id, now=at + timedelta(seconds=220))
        seeded.consultations.append(consultation_id)
        seeded.surveys.append(survey.id)
        seeded.call_ids.append(call_id)
    return seeded
