"""Demo departments, categories, residents, cases and desk accounts, so a fresh install has
something to look up. Idempotent: records that exist (by their natural key) are left alone.

Demo accounts get a password only when one is given (``agent_password``): a well-known
default password would be a hole in every install that forgot to change it."""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from crm.agents.auth import hash_password
from crm.cases.numbers import make_case_number
from crm.categories import tree as category_tree
from crm.directory.csv_io import import_csv
from crm.knowledge.demo_articles import seed_demo_articles
from crm.storage.db import SessionFactory, open_database
from crm.storage.models import (
    Agent,
    Case,
    CaseCategory,
    CaseHistory,
    Department,
    Resident,
    ResidentPhone,
)

DEPARTMENTS = [
    ("housing", "住房保障科", "Housing Office", "주택보장과", "8001"),
    ("sanitation", "环境卫生所", "Sanitation Office", "환경위생소", "8002"),
    ("civil", "民政服务中心", "Civil Affairs Centre", "민정서비스센터", "8003"),
    # the departments of the category tree (crm/categories/data/categories.csv)
    ("construction", "住房城乡建设局", "Construction Bureau", "주택도시건설국", "8004"),
    ("water", "自来水公司", "Water Supply Company", "수도회사", "8005"),
    ("power", "供电公司", "Power Supply Company", "전력회사", "8006"),
    ("gas", "燃气公司", "Gas Company", "가스회사", "8007"),
    ("heating", "热力公司", "Heating Company", "열공급회사", "8008"),
    ("urban", "城市管理局", "Urban Management Bureau", "도시관리국", "8009"),
    ("transport", "交通运输局", "Transport Bureau", "교통운수국", "8010"),
    ("public_security", "公安局", "Public Security Bureau", "공안국", "8011"),
    ("market", "市场监督管理局", "Market Regulation Bureau", "시장감독관리국", "8012"),
    ("hrss", "人力资源和社会保障局", "Human Resources and Social Security Bureau",
     "인력자원사회보장국", "8013"),
    ("health", "卫生健康委员会", "Health Commission", "위생건강위원회", "8014"),
    ("education", "教育局", "Education Bureau", "교육국", "8015"),
    ("emergency", "应急管理局", "Emergency Management Bureau", "응급관리국", "8016"),
    ("street", "街道办事处", "Sub-district Office", "가도판사처", "8017"),
    ("environment", "生态环境局", "Ecology and Environment Bureau", "생태환경국", "8018"),
    ("service_centre", "政务服务中心", "Government Service Centre", "정무서비스센터", "8019"),
]
CATEGORIES = [
    ("repair", "房屋维修", 7, "housing"),
    ("garbage", "垃圾清运", 3, "sanitation"),
    ("subsidy", "补贴申领", 15, "civil"),
]
"""The first demo's flat categories, kept beside the tree (tests and examples name them)."""
RESIDENTS = [
    ("张三", "cmn", "幸福社区", "110101195003072316", ["13800138000"]),
    ("李秀英", "cmn", "和平街道", "110101194811201225", ["13900139000", "02512345678"]),
    ("John Smith", "en", "Riverside", "G12345678", ["13700137000"]),
    ("김민준", "ko", "Riverside", "M98765432", ["13600136000"]),
]
# (sequence, category, resident index, stage, description, address, days ago, latest update)
CASES = [
    (1, "repair", 0, "in_progress", "楼道灯不亮", "幸福社区3号楼2单元", 2,
     "维修人员已上门查看，更换灯具中"),
    (2, "garbage", 1, "resolved", "小区垃圾未及时清运", "和平街道8号院", 5, "已清运完毕"),
    (3, "subsidy", 2, "accepted", "Heating subsidy application", "Riverside 12", 0, None),
    (4, "repair", 3, "dispatched", "누수 수리 요청", "Riverside 7", 1, "주택보장과에 배정됨"),
]

