"""CSV import/export of departments, categories and residents, on both databases.

Good files round-trip (export -> import into an empty database gives the same export); bad
files write nothing and name each problem's line and field. One test runs the real
``hotline`` command in a child process.
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm.directory.csv_io import CsvImportError, export_csv, import_csv
from crm.storage.db import SessionFactory
from crm.storage.models import CaseCategory, Department, Resident, ResidentPhone
from hotline.settings import REPO_ROOT

DEPARTMENTS = """\ufeffcode,name,name_en,name_ko,phone
housing,住房保障科,Housing,주택,6001
water,供水公司,Water supply,,6002
"""
CATEGORIES = """code,name,time_limit_days,department
repair,房屋维修,5,housing
leak,漏水,3,water
other,其他,10,
"""
RESIDENTS = """name,phones,preferred_language,community
张三,13800138000;010-bad,cmn,阳光社区
"""


async def _export(sessions: SessionFactory, kind: str) -> str:
    out = io.StringIO()
    await export_csv(sessions, kind, out)  # type: ignore[arg-type]
    return out.getvalue()


async def _count(sessions: SessionFactory, table: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_good_files_import_and_export_the_same(sessions: SessionFactory) -> None:
    result = await import_csv(sessions, "departments", io.StringIO(DEPARTMENTS))
    assert (result.created, result.updated) == (2, 0)
    result = await import_csv(sessions, "categories", io.StringIO(CATEGORIES))
    assert (result.created, result.updated) == (3, 0)
    residents = ("name,phones,preferred_language,community\n"
                 "张三,13800138000;13900139000,cmn,阳光社区\n"
                 "\"Kim, Min-jun\",+821012345678,ko,\n")
    result = await import_csv(sessions, "residents", io.StringIO(residents))
    assert (result.created, result.updated) == (2, 0)

    assert await _export(sessions, "departments") == (
        "code,name,name_en,name_ko,phone\nhousing,住房保障科,Housing,주택,6001\n"
        "water,供水公司,Water supply,,6002\n")
    assert await _export(sessions, "categories") == (
        "code,name,parent,time_limit,department\nleak,漏水,,3d,water\nother,其他,,10d,\n"
        "repair,房屋维修,,5d,housing\n")
    assert await _export(sessions, "residents") == (
        "name,phones,preferred_language,community\n"
        "张三,13800138000;13900139000,cmn,阳光社区\n\"Kim, Min-jun\",+821012345678,ko,\n")


async def test_a_second_import_updates_by_key(sessions: SessionFactory) -> None:
    await import_csv(sessions, "departments", io.StringIO(DEPARTMENTS))
    await import_csv(sessions, "residents", io.StringIO(
        "name,phones\n张三,13800138000\n"))
    result = await import_csv(sessions, "departments", io.StringIO(
        "code,name,phone\nwater,市供水公司,6009\nroads,道路科,\n"))
    assert (result.created, result.updated) == (1, 1)
    result = await import_csv(sessions, "residents", io.StringIO(
        "name,phones,community\n张三丰,13800138000;13700137000,新村\n"))
    assert (result.created, result.updated) == (0, 1)
    assert await _count(sessions, Department) == 3
    assert await _count(sessions, Resident) == 1
    assert await _count(sessions, ResidentPhone) == 2
    exported = await _export(sessions, "residents")
    assert "张三丰,13700137000;13800138000,,新村" in exported
    assert "water,市供水公司,,,6009" in await _export(sessions, "departments")


@pytest.mark.parametrize(("kind", "text", "expected"), [
    ("departments",
     "code,name,phone\nhousing,住房,6001\n,无代码,\nbad code,X,\nhousing,又一个,abc\n",
     ["line 3, field 'code': required, empty",
      "line 4, field 'code': 'bad code' is not a code (letters, digits, _ . -)",
      "line 5, field 'phone': 'abc' is not a phone number",
      "line 5, field 'code': 'housing' also on line 2"]),
    ("departments", "code,title\nx,y\n",
     ["line 1, field 'title': unknown column (expected: code, name, name_en, name_ko, phone)",
      "line 1, field 'name': required column missing from the header"]),
    ("categories", "code,name,time_limit_days,department\nrepair,维修,five,nowhere\nx,y,0,\n",
     ["line 2, field 'time_limit_days': 'five' is not a whole number of days from 1 to 3650",
      "line 2, field 'department': no department with code 'nowhere' (import departments first)",
      "line 3, field 'time_limit_days': '0' is not a whole number of days from 1 to 3650"]),
    ("residents", RESIDENTS + "李四,,fr,\n\"王五\nthe second\",13800138000,,\n李六,1,2\n",
     ["line 2, field 'phones': '010-bad' is not a phone number",
      "line 3, field 'phones': required, empty",
      "line 3, field 'preferred_language': 'fr' is not one of cmn, en, ko",
      "line 4, field 'phones': '13800138000' also on line 2",  # a record over lines 4-5
      "line 6: 3 fields, the header has 4"]),
])
async def test_bad_files_write_nothing_and_name_line_and_field(
        sessions: SessionFactory, kind: str, text: str, expected: list[str]) -> None:
    with pytest.raises(CsvImportError) as caught:
        await import_csv(sessions, kind, io.StringIO(text), source="in.csv")
    assert sorted(caught.value.problems) == sorted(expected)
    assert str(caught.value).startswith(f"in.csv: nothing imported, {len(expected)} problem(s)")
    for table in (Department, CaseCategory, Resident, ResidentPhone):
        assert await _count(sessions, table) == 0


async def test_numbers_of_two_residents_in_one_row_are_refused(sessions: SessionFactory) -> None:
    await import_csv(sessions, "residents", io.StringIO(
        "name,phones\n张三,13800138000\n李四,13900139000\n"))
    before = await _export(sessions, "residents")
    with pytest.raises(CsvImportError) as caught:
        await import_csv(sessions, "residents", io.StringIO(
            "name,phones\n合并,13800138000;13900139000\n"))
    assert caught.value.problems[0].startswith(
        "line 2, field 'phones': these numbers belong to different residents")
    assert await _export(sessions, "residents") == before


async def _hotline(db_url: str, state: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_STATE_DIR=str(state), HOTLINE_DATABASE__URL=db_url)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", *args, cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_hotline_command_imports_and_exports(sessions: SessionFactory, db_url: str,
                                                       tmp_path: Path) -> None:
    good, bad = tmp_path / "residents.csv", tmp_path / "bad.csv"
    good.write_text("name,phones,preferred_language,community\n张三,13800138000,cmn,阳光社区\n",
                    encoding="utf-8")
    bad.write_text("name,phones\n李四,12ab\n", encoding="utf-8")
    state = tmp_path / "state"
    code, out, err = await _hotline(db_url, state, "residents", "import", str(good))
    assert code == 0, err
    assert out.strip() == f"residents: 1 added, 0 updated from {good}"
    code, out, err = await _hotline(db_url, state, "residents", "import", str(bad))
    assert code == 1
    assert "line 2, field 'phones': '12ab' is not a phone number" in err
    exported = tmp_path / "out.csv"
    code, out, err = await _hotline(db_url, state, "residents", "export", str(exported))
    assert code == 0, err
    assert exported.read_text(encoding="utf-8") == (
        "name,phones,preferred_language,community\n张三,13800138000,cmn,阳光社区\n")
    assert stat.S_IMODE(exported.stat().st_mode) & 0o077 == 0  # personal data: owner only
