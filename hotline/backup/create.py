"""``hotline backup``: the database, call recordings, survey comments and settings into one
archive (hotline/backup/archive.py); secrets only when asked."""

from __future__ import annotations

import json
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from crm.storage import dump
from crm.storage.db import make_engine
from crm.storage.migrate import alembic_config
from crm.storage.recordings import CONTENT_TYPES
from hotline.backup.archive import FORMAT, VERSION, ArchiveWriter, BackupError
from hotline.paths import recording_store, survey_comments_dir
from hotline.settings import Settings

Progress = Callable[[str], None]
SECRET_KEY = re.compile(r"password|secret", re.IGNORECASE)
SPOOL = 32 << 20
"""Bytes of one table's rows kept in memory before they spill to a temporary file."""
PROGRESS_EVERY = 200
"""Files between two progress lines."""


async def create_backup(settings: Settings, target: Path, *, config_file: Path | None,
                        with_secrets: bool = False, progress: Progress = print) -> dict[str, Any]:
    """Write the archive; return its manifest."""
    _check_target(target)
    writer = ArchiveWriter(target)
    try:
        database = await _add_database(settings, writer, progress)
        recordings = recording_store(settings)
        files = {"recordings": _add_tree(writer, "recordings",
                                         recordings.host_dir if recordings else None, progress),
                 "survey-comments": _add_tree(writer, "survey-comments",
                                              survey_comments_dir(settings), progress)}
        included = _add_settings(settings, writer, config_file, with_secrets)
        manifest = {"format": FORMAT, "version": VERSION,
                    "created_at": datetime.now(UTC).isoformat(),
                    "hotline_version": _version(), "database": database,
                    "file_counts": files, "settings": included, "with_secrets": with_secrets}
        return writer.finish(manifest)
    except BaseException:
        writer.abort()
        raise


def _check_target(target: Path) -> None:
    if target.exists():
        raise BackupError(f"{target} exists already: choose a new name (a backup never "
                          "overwrites one)")
    if not target.parent.is_dir():
        raise BackupError(f"no directory {target.parent} for the backup")


async def _add_database(settings: Settings, writer: ArchiveWriter,
                        progress: Progress) -> dict[str, Any]:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(settings.database_url)
    listed = []
    try:
        async with dump.snapshot(engine) as conn:
            revision = await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision())
            if revision is None:
                raise BackupError("the database has no schema yet: nothing to back up "
                                  "(`hotline db upgrade` first)")
            for number, table in enumerate(await dump.tables(conn), 1):
                name = f"database/{number:02d}-{table.name}.jsonl"
                rows = 0
                # Private (0600) and in memory up to SPOOL bytes, on disk beyond.
                with tempfile.SpooledTemporaryFile(SPOOL) as spool:
                    async for line in dump.export_rows(conn, table):
                        spool.write(f"{line}\n".encode())
                        rows += 1
                    writer.add_stream(name, spool)
                listed.append({"table": table.name, "rows": rows, "member": name})
                if rows:
                    progress(f"table {table.name}: {rows} rows")
    finally:
        await engine.dispose()
    return {"dialect": make_url(settings.database_url).get_backend_name(),
            "revision": revision, "tables": listed,
            "head": _head(settings.database_url)}


def _head(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def _files(root: Path) -> Iterator[Path]:
    """The audio files below ``root`` (what the console plays): a recordings folder set to
    a wider place (the state directory) never carries its database or secrets along."""
    for path in sorted(root.rglob("*")):
        if (path.suffix.lower() in CONTENT_TYPES and path.is_file()
                and not path.is_symlink()):
            yield path


def _add_tree(writer: ArchiveWriter, section: str, root: Path | None,
              progress: Progress) -> int | None:
    if root is None:
        progress(f"{section}: not reachable from this host, left out")
        return None
    if not root.is_dir():
        return 0
    count = size = 0
    for path in _files(root):
        size += writer.add_file(f"{section}/{path.relative_to(root).as_posix()}", path)
        count += 1
        if count % PROGRESS_EVERY == 0:
            progress(f"{section}: {count} files, {size / 1e6:.1f} MB")
    if count:
        progress(f"{section}: {count} files, {size / 1e6:.1f} MB")
    return count


def _add_settings(settings: Settings, writer: ArchiveWriter, config_file: Path | None,
                  with_secrets: bool) -> list[str]:
    included = []
    if config_file is not None and config_file.is_file():
        raw = config_file.read_bytes()
        data = raw if with_secrets else without_secrets(tomllib.loads(raw.decode())).encode()
        writer.add_bytes("settings/hotline.toml", data)
        included.append("hotline.toml")
    secrets = settings.state_dir / "secrets.toml"
    if with_secrets and secrets.is_file():
        writer.add_file("settings/secrets.toml", secrets)
        included.append("secrets.toml")
    return included


def without_secrets(data: dict[str, Any]) -> str:
    """The settings as TOML without passwords and secrets (a URL's password masked)."""
    return "".join(_toml(_strip(data)))


def _strip(table: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in table.items():
        if SECRET_KEY.search(key):
            continue
        if isinstance(value, dict):
            kept[key] = _strip(value)
        elif key == "url" and isinstance(value, str) and "@" in value:
            kept[key] = make_url(value).render_as_string(hide_password=True)
        else:
            kept[key] = value
    return kept


def _toml(values: dict[str, Any], prefix: str = "") -> list[str]:
    plain = [f"{_key(k)} = {json.dumps(v, ensure_ascii=False)}\n"
             for k, v in values.items() if not isinstance(v, dict)]
    tables = [part for k, v in values.items() if isinstance(v, dict)
              for part in [f"\n[{prefix}{_key(k)}]\n", *_toml(v, f"{prefix}{_key(k)}.")]]
    return plain + tables


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _version() -> str:
    try:
        return metadata.version("community-hotline")
    except metadata.PackageNotFoundError:
        return "unknown"