# (login, display name, role, extension): the extensions are the default agent desk phones
AGENTS = [
    ("agent1", "王芳", "agent", "2001"),
    ("agent2", "Kim Jisoo", "agent", "2002"),
    ("supervisor1", "陈静", "supervisor", "2003"),
    ("admin", "系统管理员", "admin", None),
]
AGENT_LANGUAGES = {"agent1": ["cmn"], "agent2": ["cmn", "ko", "en"], "supervisor1": ["cmn", "en"],
                   "admin": ["cmn"]}
"""The languages each demo account speaks (language desks: their callers ring them first)."""


def id_number_hash(id_number: str, salt: str = "hotline-demo") -> str:
    return hashlib.sha256(f"{salt}:{id_number}".encode()).hexdigest()


async def seed_demo(url: str, *, today: date | None = None,
                    agent_password: str | None = None) -> int:
    today = today or datetime.now(UTC).date()
    password_hash = (await asyncio.to_thread(hash_password, agent_password)
                     if agent_password is not None else None)
    database = open_database(url)
    added = 0
    try:
        async with database.sessions() as session, session.begin():
            depts: dict[str, Department] = {}
            for code, name, name_en, name_ko, phone in DEPARTMENTS:
                d = await session.scalar(select(Department).where(Department.code == code))
                if d is None:
                    d = Department(code=code, name=name, name_en=name_en, name_ko=name_ko,
                                   phone=phone)
                    session.add(d)
                    added += 1
                depts[code] = d
            await session.flush()
            cats: dict[str, CaseCategory] = {}
            for code, name, days, dept in CATEGORIES:
                c = await session.scalar(select(CaseCategory).where(CaseCategory.code == code))
                if c is None:
                    c = CaseCategory(code=code, name=name, time_limit_days=days,
                                     department_id=depts[dept].id)
                    session.add(c)
                    added += 1
                cats[code] = c
            residents: list[Resident] = []
            for name, lang, community, id_number, phones in RESIDENTS:
                r = await session.scalar(select(Resident).join(ResidentPhone)
                                         .where(ResidentPhone.phone == phones[0]))
                if r is None:
                    r = Resident(name=name, preferred_language=lang, community=community,
                                 id_number_last4=id_number[-4:],
                                 id_number_hash=id_number_hash(id_number),
                                 phones=[ResidentPhone(phone=p) for p in phones])
                    session.add(r)
                    added += 1
                residents.append(r)
            await session.flush()
            for seq, cat, who, stage, desc, address, ago, update in CASES:
                number = make_case_number(today - timedelta(days=ago), seq)
                if await session.scalar(select(Case).where(Case.number == number)):
                    continue
                created = datetime.now(UTC) - timedelta(days=ago)
                category = cats[cat]
                resident = residents[who]
                case = Case(number=number, category_id=category.id, description=desc,
                            resident_id=resident.id, department_id=category.department_id,
                            contact_phone=resident.phones[0].phone, address=address,
                            stage=stage, created_at=created, updated_at=created,
                            deadline=created + timedelta(days=category.time_limit_days),
                            latest_update=update,
                            history=[CaseHistory(at=created, actor="demo", to_stage="accepted",
                                                 note="受理 accepted")])
                if stage != "accepted":
                    case.history.append(CaseHistory(at=created, actor="demo",
                                                    from_stage="accepted", to_stage=stage,
                                                    note=update))
                session.add(case)
                added += 1
            for login, display_name, role, extension in AGENTS:
                if await session.scalar(select(Agent.id).where(Agent.login == login)):
                    continue
                session.add(Agent(login=login, display_name=display_name, role=role,
                                  extension=extension, queues=["hotline"],
                                  languages=AGENT_LANGUAGES.get(login, ["cmn"]),
                                  password_hash=password_hash, active=True))
                added += 1
        added += await _seed_category_tree(database.sessions)
        added += await seed_demo_articles(database.sessions, today=today)
    finally:
        await database.close()
    return added


async def _seed_category_tree(sessions: SessionFactory) -> int:
    """The packaged tree (crm/categories/data/categories.csv), once."""
    async with sessions() as session:
        if await session.scalar(select(CaseCategory.id).where(CaseCategory.code == "010000")):
            return 0
    result = await import_csv(sessions, "categories", io.StringIO(category_tree.packaged_file()),
                              source="categories.csv")
    return result.created
