"""The console's report pages for a user who chose English (POST /console/locale): the
wallboard, the satisfaction and service-level dashboards, the lists of surveys, calls and
follow-ups, a call's record and a resident's, with the demo data. Each page is in English:
its interface words are there, and no Chinese word of the catalogs is left (a Chinese text
a person reads is data: names, notes). The zh_CN side: tests/storage/test_pages_zh.py."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestServer

from crm.i18n.catalogs import LOCALES_DIR, read_fragments
from crm.storage.db import SessionFactory
from tests.storage.test_pages_zh import _ids, _signed_in, web  # noqa: F401 - the fixture
from tests.zh_pages import readable_text

PAGES = {
    "/console/": ["Wallboard", "Callers waiting", "Agents available",
                  "Today's service levels so far", "Callbacks pending"],
    "/console/dashboard": ["Satisfaction", "Surveys offered", "Average score by day",
                           "By case category", "Any", "After the call"],
    "/console/service-levels": ["Service levels (12345)", "Connection rate",
                                "Answered within 15 s", "Figures by day", "CSV by hour"],
    "/console/surveys": ["Satisfaction surveys", "Export CSV", "Follow-up", "Return visit"],
    "/console/consultations": ["Consultations", "Disposition", "Outcome", "To an agent"],
    "/console/consultations/{c}": ["Consultation", "IVR transcript", "Survey answers",
                                   "To an agent", "Agent notes"],
    "/console/residents/{r}": ["Resident", "Community", "Phones", "Cases", "Stage"],
    "/console/follow-ups?status=all": ["Low-score follow-ups", "Assignee", "Anyone",
                                       "Call record", "Open"],
}
_CJK = re.compile(r"[\u4e00-\u9fff]{2,}")


def _chinese_of_the_catalogs() -> set[str]:
    """Every run of Chinese characters of the zh_CN catalogs' translations."""
    runs: set[str] = set()
    for fragment in read_fragments(LOCALES_DIR / "zh_CN").values():
        for message in fragment:
            if message.id and isinstance(message.string, str):
                runs.update(_CJK.findall(message.string))
    return runs


async def test_an_english_user_reads_the_report_pages_in_english(
        web: tuple[TestServer, SessionFactory]) -> None:  # noqa: F811
    """One signed-in browser for all the pages (the demo data is seeded once)."""
    server, sessions = web
    client, csrf = await _signed_in(server, "console", "admin")
    switched = await client.post("/console/locale", data={"csrf": csrf, "locale": "en"},
                                 allow_redirects=False)
    assert switched.status == 303
    ids = await _ids(sessions)
    catalog = _chinese_of_the_catalogs()
    problems: dict[str, list[str]] = {}
    for path, expected in PAGES.items():
        page = await client.get(path.format(**ids))
        html = await page.text()
        assert page.status == 200, (path, html[:500])
        assert '<html lang="en">' in html, path
        texts = readable_text(html)
        joined = "\n".join(texts)
        missing = [f"no {words!r}" for words in expected if words not in joined]
        chinese = [text for text in texts if any(run in catalog for run in _CJK.findall(text))]
        if missing or chinese:
            problems[path] = missing + chinese
    assert not problems, problems
