"""The category tree on both databases: the packaged file imports and exports unchanged, bad
trees are refused by line and field, and a case filed under a leaf takes its department and
its deadline from it (crm/categories/, crm/directory/csv_io.py, crm/cases/service.py)."""

from __future__ import annotations

import io
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from crm.cases import service as cases
from crm.categories import tree
from crm.categories.time_limits import TimeLimitRules
from crm.categories.working_time import WorkingCalendar
from crm.demo_data import DEPARTMENTS
from crm.directory.csv_io import CsvImportError, export_csv, import_csv
from crm.errors import InvalidInput
from crm.storage.db import SessionFactory
from crm.storage.models import CaseCategory

SH = ZoneInfo("Asia/Shanghai")
DEPARTMENT_ROWS = "code,name\n" + "".join(f"{code},{name}\n" for code, name, *_ in DEPARTMENTS)


async def _with_tree(sessions: SessionFactory) -> None:
    await import_csv(sessions, "departments", io.StringIO(DEPARTMENT_ROWS))
    await import_csv(sessions, "categories", io.StringIO(tree.packaged_file()))


async def _export(sessions: SessionFactory) -> str:
    out = io.StringIO()
    await export_csv(sessions, "categories", out)
    return out.getvalue()


async def test_the_packaged_tree_loads_with_three_levels_and_exports_as_read(
        sessions: SessionFactory) -> None:
    await _with_tree(sessions)
    async with sessions() as session:
        levels = dict((await session.execute(select(CaseCategory.level, func.count())
                                             .group_by(CaseCategory.level))).all())
        leaf = await session.scalar(select(CaseCategory).where(CaseCategory.code == "020301"))
        parent = await session.scalar(select(CaseCategory).where(CaseCategory.code == "020300"))
        choices = await tree.leaf_choices(session)
    assert levels[1] == 12 and levels[2] >= 40 and levels[3] >= 100
    assert leaf is not None and parent is not None
    assert (leaf.name, leaf.parent_id, leaf.level, leaf.time_limit_hours) == (
        "燃气泄漏", parent.id, 3, 2)
    assert len(choices) == levels[3]
    assert any(c.code == "020301" and c.path == "公用事业 › 燃气 › 燃气泄漏" for c in choices)
    body = "\n".join(line for line in tree.packaged_file().splitlines()
                     if not line.startswith("#")) + "\n"
    assert await _export(sessions) == body
    again = await import_csv(sessions, "categories", io.StringIO(body))
    assert again.created == 0 and again.updated == levels[1] + levels[2] + levels[3]


@pytest.mark.parametrize(("text", "expected"), [
    ("code,name,parent,time_limit\n010000,城乡建设,,7d\n010100,房屋,020000,7d\n",
     ["line 3, field 'parent': code 010100 belongs under 010000: six-digit codes are "
      "XX0000 > XXYY00 > XXYYZZ"]),
    ("code,name,parent,time_limit\na,甲,,\nb,乙,a,\nc,丙,b,\nd,丁,c,7d\n",
     ["line 5, field 'parent': d would be on level 4: the tree has 3 levels"]),
    ("code,name,parent,time_limit\na,甲,b,7d\nb,乙,a,\n",
     ["line 2, field 'parent': the parents of a loop back to a",
      "line 3, field 'parent': the parents of b loop back to b"]),
    ("code,name,parent,time_limit\nx,某类,nowhere,7d\ny,叶子,,\nz,坏的,,3w\n",
     ["line 2, field 'parent': no category with code 'nowhere' in this file or the database",
      "line 3, field 'time_limit': required on a leaf category (one that is no other "
      "category's parent): e.g. 2h, 24h, 7d, 15d",
      "line 4, field 'time_limit': '3w' is not a time limit like 2h, 24h, 7d or 15d"]),
])
async def test_bad_trees_write_nothing_and_name_line_and_field(
        sessions: SessionFactory, text: str, expected: list[str]) -> None:
    with pytest.raises(CsvImportError) as caught:
        await import_csv(sessions, "categories", io.StringIO(text), source="tree.csv")
    assert sorted(caught.value.problems) == sorted(expected)
    assert await _export(sessions) == "code,name,parent,time_limit,department\n"


async def test_a_case_under_a_leaf_takes_its_department_and_deadline(
        sessions: SessionFactory) -> None:
    await _with_tree(sessions)
    rules = TimeLimitRules(WorkingCalendar.build(tz=SH, opens=time(9), closes=time(17),
                                                 holidays=[date(2026, 10, 1)]),
                           hours="calendar", days="working")
    friday = datetime(2026, 9, 25, 18, 0, tzinfo=SH)
    args = {"description": "x", "actor": "agent:agent1", "now": friday, "time_limits": rules}
    gas = await cases.create_case(sessions, category="020301", **args)  # 燃气泄漏 2h
    assert gas.department_code == "gas"
    assert gas.deadline == datetime(2026, 9, 25, 20, 0, tzinfo=SH)
    leak = await cases.create_case(sessions, category="010101", **args)  # 房屋漏水 7d
    assert leak.department_code == "housing"
    # Mon 28, Tue 29, Wed 30, (Thu 1 Oct holiday), Fri 2, Mon 5, Tue 6, Wed 7
    assert leak.deadline == datetime(2026, 10, 7, 17, 0, tzinfo=SH)
    with pytest.raises(InvalidInput, match="group of categories"):
        await cases.create_case(sessions, category="020300", **args)
