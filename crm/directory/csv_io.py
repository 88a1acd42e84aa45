"""CSV import and export of the reference data: departments, case categories, residents,
agents (crm.directory.agents_csv: never passwords).

One header row (UTF-8, a spreadsheet's byte-order mark accepted); columns as in ``COLUMNS``.
Import is all or nothing: every row is checked first, and one bad row writes nothing, with
every problem named by file line and field (``line 4, field 'phone': ...``). A row whose
key exists updates that record (departments and categories by ``code``, residents by any of
their phone numbers), others are added. Residents' ID numbers are neither imported nor
exported; an export of residents is personal data and is written readable by its owner only.
Exported cells a spreadsheet would run as a formula are quoted with ' (rows.sheet_safe); the
import takes that quote off.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TextIO

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from crm.agents import sessions as browser_sessions
from crm.agents.accounts import AGENT_LANGUAGES
from crm.categories import tree
from crm.categories.time_limits import TimeLimit
from crm.directory import agents_csv
from crm.directory.columns import COLUMNS, LEGACY, REQUIRED, Kind
from crm.directory.rows import ImportResult, Problems, Row, sheet_safe, unquote_sheet
from crm.directory.rows import check_unique as _unique
from crm.directory.rows import field_text as _text
from crm.errors import InvalidInput
from crm.i18n.phrases import N_, Labels, Phrase
from crm.storage.db import SessionFactory
from crm.storage.models import CaseCategory, Department, Resident, ResidentPhone

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PHONE = re.compile(r"\+?[0-9]{3,20}")


class CsvImportError(InvalidInput):
    """The file has problems; ``problems`` names each one's line and field. Nothing was written."""

    code = "invalid_csv"

    def __init__(self, source: str, problems: list[str],
                 phrases: list[Phrase] | None = None) -> None:
        self.problems = problems
        self.phrases = phrases or [Phrase("{text}", {"text": p}) for p in problems]
        """The problems for a reader (the console renders them in its language)."""
        shown = problems[:50]
        more = f"\n... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(f"{source}: nothing imported, {len(problems)} problem(s):\n"
                         + "\n".join(shown) + more, details={"problems": problems})


def read_rows(kind: Kind, stream: TextIO, problems: Problems) -> list[Row]:
    """The data rows with stripped values; header and shape problems go to ``problems``."""
    reader = csv.reader(_without_leading_comments(stream))
    try:
        header = next(record for record in reader if record)
    except StopIteration:
        problems.add(1, None, Phrase("empty file: expected a header {columns}",
                                     {"columns": ",".join(COLUMNS[kind])}))
        return []
    except csv.Error as exc:
        problems.add(1, None, Phrase("not CSV: {error}", {"error": str(exc)}))
        return []
    header = [h.strip().lstrip("\ufeff").lower() for h in header]
    unknown = [h for h in header if h not in COLUMNS[kind] + LEGACY.get(kind, ())]
    for name in unknown:
        problems.add(1, name, Phrase("unknown column (expected: {columns})",
                                     {"columns": ", ".join(COLUMNS[kind])}))
    for name in REQUIRED[kind]:
        if name not in header:
            problems.add(1, name, Phrase("required column missing from the header"))
    duplicates = sorted({h for h in header if header.count(h) > 1})
    for name in duplicates:
        problems.add(1, name, Phrase("column named twice"))
    if unknown or duplicates or any(n not in header for n in REQUIRED[kind]):
        return []
    rows = []
    start = reader.line_num + 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                problems.add(line, None, Phrase("{count} fields, the header has {header}",
                                                {"count": len(record),
                                                 "header": len(header)}))
                continue
            rows.append(Row(line, {h: unquote_sheet(v.strip())
                                   for h, v in zip(header, record, strict=True)}))
    except csv.Error as exc:
        problems.add(reader.line_num, None, Phrase("not CSV: {error}", {"error": str(exc)}))
    return rows


def _without_leading_comments(stream: TextIO) -> Iterator[str]:
    """The lines, those starting with ``#`` before the header blanked (the line count stays:
    problems name the file's own line numbers)."""
    header_seen = False
    for line in stream:
        if not header_seen and line.lstrip("\ufeff").startswith("#"):
            yield "\n"
            continue
        header_seen = header_seen or bool(line.strip())
        yield line


