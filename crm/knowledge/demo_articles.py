"""Demo articles of the knowledge base, the questions a community hotline hears most."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from crm.knowledge.models import KnowledgeArticle
from crm.knowledge.service import ArticleInput, create_article
from crm.storage.db import SessionFactory

# (category, department, IVR key, title, text, {language: spoken answer}, review in days)
ARTICLES: list[tuple[str, str, str | None, str, str, dict[str, str], int]] = [
    ("garbage", "sanitation", "1", "生活垃圾分类投放时间",
     "本社区生活垃圾定时定点投放：每天早上7点至9点、晚上6点至8点在小区垃圾分类投放点投放。"
     "厨余垃圾请沥干水分后破袋投放；可回收物可随时投放到可回收物箱；有害垃圾（电池、灯管、"
     "过期药品）投放到有害垃圾箱。大件垃圾和装修垃圾请提前一天预约清运。",
     {"cmn": "生活垃圾每天早上七点到九点、晚上六点到八点在小区投放点分类投放。大件和装修垃圾"
             "请提前一天预约清运。",
      "en": "Household waste is sorted and dropped off at the estate's points from 7 to 9 in "
            "the morning and 6 to 8 in the evening. Book bulky waste a day ahead.",
      "ko": "쓰레기 버리는 시간은 매일 아침 일곱 시부터 아홉 시, "
            "저녁 여섯 시부터 여덟 시까지입니다. 분리 배출해 주세요."},
     180),
    ("repair", "housing", "2", "计划停水通知及临时供水",
     "因供水管网维修，计划停水会提前24小时在小区公告栏和社区公众号通知。停水期间社区在"
     "小区东门设置临时供水点。恢复供水后如水质浑浊，请先放水几分钟。非计划停水或水管爆裂"
     "请拨打供水公司抢修电话，或由热线转派处理。",
     {"cmn": "计划停水会提前二十四小时在公告栏通知，停水期间东门有临时供水点。突发停水或水管"
             "爆裂请转人工报修。",
      "en": "Planned water outages are announced 24 hours ahead; a temporary water point is at "
            "the east gate.",
      "ko": "수돗물 계획 단수는 스물네 시간 전에 공지하며, "
            "단수 중에는 동문에 임시 급수소가 있습니다."},
     90),
    ("subsidy", "civil", "3", "高龄津贴申请材料",
     "年满80周岁的本市户籍老人可申请高龄津贴。申请材料：身份证、户口簿、本人银行卡复印件、"
     "一寸照片一张。由本人或家属到社区民政服务中心办事大厅提交，也可在一网通办线上申请。"
     "审核时间为15个工作日，津贴按月发放到银行卡。",
     {"cmn": "高龄津贴申请需要身份证、户口簿、银行卡复印件和一寸照片，到社区民政服务中心提交，"
             "十五个工作日内审核。",
      "en": "For the old-age allowance bring your ID card, household register, a copy of your "
            "bank card and a photo to the civil affairs centre.",
      "ko": "고령 수당 신청에는 신분증, 호구부, 은행 카드 사본, 사진 한 장이 필요합니다."},
     365),
    ("subsidy", "civil", None, "最低生活保障（低保）申请条件",
     "家庭人均月收入低于本市最低生活保障标准、且家庭财产符合规定的居民可申请低保。需要提供"
     "全体家庭成员的身份证、户口簿、收入证明和财产申报表，由社区初审后报街道审核。",
     {"cmn": "家庭人均收入低于本市标准的居民可以申请低保，请带全家身份证、户口簿和收入证明到"
             "社区初审。"},
     365),
    ("repair", "housing", None, "楼道灯和公共设施报修",
     "楼道灯不亮、单元门禁损坏、电梯故障等公共设施问题，可以通过热线报修，物业公司在24小时内"
     "上门维修。电梯困人请立即拨打电梯内的紧急电话。",
     {"cmn": "楼道灯、门禁和电梯等公共设施坏了可以报修，物业二十四小时内上门维修。"},
     -10),
]
"""The last article's review date has passed: the console flags it."""


async def seed_demo_articles(sessions: SessionFactory, *, today: date) -> int:
    """Adds the demo articles that are not there yet (by title); returns how many."""
    added = 0
    for category, department, key, title, body, answers, review_in in ARTICLES:
        async with sessions() as session:
            if await session.scalar(select(KnowledgeArticle.id)
                                    .where(KnowledgeArticle.title == title)):
                continue
        await create_article(sessions, ArticleInput(
            title, body, today + timedelta(days=review_in), answers, category, department, key),
            actor="demo")
        added += 1
    return added
