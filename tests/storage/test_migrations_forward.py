"""Migrations run forward with data in place: a database built at the previous migration
head and filled with rows in every table (values made from each column's type, foreign keys
pointing at the rows of the tables they refer to), then upgraded to head. Every row is still
there with the same values, and the models at head read and write next to the old rows.

The rows are made from the schema as reflected at the previous revision, so the test keeps
meaning the same thing when the next migration is added."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    select,
    text,
)

from crm.storage.db import make_engine, make_session_factory
from crm.storage.migrate import alembic_config, upgrade
from crm.storage.models import Consultation

ROWS = 3
BASE = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def previous_head(url: str) -> str:
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_revision(script.get_current_head())
    assert isinstance(head.down_revision, str), "the history needs two revisions"
    return head.down_revision


def value_for(column: Column[Any], i: int) -> Any:
    """A value of the column's type, distinct per row ``i`` (1-based)."""
    kind = column.type
    if column.foreign_keys:
        return value_for(next(iter(column.foreign_keys)).column, i)
    if isinstance(kind, Boolean):
        return i % 2 == 0
    if isinstance(kind, Integer):
        return i
    if isinstance(kind, Float | Numeric):
        return i + 0.5
    if isinstance(kind, DateTime):
        at = BASE + timedelta(hours=i)
        return at if kind.timezone else at.replace(tzinfo=None)
    if isinstance(kind, Date):
        return date(2026, 11, i)
    if isinstance(kind, JSON):
        return {"row": i, "text": "张三"}
    if isinstance(kind, LargeBinary):
        return bytes([i]) * 4
    if isinstance(kind, String | Text):
        value = f"{column.table.name[:6]}{column.name[:8]}{i}"
        return value[: kind.length] if kind.length else value
    raise AssertionError(f"no test value for {column.table.name}.{column.name}: {kind!r}")


def seed_rows(table: Table) -> list[dict[str, Any]]:
    return [{c.name: value_for(c, i) for c in table.columns} for i in range(1, ROWS + 1)]


def _reflect(conn: Any) -> MetaData:
    metadata = MetaData()
    metadata.reflect(conn)
    return metadata


async def contents(url: str, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            tables = (await conn.run_sync(_reflect)).tables
            found = {}
            for name in names:
                table = tables[name]
                rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
                found[name] = [dict(r._mapping) for r in rows]
    finally:
        await engine.dispose()
    return found


async def test_upgrade_keeps_the_rows_of_the_previous_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    previous = previous_head(db_url)
    await upgrade(db_url, previous)

    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            tables = [t for t in (await conn.run_sync(_reflect)).sorted_tables
                      if t.name != "alembic_version"]
            for table in tables:
                await conn.execute(table.insert(), seed_rows(table))
            if conn.dialect.name == "postgresql":  # rows came with their own ids
                for table in tables:
                    for column in table.primary_key.columns:
                        sequence = await conn.scalar(
                            text("SELECT pg_get_serial_sequence(:t, :c)"),
                            {"t": table.name, "c": column.name})
                        if sequence:
                            await conn.execute(text("SELECT setval(:s, :v)"),
                                               {"s": sequence, "v": ROWS})
    finally:
        await engine.dispose()
    names = [t.name for t in tables]
    assert len(names) >= 10, names
    before = await contents(db_url, names)

    await upgrade(db_url, "head")

    after = await contents(db_url, names)
    for name in names:
        kept = [{k: row[k] for k in before[name][0]} for row in after[name]]
        assert kept == before[name], f"{name}: rows changed by the migration to head"
    engine = make_engine(db_url)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            old = (await session.scalars(select(Consultation).order_by(Consultation.id))).all()
            assert [c.id for c in old] == list(range(1, ROWS + 1))
            assert old[0].started_at == BASE + timedelta(hours=1)
            session.add(Consultation(call_id="after-upgrade", caller_number="13800138000"))
        async with make_session_factory(engine)() as session:
            new = await session.scalar(select(Consultation.id)
                                       .where(Consultation.call_id == "after-upgrade"))
            assert new == ROWS + 1
    finally:
        await engine.dispose()

