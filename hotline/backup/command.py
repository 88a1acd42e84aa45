"""The ``hotline backup`` and ``hotline restore`` commands (parsers and entry points)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def add_parsers(sub: Any) -> None:
    bk = sub.add_parser("backup", help="database, recordings, survey comments and settings "
                        "into one archive")
    bk.add_argument("archive", help="the archive to write (e.g. hotline-2026-12-06.tar.gz)")
    bk.add_argument("--with-secrets", action="store_true",
                    help="include the secrets file and the settings' secret keys")
    rs = sub.add_parser("restore", help="restore an archive of `hotline backup` into an "
                        "empty installation")
    rs.add_argument("archive", help="an archive `hotline backup` wrote")
    rs.add_argument("--force", action="store_true",
                    help="replace the data of an installation that is not empty")
    rs.add_argument("--with-secrets", action="store_true",
                    help="also restore the secrets file, if the archive has it")


def _progress(line: str) -> None:
    print(f"  ... {line}", file=sys.stderr, flush=True)


def run_backup(settings: Any, args: argparse.Namespace) -> int:
    from hotline.backup.archive import BackupError
    from hotline.backup.create import create_backup
    from hotline.settings import settings_file

    target = Path(args.archive)
    try:
        manifest = asyncio.run(create_backup(settings, target,
                                             config_file=settings_file(args.config),
                                             with_secrets=args.with_secrets,
                                             progress=_progress))
    except BackupError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    rows = sum(t["rows"] for t in manifest["database"]["tables"])
    print(f"backup written to {target}: {rows} rows, {len(manifest['files'])} members"
          f"{', with secrets' if args.with_secrets else ' (no secrets)'}; it holds residents' "
          "data: keep it as private as the database")
    return 0


def run_restore(settings: Any, args: argparse.Namespace) -> int:
    from hotline.backup.archive import BackupError
    from hotline.backup.restore import restore_backup

    try:
        manifest = asyncio.run(restore_backup(settings, Path(args.archive), force=args.force,
                                              with_secrets=args.with_secrets,
                                              progress=_progress))
    except BackupError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    print(f"restored the backup of {manifest['created_at']} "
          f"({manifest['database']['dialect']} at migration {manifest['database']['revision']})")
    return 0
