"""`hotline departments|categories|residents import|export FILE` and `hotline agents
import|export FILE`: the CLI of crm/directory/csv_io.

``FILE`` may be ``-`` (standard input / output). An export of residents is personal data: it
is written readable by its owner only and audited under the operating-system user, like the
other listings of residents' data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

if TYPE_CHECKING:
    from crm.directory.columns import Kind
    from hotline.settings import Settings

KINDS = {"departments": "back-office departments", "categories": "case categories",
         "residents": "residents and their phone numbers"}


class DirectoryCsvError(Exception):
    """A file cannot be read or written; the message names it."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from crm.directory.columns import COLUMNS

    for kind, what in KINDS.items():
        parser = sub.add_parser(kind, help=f"{what}: CSV import / export")
        parser.add_argument("action", choices=["import", "export"])
        parser.add_argument("file", metavar="FILE",
                            help=f"CSV with the header {','.join(COLUMNS[kind])} ('-': stdin/out)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Returns 0, or 1 with the problems (line and field) on standard error."""
    return run_file(settings, args.cmd, args.action, args.file)


def run_file(settings: Settings, kind: str, action: str, file: str | None) -> int:
    """``kind``'s import or export of ``file`` (``hotline agents import|export FILE`` too)."""
    from crm.directory.csv_io import CsvImportError

    if not file:
        print(f"hotline: usage: hotline {kind} {action} FILE", file=sys.stderr)
        return 2
    try:
        message = asyncio.run(_run(settings, kind, action, file))
    except (CsvImportError, DirectoryCsvError) as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    print(message, file=sys.stderr if file == "-" else sys.stdout)
    return 0


def _cli_actor() -> str:
    """Who ran the command, for the audit log: the OS user (as hotline.cli's listings)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


async def _run(settings: Settings, kind_name: str, action: str, file: str) -> str:
    from crm.audit import log as audit
    from crm.directory.csv_io import export_csv, import_csv
    from crm.storage.db import open_database

    kind = cast("Kind", kind_name)
    database = open_database(settings.database_url, echo=settings.database.echo)
    try:
        sessions = database.sessions
        if action == "import":
            result = await import_csv(sessions, kind, StringIO(_read(file)), source=file)
            await audit.write(sessions, actor=_cli_actor(), action=f"{kind}.import",
                              object_type=kind, detail={"file": file, "via": "cli",
                                                        "created": result.created,
                                                        "updated": result.updated})
            note = ""
            if kind == "agents" and result.created:
                from crm.directory.agents_csv import NO_PASSWORD_NOTE
                note = f" ({NO_PASSWORD_NOTE})"
            return (f"{kind}: {result.created} added, {result.updated} updated from {file}"
                    + note)
        with _open_for_export(kind, file) as stream:
            count = await export_csv(sessions, kind, stream)
        await audit.write(sessions, actor=_cli_actor(), action=f"{kind}.export",
                          object_type=kind, detail={"file": file, "via": "cli", "rows": count})
        return f"{kind}: {count} exported to {file}"
    finally:
        await database.close()


def _read(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DirectoryCsvError(f"{file}: not UTF-8 text (byte {exc.start}); "
                                "save the sheet as CSV UTF-8") from None
    except OSError as exc:
        raise DirectoryCsvError(f"{file}: {exc.strerror}") from None


@contextlib.contextmanager
def _open_for_export(kind: str, file: str) -> Iterator[TextIO]:
    from crm.storage.private_files import open_private

    if file == "-":
        yield sys.stdout
        return
    try:
        stream = (open_private(Path(file), "w", encoding="utf-8") if kind in ("residents", "agents")
                  else open(file, "w", encoding="utf-8"))
    except OSError as exc:
        raise DirectoryCsvError(f"{file}: {exc.strerror}") from None
    with stream:
        yield stream
