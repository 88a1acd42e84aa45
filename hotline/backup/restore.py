"""``hotline restore``: an archive made by ``hotline backup`` into an empty installation.

Order, so that a bad archive changes nothing: read the whole archive and check every
member's checksum; check the installation is empty (database rows, files that would be
overwritten) unless ``force``; bring the schema to the archive's migration; load every
table in one transaction; put the files in place (each written beside its name and
renamed); migrate to the newest schema.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from crm.storage import dump
from crm.storage.db import make_engine
from crm.storage.migrate import alembic_config, upgrade
from crm.storage.private_files import (
    ASTERISK_DIR_MODE,
    ASTERISK_FILE_MODE,
    DIR_MODE,
    FILE_MODE,
    open_private,
    private_dir,
)
from hotline.backup.archive import BackupError, members, verify
from hotline.paths import recording_store, survey_comments_dir
from hotline.settings import Settings

Progress = Callable[[str], None]
Target = tuple[Path, int, int]
"""Where a member goes, its file mode and its directories' mode."""
PROGRESS_EVERY = 200
"""Files between two progress lines."""
RESTORED_SETTINGS = "restored-settings"
"""Below the state directory: the archived settings file, for the operator to compare."""


async def restore_backup(settings: Settings, archive: Path, *, force: bool = False,
                         with_secrets: bool = False, progress: Progress = print,
                         ) -> dict[str, Any]:
    progress(f"checking {archive}")
    url = settings.database_url
    script = ScriptDirectory.from_config(alembic_config(url))
    order = [r.revision for r in script.walk_revisions()][::-1]
    try:
        manifest = verify(archive)
        database = manifest["database"]
        revision = database["revision"]
        if revision not in order:
            raise BackupError(f"the archive's database is at migration {revision}, which "
                              "this hotline does not know: restore with the version that "
                              f"made it ({manifest.get('hotline_version')}) or newer")
        targets = _targets(settings, manifest, with_secrets)
        await _refuse_if_not_empty(url, targets, force)
    except BackupError as exc:
        raise BackupError(f"{exc}; nothing was changed") from None
    await _schema_at(url, revision, order)
    plan = {m["member"]: m["table"] for m in database["tables"]}
    placed: list[tuple[Path, Path]] = []
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            if force:
                await dump.clear(conn)
            tables = {t.name: t for t in await dump.tables(conn)}
            for name, stream in members(archive):
                if name in plan:
                    table = tables.get(plan[name])
                    if table is None:
                        raise BackupError(f"the archive has table {plan[name]}, the "
                                          f"database at {revision} has not")
                    rows = await dump.import_rows(conn, table, _lines(stream))
                    if rows:
                        progress(f"table {table.name}: {rows} rows")
                elif name in targets:
                    placed.append(_stage(stream, targets[name]))
                    if len(placed) % PROGRESS_EVERY == 0:
                        progress(f"files: {len(placed)} of {len(targets)} unpacked")
            await dump.reset_sequences(conn)
    except BaseException:
        for staged, _ in placed:
            staged.unlink(missing_ok=True)
        raise
    finally:
        await engine.dispose()
    for staged, final in placed:
        os.replace(staged, final)
    if placed:
        progress(f"files: {len(placed)} restored")
    await upgrade(url, "head")
    progress("database migrated to the newest schema")
    return manifest


def _targets(settings: Settings, manifest: dict[str, Any], with_secrets: bool,
             ) -> dict[str, Target]:
    """Archive member -> where it goes in this installation: recordings readable by
    Asterisk's group as Asterisk makes them, everything else private to this user."""
    recordings = recording_store(settings)
    roots = {"recordings": (recordings.host_dir if recordings else None,
                            ASTERISK_FILE_MODE, ASTERISK_DIR_MODE),
             "survey-comments": (survey_comments_dir(settings), FILE_MODE, DIR_MODE)}
    targets: dict[str, Target] = {}
    for name in manifest["files"]:
        section, _, rest = name.partition("/")
        if section in roots:
            root, mode, dir_mode = roots[section]
            if root is None:
                raise BackupError("the archive has call recordings but this host cannot "
                                  "reach Asterisk's recordings: set asterisk.recordings_dir")
            targets[name] = (root / PurePosixPath(rest), mode, dir_mode)
        elif name == "settings/hotline.toml":
            targets[name] = (settings.state_dir / RESTORED_SETTINGS / "hotline.toml",
                             FILE_MODE, DIR_MODE)
        elif name == "settings/secrets.toml" and with_secrets:
            targets[name] = (settings.state_dir / "secrets.toml", FILE_MODE, DIR_MODE)
    return targets


async def _refuse_if_not_empty(url: str, targets: dict[str, Target], force: bool) -> None:
    if force:
        return
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await dump.row_count(conn)
    finally:
        await engine.dispose()
    if rows:
        raise BackupError(f"the database already holds {rows} rows: restore into an empty "
                          "installation, or pass --force to replace everything in it")
    present = [path for name, (path, _, _) in targets.items()
               if path.exists() and name != "settings/secrets.toml"]
    if present:
        raise BackupError(f"{present[0]} exists already ({len(present)} files would be "
                          "overwritten): pass --force to replace them")


async def _schema_at(url: str, revision: str, order: list[str]) -> None:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()
    if current is not None and order.index(current) > order.index(revision):
        import asyncio

        await asyncio.to_thread(command.downgrade, alembic_config(url), revision)
    else:
        await upgrade(url, revision)


def _lines(stream: IO[bytes]) -> Iterator[str]:
    return (line for line in io.TextIOWrapper(stream, encoding="utf-8") if line.strip())


def _stage(stream: IO[bytes], target: Target) -> tuple[Path, Path]:
    """Write the member beside its final name under a temporary one; (staged, final)."""
    final, mode, dir_mode = target
    private_dir(final.parent, dir_mode)
    staged = final.with_name(f".{final.name}.restoring")
    with open_private(staged, "wb", file_mode=mode) as out:
        while chunk := stream.read(1 << 20):
            out.write(chunk)
    return staged, final

