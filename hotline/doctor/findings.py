"""What ``hotline doctor`` found: one line per check, with what to change when it is not ok."""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True, slots=True)
class Finding:
    status: Status
    check: str
    """What was checked: ``AMI login``, ``speech en``, ``permissions``..."""
    detail: str
    """What was found."""
    fix: str = ""
    """The setting or command to change (empty when ok)."""


def ok(check: str, detail: str) -> Finding:
    return Finding("ok", check, detail)


def warn(check: str, detail: str, fix: str) -> Finding:
    return Finding("warn", check, detail, fix)


def fail(check: str, detail: str, fix: str) -> Finding:
    return Finding("FAIL", check, detail, fix)


def exit_status(findings: list[Finding]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 1 if any(f.status == "FAIL" for f in findings) else 0


def table(findings: list[Finding], width: int | None = None) -> str:
    """The findings as a plain-text table: status, check, what was found, and below a line
    that is not ok, what to do."""
    width = width or max(80, min(shutil.get_terminal_size((100, 24)).columns, 140))
    name_width = max((len(f.check) for f in findings), default=5)
    indent = 6 + name_width + 2
    lines = [f"{'':6}{'check':{name_width}}  found", "-" * min(width, 100)]
    for f in findings:
        wrapped = textwrap.wrap(f.detail, max(30, width - indent), break_on_hyphens=False) or [""]
        lines.append(f"{f.status:6}{f.check:{name_width}}  {wrapped[0]}")
        lines += [" " * indent + more for more in wrapped[1:]]
        if f.fix:
            fix = textwrap.wrap(f"fix: {f.fix}", max(30, width - indent),
                                break_on_hyphens=False)
            lines += [" " * indent + part for part in fix]
    failed = sum(f.status == "FAIL" for f in findings)
    warned = sum(f.status == "warn" for f in findings)
    lines.append("-" * min(width, 100))
    lines.append(f"{len(findings)} checks: {len(findings) - failed - warned} ok, "
                 f"{warned} warn, {failed} FAIL")
    return "\n".join(lines)
