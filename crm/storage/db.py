"""Database engine and session factory (SQLAlchemy 2 async).

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) by URL. Nothing connects at import.
:func:`open_database` is how the service, the CLI, demo data and migrations open it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SessionFactory = async_sessionmaker[AsyncSession]

DATABASE_DOWN = (SQLAlchemyError, OSError)
"""What a database that is down or unreachable raises: SQLAlchemy's errors, and OSError for
refused connections (asyncpg raises them unwrapped)."""


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_sqlite_file(Path(parsed.database))
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 15})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True)


def _private_sqlite_file(path: Path) -> None:
    """The database file exists 0600 before SQLite opens it: SQLite gives its -wal, -shm
    and -journal files the database file's mode, so they are private too. Files left wider
    by an earlier version are tightened (and logged)."""
    from crm.storage.private_files import PrivateTree, ensure_private_file, private_dir, tighten

    if not path.parent.exists():
        private_dir(path.parent)
    ensure_private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        tighten(PrivateTree(path.with_name(path.name + suffix), recursive=False))


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.close()


def make_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


@dataclass(frozen=True)
class Database:
    """An open database: its engine, and the session factory the parts are given. Close it
    (or use it as ``async with``) to release its connections."""

    engine: AsyncEngine
    sessions: SessionFactory

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


def open_database(url: str, *, echo: bool = False) -> Database:
    """The engine for ``url`` (``database.url`` resolved by the settings; ``echo`` logs every
    statement) with its session factory. Connects on first use, not here."""
    engine = make_engine(url, echo=echo)
    return Database(engine, make_session_factory(engine))