async def import_csv(sessions: SessionFactory, kind: Kind, stream: TextIO,
                     source: str = "CSV", *, importer: str | None = None) -> ImportResult:
    """``importer``: the login of the account importing (agents: it may not change its own
    role, which would take away its own access)."""
    problems = Problems()
    rows = read_rows(kind, stream, problems)
    revoked: list[browser_sessions.Revoked] = []
    handler: dict[str, Callable[..., Any]] = {
        "departments": _import_departments, "categories": _import_categories,
        "residents": _import_residents,
        "agents": functools.partial(agents_csv.import_agents, revoked=revoked,
                                    importer=importer)}
    async with sessions() as session, session.begin():
        result = await handler[kind](session, rows, problems)
        if problems.items:
            await session.rollback()
            raise CsvImportError(source, problems.items, problems.phrases)
    await browser_sessions.announce(revoked)
    return result


async def _import_departments(session: Any, rows: list[Row], problems: Problems,
                              ) -> ImportResult:
    parsed = []
    for row in rows:
        code = _text(row, "code", problems, required=True, pattern=_CODE,
                     what=N_("a code (letters, digits, _ . -)"))
        name = _text(row, "name", problems, required=True)
        extra = {f: _text(row, f, problems) for f in ("name_en", "name_ko")}
        phone = _text(row, "phone", problems, pattern=_PHONE, what=N_("a phone number"))
        if code and name:
            parsed.append((row.line, code, dict(name=name, phone=phone, **extra)))
    return await _upsert_by_code(session, Department, parsed, problems)


async def _import_categories(session: Any, rows: list[Row], problems: Problems,
                             ) -> ImportResult:
    """A flat list or a tree (``parent``); see crm.categories.tree for the tree's rules."""
    departments = {d.code: d.id for d in await session.scalars(select(Department))}
    stored = list(await session.scalars(select(CaseCategory)))
    parsed = []
    parents: dict[str, str | None] = {}
    for row in rows:
        code = _text(row, "code", problems, required=True, pattern=_CODE,
                     what=N_("a code (letters, digits, _ . -)"))
        name = _text(row, "name", problems, required=True)
        limit = _time_limit(row, problems)
        parent = _text(row, "parent", problems, pattern=_CODE, what=N_("a category code"))
        department = row.values.get("department", "")
        if department and department not in departments:
            problems.add(row.line, "department",
                         Phrase("no department with code {code} (import departments first)",
                                {"code": repr(department)}))
        if code and name:
            fields: dict[str, Any] = dict(name=name,
                                          department_id=departments.get(department))
            if limit is not False:
                fields.update(time_limit_days=limit.whole_days if limit else 0,
                              time_limit_hours=limit.hours if limit else None)
            parsed.append((row.line, code, fields))
            if "parent" in row.values:
                parents[code] = parent
            if limit is None and not row.values.get("time_limit", "") and \
                    "time_limit_days" not in row.values:
                fields["_needs_limit"] = row.line
    placement = tree.place(parents, parsed, stored, problems.add)
    for _, code, fields in parsed:
        line = fields.pop("_needs_limit", None)
        if line is not None and placement.is_leaf(code):
            problems.add(line, "time_limit", Phrase("required on a leaf category (one that is "
                                                    "no other category's parent): e.g. 2h, "
                                                    "24h, 7d, 15d"))
        if code in placement.levels:
            fields["level"] = placement.levels[code]
    result = await _upsert_by_code(session, CaseCategory, parsed, problems)
    if not problems.items and parents:
        await session.flush()
        ids = {c.code: c.id for c in await session.scalars(select(CaseCategory))}
        for category in await session.scalars(select(CaseCategory)
                                              .where(CaseCategory.code.in_(list(parents)))):
            parent_code = parents[category.code]
            category.parent_id = ids[parent_code] if parent_code else None
    return result


def _time_limit(row: Row, problems: Problems) -> TimeLimit | Literal[False] | None:
    """The row's limit; None when it has none; False when the row does not say (a file
    without a limit column leaves a category's limit alone)."""
    if "time_limit" in row.values:
        text = row.values["time_limit"]
        if not text:
            return None
        try:
            return TimeLimit.parse(text)
        except ValueError as exc:
            problems.add(row.line, "time_limit", getattr(exc, "phrase", str(exc)))
            return None
    if "time_limit_days" in row.values:
        text = row.values["time_limit_days"]
        if text.isdigit() and 0 < int(text) <= 3650:
            return TimeLimit(int(text), "d")
        problems.add(row.line, "time_limit_days",
                     Phrase("{value} is not a whole number of days from 1 to 3650",
                            {"value": repr(text)}))
        return None
    return False


async def _upsert_by_code(session: Any, model: Any, parsed: list[tuple[int, str, dict[str, Any]]],
                          problems: Problems) -> ImportResult:
    """Rows keyed by ``code``: nothing written when any row is wrong; else an existing record
    of ``model`` with that code updated, a new one added."""
    _unique(((line, code) for line, code, _ in parsed), "code", problems)
    if problems.items:
        return ImportResult(0, 0)
    existing = {r.code: r for r in await session.scalars(select(model))}
    created = updated = 0
    for _, code, fields in parsed:
        found = existing.get(code)
        if found is None:
            session.add(model(code=code, **fields))
            created += 1
        else:
            for key, value in fields.items():
                setattr(found, key, value)
            updated += 1
    return ImportResult(created, updated)


