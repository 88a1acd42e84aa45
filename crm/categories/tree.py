"""The category tree's rules, checked when categories are imported, and what the desk offers.

- At most three levels; a category without a parent is on level 1.
- Six-digit codes are read in the shape of GB/T 39666-2020: ``XX0000`` on level 1, ``XXYY00``
  under ``XX0000``, ``XXYYZZ`` under ``XXYY00``. Other codes (older flat lists) may sit
  anywhere.
- A leaf (no other category names it as parent) is what a case is filed under; it must carry
  a time limit, and its department is where the case goes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.i18n.phrases import Phrase
from crm.storage.models import CaseCategory

MAX_LEVEL = 3
_SIX_DIGITS = re.compile(r"[0-9]{6}")
Problem = Callable[[int, str | None, Phrase], None]


def packaged_file() -> str:
    """The tree that ships with the hotline (crm/categories/data/categories.csv), as text."""
    return files("crm.categories").joinpath("data/categories.csv").read_text(encoding="utf-8")


def shaped_parent(code: str) -> str | bool | None:
    """The parent a six-digit code must have (None on level 1), or False for other codes."""
    if not _SIX_DIGITS.fullmatch(code):
        return False
    if code[2:] == "0000":
        return None
    if code[4:] == "00":
        return code[:2] + "0000"
    return code[:4] + "00"


@dataclass(frozen=True)
class Placement:
    levels: dict[str, int]
    parents: dict[str, str | None]

    def is_leaf(self, code: str) -> bool:
        return code not in set(self.parents.values())


def place(file_parents: dict[str, str | None], rows: Sequence[tuple[int, str, Any]],
          stored: Iterable[CaseCategory], problem: Problem) -> Placement:
    """Where each imported row sits: the file's parents over the stored ones. Problems (a
    parent that does not exist, a loop, a fourth level, a six-digit code out of its shape)
    are named by the row's line and the field."""
    stored = list(stored)
    codes = {c.id: c.code for c in stored}
    parents: dict[str, str | None] = {c.code: codes.get(c.parent_id) if c.parent_id else None
                                      for c in stored}
    parents.update({code: None for _, code, _ in rows if code not in parents})
    parents.update(file_parents)
    levels: dict[str, int] = {}
    for line, code, _ in rows:
        parent = parents.get(code)
        if code in file_parents:
            expected = shaped_parent(code)
            if expected is not False and parent != expected and (
                    parent is None or shaped_parent(parent) is not False):
                problem(line, "parent", Phrase(
                    "code {code} belongs under {parent}: six-digit codes are XX0000 > XXYY00 > "
                    "XXYYZZ", {"code": code, "parent": expected}) if expected else Phrase(
                    "code {code} belongs on level 1 (no parent): six-digit codes are XX0000 > "
                    "XXYY00 > XXYYZZ", {"code": code}))
                continue
            if parent is not None and parent not in parents:
                problem(line, "parent", Phrase("no category with code {code} in this file or "
                                               "the database", {"code": repr(parent)}))
                continue
        level, seen, at = 1, {code}, parent
        while at is not None and level <= MAX_LEVEL:
            if at in seen:
                problem(line, "parent", Phrase("the parents of {code} loop back to {at}",
                                               {"code": code, "at": at}))
                break
            seen.add(at)
            level += 1
            at = parents.get(at)
        else:
            if level > MAX_LEVEL:
                problem(line, "parent", Phrase("{code} would be on level {level}: the tree "
                                               "has {levels} levels",
                                               {"code": code, "level": level,
                                                "levels": MAX_LEVEL}))
            else:
                levels[code] = level
    return Placement(levels, parents)


@dataclass(frozen=True)
class Choice:
    code: str
    path: str
    """The names from level 1 down, e.g. 公用事业 › 供水 › 停水."""


async def leaf_choices(session: AsyncSession) -> list[Choice]:
    """Every leaf a case can be filed under, with the path of names, by code."""
    categories = list(await session.scalars(select(CaseCategory).order_by(CaseCategory.code)))
    by_id = {c.id: c for c in categories}
    branches = {c.parent_id for c in categories if c.parent_id is not None}
    choices = []
    for c in categories:
        if c.id in branches:
            continue
        names, at, hops = [c.name], by_id.get(c.parent_id or -1), 0
        while at is not None and hops < MAX_LEVEL:
            names.append(at.name)
            at, hops = by_id.get(at.parent_id or -1), hops + 1
        choices.append(Choice(c.code, " › ".join(reversed(names))))
    return choices


async def is_branch(session: AsyncSession, category_id: int) -> bool:
    return await session.scalar(select(CaseCategory.id).where(
        CaseCategory.parent_id == category_id).limit(1)) is not None
