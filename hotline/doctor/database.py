"""The database: reachable with the configured URL, and its schema at the newest migration."""

from __future__ import annotations

from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from crm.storage.migrate import alembic_config
from hotline.doctor.findings import Finding, fail, ok
from hotline.settings import Settings

CONNECT_TIMEOUT = 5


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


async def check_database(settings: Settings) -> list[Finding]:
    url = settings.database_url
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not _is_file(path):
            return [fail("database", f"no SQLite database at {path}",
                         "create it: `hotline db upgrade` (or set database.url)")]
        engine = create_async_engine(url, connect_args={"timeout": CONNECT_TIMEOUT})
    else:
        engine = create_async_engine(url, connect_args={"timeout": CONNECT_TIMEOUT}
                                     if parsed.get_backend_name() == "postgresql" else {})
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            current = await conn.run_sync(_current_revision)
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return [fail("database", f"cannot connect to {shown}: {reason}",
                     "start the database server, or correct database.url (a password "
                     "belongs in the secrets file or HOTLINE_DATABASE__URL)")]
    finally:
        await engine.dispose()
    found = [ok("database", f"connected to {shown}")]
    head = head_revision(url)
    if current == head:
        found.append(ok("database schema", f"at the newest migration ({head})"))
    elif current is None:
        found.append(fail("database schema", "empty: no migration applied",
                          "`hotline db upgrade` (as the hotline user)"))
    else:
        found.append(fail("database schema", f"at migration {current}, the code needs {head}",
                          "back up (`hotline backup FILE`), then `hotline db upgrade`"))
    return found


def _is_file(path: Path) -> bool:
    return path.is_file()


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()