def split_phones(value: str) -> list[str]:
    return [p for p in re.split(r"[;\s]+", value) if p]


async def _import_residents(session: Any, rows: list[Row], problems: Problems,
                            ) -> ImportResult:
    parsed = []
    for row in rows:
        name = _text(row, "name", problems, required=True)
        phones = split_phones(row.values.get("phones", ""))
        if not phones:
            problems.add(row.line, "phones", Phrase("required, empty"))
        for phone in phones:
            if not _PHONE.fullmatch(phone):
                problems.add(row.line, "phones", Phrase("{value} is not {what}",
                                                        {"value": repr(phone),
                                                         "what": Phrase("a phone number")}))
        language = row.values.get("preferred_language") or None
        if language is not None and language not in AGENT_LANGUAGES:
            problems.add(row.line, "preferred_language",
                         Phrase("{value} is not one of {languages}",
                                {"value": repr(language),
                                 "languages": Labels("language", AGENT_LANGUAGES)}))
        community = _text(row, "community", problems)
        if name and phones:
            parsed.append((row.line, phones, dict(name=name, preferred_language=language,
                                                  community=community)))
    _unique(((line, phone) for line, phones, _ in parsed for phone in phones), "phones",
            problems)
    if problems.items:
        return ImportResult(0, 0)
    all_phones = [phone for _, phones, _ in parsed for phone in phones]
    owners: dict[str, Resident] = {}
    for chunk in _chunks(all_phones, 500):
        found = await session.scalars(
            select(ResidentPhone).options(selectinload(ResidentPhone.resident)
                                          .selectinload(Resident.phones))
            .where(ResidentPhone.phone.in_(chunk)))
        owners.update({p.phone: p.resident for p in found})
    matches = []
    for line, phones, fields in parsed:
        residents = {owners[p].id: owners[p] for p in phones if p in owners}
        if len(residents) > 1:
            problems.add(line, "phones", "these numbers belong to different residents "
                                         f"(ids {', '.join(map(str, sorted(residents)))})")
        matches.append((next(iter(residents.values()), None), phones, fields))
    if problems.items:
        return ImportResult(0, 0)
    created = updated = 0
    for resident, phones, fields in matches:
        if resident is None:
            session.add(Resident(**fields, phones=[ResidentPhone(phone=p) for p in phones]))
            created += 1
            continue
        for key, value in fields.items():
            setattr(resident, key, value)
        known = {p.phone for p in resident.phones}
        resident.phones.extend(ResidentPhone(phone=p) for p in phones if p not in known)
        updated += 1
    return ImportResult(created, updated)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _SafeWriter:
    """A csv writer whose cells cannot run as spreadsheet formulas (rows.sheet_safe)."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def writerow(self, row: Iterable[str]) -> None:
        self._writer.writerow([sheet_safe(cell) for cell in row])


async def export_csv(sessions: SessionFactory, kind: Kind, stream: TextIO) -> int:
    """Write ``kind`` as CSV (the import's columns) to ``stream``; returns the row count."""
    writer = _SafeWriter(csv.writer(stream, lineterminator="\n"))
    writer.writerow(COLUMNS[kind])
    count = 0
    async with sessions() as session:
        if kind == "departments":
            for d in await session.scalars(select(Department).order_by(Department.code)):
                writer.writerow([d.code, d.name, d.name_en or "", d.name_ko or "", d.phone or ""])
                count += 1
        elif kind == "categories":
            codes = {d.id: d.code for d in await session.scalars(select(Department))}
            categories = list(await session.scalars(select(CaseCategory)
                                                    .order_by(CaseCategory.code)))
            category_codes = {c.id: c.code for c in categories}
            for c in categories:
                limit = TimeLimit.of(c.time_limit_days, c.time_limit_hours)
                writer.writerow([c.code, c.name, category_codes.get(c.parent_id, ""),
                                 str(limit) if limit else "",
                                 codes.get(c.department_id, "") if c.department_id else ""])
                count += 1
        elif kind == "agents":
            count = await agents_csv.export_agents(session, writer)
        else:
            query = select(Resident).options(selectinload(Resident.phones)).order_by(Resident.id)
            for r in await session.scalars(query):
                writer.writerow([r.name, ";".join(sorted(p.phone for p in r.phones)),
                                 r.preferred_language or "", r.community or ""])
                count += 1
    return count

