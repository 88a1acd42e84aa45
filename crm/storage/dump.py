"""A logical copy of the database: every table's rows as JSON lines, read and written through
SQLAlchemy, so one dump moves between SQLite and PostgreSQL.

Why logical rather than ``pg_dump`` or SQLite's backup API: one format for both backends
(a demo on SQLite can move to PostgreSQL), no client tools of a matching server version on
the hotline's host, and the rows pass through our own checks (schema revision, emptiness,
checksums in the archive). The tables are reflected from the database, not taken from the
models, so a dump made at an older migration restores at that migration and is then
migrated forward like any database.

Values are JSON; what JSON lacks is tagged: ``{"$datetime": iso}`` (always with its UTC
offset), ``{"$date": ...}``, ``{"$time": ...}``, ``{"$bytes": base64}``, ``{"$decimal": str}``,
``{"$seconds": float}`` and ``{"$json": value}`` for a JSON column's dict or list.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, DateTime, MetaData, Table, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

VERSION_TABLE = "alembic_version"
BATCH = 500
"""Rows fetched and inserted at a time."""

Progress = Callable[[str], None]


class DumpError(Exception):
    """A dump that cannot be restored here; the message says why."""


def encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return {"$datetime": aware.astimezone(UTC).isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, timedelta):
        return {"$seconds": value.total_seconds()}
    if isinstance(value, dict | list):
        return {"$json": value}
    raise DumpError(f"cannot dump a value of type {type(value).__name__}")


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$datetime": datetime.fromisoformat, "$date": date.fromisoformat,
    "$time": time.fromisoformat, "$bytes": base64.b64decode, "$decimal": Decimal,
    "$seconds": lambda s: timedelta(seconds=s), "$json": lambda v: v,
}


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in _DECODERS:
            raise DumpError(f"unknown value in the dump: {str(value)[:80]}")
        tag, inner = next(iter(value.items()))
        return _DECODERS[tag](inner)
    return value


@contextlib.asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection that reads one consistent state of the whole database while the service
    goes on writing: REPEATABLE READ on PostgreSQL; on SQLite (WAL) one read transaction,
    begun explicitly because the driver begins none for reads."""
    async with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            finally:
                await conn.exec_driver_sql("ROLLBACK")
            return
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin() as transaction:
            yield conn
            await transaction.rollback()


def _reflect(conn: Connection) -> MetaData:
    metadata = MetaData()
    metadata.reflect(conn)
    return metadata


async def tables(conn: AsyncConnection) -> list[Table]:
    """The database's tables in dependency order (a table after those it refers to),
    without Alembic's version table."""
    metadata = await conn.run_sync(_reflect)
    return [t for t in metadata.sorted_tables if t.name != VERSION_TABLE]


async def export_rows(conn: AsyncConnection, table: Table) -> AsyncIterator[str]:
    """One JSON line per row, in primary-key order."""
    query = select(table).order_by(*table.primary_key.columns)
    result = await conn.stream(query)
    async for partition in result.partitions(BATCH):
        for row in partition:
            yield json.dumps({k: encode(v) for k, v in row._mapping.items()},
                             ensure_ascii=False, separators=(",", ":"))


async def row_count(conn: AsyncConnection) -> int:
    total = 0
    for table in await tables(conn):
        total += int(await conn.scalar(select(func.count()).select_from(table)) or 0)
    return total


async def clear(conn: AsyncConnection) -> None:
    """Delete every row (children first); the schema stays."""
    for table in reversed(await tables(conn)):
        await conn.execute(delete(table))


async def import_rows(conn: AsyncConnection, table: Table, lines: Iterable[str]) -> int:
    """Insert the dumped rows of ``table``; returns how many."""
    columns = {c.name: c for c in table.columns}
    batch: list[dict[str, Any]] = []
    count = 0
    for number, line in enumerate(lines, 1):
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise DumpError(f"{table.name}: line {number} is not JSON: {exc}") from None
        unknown = sorted(set(raw) - set(columns))
        if unknown:
            raise DumpError(f"{table.name}: line {number} has columns this database's "
                            f"table lacks: {', '.join(unknown)}")
        batch.append({k: _fit(columns[k].type, decode(v)) for k, v in raw.items()})
        if len(batch) >= BATCH:
            await conn.execute(table.insert(), batch)
            count += len(batch)
            batch = []
    if batch:
        await conn.execute(table.insert(), batch)
        count += len(batch)
    return count


def _fit(column_type: Any, value: Any) -> Any:
    """Aware datetimes for columns that keep the offset, naive UTC for the others (SQLite)."""
    if isinstance(value, datetime) and isinstance(column_type, DateTime):
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return utc if column_type.timezone else utc.replace(tzinfo=None)
    return value


async def reset_sequences(conn: AsyncConnection) -> None:
    """After rows came in with their own ids, PostgreSQL's sequences continue past them."""
    if conn.dialect.name != "postgresql":
        return
    for table in await tables(conn):
        for column in table.primary_key.columns:
            sequence = await conn.scalar(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                         {"t": table.name, "c": column.name})
            if sequence:
                highest = await conn.scalar(select(func.max(column)))
                await conn.execute(text("SELECT setval(:s, :v, false)"),
                                   {"s": sequence, "v": int(highest or 0) + 1})
