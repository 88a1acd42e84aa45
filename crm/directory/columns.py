"""The CSV columns of each kind of reference data (light: the CLI's help reads it)."""

from __future__ import annotations

from typing import Literal

Kind = Literal["departments", "categories", "residents", "agents"]
COLUMNS: dict[str, tuple[str, ...]] = {
    "departments": ("code", "name", "name_en", "name_ko", "phone"),
    "categories": ("code", "name", "parent", "time_limit", "department"),
    "residents": ("name", "phones", "preferred_language", "community"),
    "agents": ("login", "name", "role", "extension", "languages"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "departments": ("code", "name"),
    "categories": ("code", "name"),
    "residents": ("name", "phones"),
    "agents": ("login", "name"),
}
LEGACY: dict[str, tuple[str, ...]] = {
    "categories": ("time_limit_days",),
}
"""Columns still read from older files (a flat list of categories with a limit in days)."""
