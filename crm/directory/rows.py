"""What the CSV importers share: a data row with its file line, the problems named by line
and field, checks of one field, and the import's counts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from crm.i18n.phrases import Phrase

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A cell starting so is run as a formula by a spreadsheet: exports quote it with '."""
_PHONES = re.compile(r"\+?[0-9]+(;\+?[0-9]+)*")


def sheet_safe(text: str) -> str:
    """``text`` for a CSV a spreadsheet may open: a would-be formula quoted with ' (phone
    numbers like +8210... are left alone); the import takes the quote off again."""
    if text[:1] in FORMULA_START and not _PHONES.fullmatch(text):
        return "'" + text
    return text


def unquote_sheet(text: str) -> str:
    return text[1:] if text[:1] == "'" and text[1:2] in FORMULA_START else text


_LENGTHS = {"code": 32, "name": 128, "name_en": 128, "name_ko": 128, "community": 128,
            "phone": 32}


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, str]


class Problems:
    """Each problem in English (``items``: the CLI's, the error's details) and as a phrase
    (``phrases``: the console's, in its reader's language)."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.phrases: list[Phrase] = []

    def add(self, line: int, field: str | None, message: str | Phrase) -> None:
        values = {"line": line, "field": field or "", "problem": message}
        phrase = (Phrase("line {line}, field '{field}': {problem}", values) if field
                  else Phrase("line {line}: {problem}", values))
        self.items.append(phrase.render())
        self.phrases.append(phrase)


def field_text(row: Row, field: str, problems: Problems, *, required: bool = False,
          pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
    value = row.values.get(field, "")
    if not value:
        if required:
            problems.add(row.line, field, Phrase("required, empty"))
        return None
    limit = _LENGTHS.get(field)
    if limit and len(value) > limit:
        problems.add(row.line, field, Phrase("longer than {limit} characters",
                                             {"limit": limit}))
        return None
    if pattern is not None and not pattern.fullmatch(value):
        problems.add(row.line, field, Phrase("{value} is not {what}",
                                             {"value": repr(value), "what": Phrase(what)}))
        return None
    return value


def check_unique(rows: Iterable[tuple[int, str]], field: str, problems: Problems) -> None:
    seen: dict[str, int] = {}
    for line, key in rows:
        if key in seen:
            problems.add(line, field, Phrase("{key} also on line {line}",
                                             {"key": repr(key), "line": seen[key]}))
        else:
            seen[key] = line
