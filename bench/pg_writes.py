"""What the cluster wrote to PostgreSQL during ``bench.cluster``'s calls, counted by the server:
commits and rows inserted/updated/deleted of the cluster's database (``pg_stat_database``),
the same rows per table (``pg_stat_user_tables``), transaction ids assigned (transactions that
wrote) and WAL bytes (both server-wide), read before and after the calls.

Exact, not sampled, given two precautions:

- **The reading does not count itself.** The bench reads through one plain asyncpg
  connection, each reading in a transaction it rolls back: no commit and no row of its own in
  the counters. (SQLAlchemy's engine would not do: its first connection runs four statements
  in implicit transactions, i.e. four commits in the very counters being read -- the reason
  the old reading, one engine per second, never saw them settle.)
- **The counters are read once every backend has flushed them.** A PostgreSQL 15 backend
  reports its statistics at a transaction's end at most once a second, and one that goes idle
  with some pending within ``PGSTAT_IDLE_INTERVAL`` (10 s); ``pg_stat_force_next_flush()``
  flushes only the calling session's own statistics, not the cluster processes', so it cannot
  help here and is not used. The reading waits instead for the counters to stand still for
  ``PG_IDLE_FLUSH_S`` (longer than that interval), bounded, and says whether they did.

Server-wide figures (transaction ids, WAL) include anything else the server did meanwhile
(other databases, autovacuum, checkpoints): exact on a server of the bench's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

DATABASE_COUNTERS = ("xact_commit", "tup_inserted", "tup_updated", "tup_deleted")
TABLE_COUNTERS = ("n_tup_ins", "n_tup_upd", "n_tup_del")
PG_IDLE_FLUSH_S = 11.0
"""Longer than PostgreSQL's PGSTAT_IDLE_INTERVAL (10 s): counters unchanged for this long
hold every transaction that ended before the quiet began."""
READ_PERIOD_S = 1.0
TOP_TABLES = 6

DATABASE_QUERY = (f"SELECT {', '.join(DATABASE_COUNTERS)} FROM pg_stat_database "
                  "WHERE datname = current_database()")
TABLES_QUERY = (f"SELECT schemaname, relname, {', '.join(TABLE_COUNTERS)}, "
                "autovacuum_count + autoanalyze_count AS maintenance FROM pg_stat_user_tables")
SERVER_QUERY = ("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal_bytes, "
                "pg_database_size(current_database()) AS database_bytes")


@dataclass(frozen=True)
class PgReading:
    """The counters at one moment (totals since the statistics were last reset)."""

    database: dict[str, int]
    """DATABASE_COUNTERS of the connection's database."""
    tables: dict[str, tuple[int, int, int]]
    """Rows inserted, updated, deleted per user table ("table", or "schema.table" outside
    public)."""
    maintenance: int = 0
    """Autovacuum and autoanalyze runs over the user tables (their transactions commit)."""
    next_xid: int = 0
    """The next transaction id to be assigned (server-wide): one is taken per transaction
    that writes, none by one that only reads."""
    wal_bytes: int = 0
    """The WAL's write position in bytes (server-wide)."""
    database_bytes: int = 0
    """The database's size on disk (tables and indexes; grows by whole pages)."""

    def stands_still_as(self, other: PgReading) -> bool:
        """Whether the flushed statistics are the same (server-wide positions aside: WAL moves
        with checkpoints, and neither shows a flush)."""
        return self.database == other.database and self.tables == other.tables


def table_name(schema: str, table: str) -> str:
    return table if schema == "public" else f"{schema}.{table}"


def reading_from_rows(database_row: Mapping[str, Any], table_rows: Iterable[Mapping[str, Any]],
                      server_row: Mapping[str, Any] | None = None) -> PgReading:
    """A reading from the rows of DATABASE_QUERY, TABLES_QUERY and SERVER_QUERY; a missing
    counter (NULL: a table never touched on some versions) counts 0."""
    tables: dict[str, tuple[int, int, int]] = {}
    maintenance = 0
    for row in table_rows:
        ins, upd, dele = (int(row[k] or 0) for k in TABLE_COUNTERS)
        tables[table_name(str(row["schemaname"]), str(row["relname"]))] = (ins, upd, dele)
        maintenance += int(row.get("maintenance") or 0)
    server = server_row or {}
    return PgReading(database={k: int(database_row[k] or 0) for k in DATABASE_COUNTERS},
                     tables=tables, maintenance=maintenance,
                     next_xid=int(server.get("next_xid") or 0),
                     wal_bytes=int(server.get("wal_bytes") or 0),
                     database_bytes=int(server.get("database_bytes") or 0))


@dataclass(frozen=True)
class PgWrites:
    """What was written between two readings, over ``calls`` calls."""

    calls: int
    commits: int
    inserted: int
    updated: int
    deleted: int
    tables: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Rows inserted, updated, deleted per table that changed."""
    writing_transactions: int = 0
    wal_bytes: int = 0
    database_bytes: int = 0
    maintenance: int = 0
    settled: bool = True
    """Whether both readings were taken with the counters standing still."""

    def per_call(self, value: int) -> float:
        return value / max(self.calls, 1)

    def top_tables(self, n: int = TOP_TABLES) -> list[tuple[str, tuple[int, int, int]]]:
        """The ``n`` tables with the most rows written (inserted + updated + deleted), most
        first; ties by name."""
        return sorted(self.tables.items(), key=lambda kv: (-sum(kv[1]), kv[0]))[:n]

    def at_rate(self, calls_per_second: float) -> dict[str, float]:
        """Commits, transactions that wrote, rows written and WAL bytes per second at that
        many new calls a second (the counts per call, scaled)."""
        rows = self.inserted + self.updated + self.deleted
        return {"commits": self.per_call(self.commits) * calls_per_second,
                "writing_transactions": self.per_call(self.writing_transactions)
                * calls_per_second,
                "rows_written": self.per_call(rows) * calls_per_second,
                "wal_bytes": self.per_call(self.wal_bytes) * calls_per_second}

    def lines(self, database: str) -> list[str]:
        """The bench's summary lines."""
        c = self.per_call
        lines = [
            f"  PostgreSQL ({database}; {self.calls} calls; counters "
            + ("settled" if self.settled else "STILL MOVING after the bound: approximate")
            + f"): {self.commits} commits ({c(self.commits):.2f}/call), rows inserted "
            f"{self.inserted} ({c(self.inserted):.2f}/call), updated {self.updated} "
            f"({c(self.updated):.2f}/call), deleted {self.deleted} ({c(self.deleted):.2f}/call)",
            f"    server-wide: {self.writing_transactions} transactions that wrote "
            f"({c(self.writing_transactions):.2f}/call), WAL {self.wal_bytes / 1024:.0f} kB "
            f"({c(self.wal_bytes) / 1024:.1f} kB/call); the database grew "
            f"{self.database_bytes / 1024:.0f} kB ({c(self.database_bytes) / 1024:.1f} kB/call); "
            f"autovacuum/analyze runs {self.maintenance} (their commits are in the count)"]
        top = self.top_tables()
        if top:
            lines.append("    rows written per call, top tables (inserted/updated/deleted): "
                         + ", ".join(f"{name} {c(i):.2f}/{c(u):.2f}/{c(d):.2f}"
                                     for name, (i, u, d) in top))
        return lines

    def as_json(self) -> dict[str, Any]:
        c = self.per_call
        return {"calls": self.calls, "settled": self.settled,
                "total": {"commits": self.commits, "inserted": self.inserted,
                          "updated": self.updated, "deleted": self.deleted,
                          "writing_transactions": self.writing_transactions,
                          "wal_bytes": self.wal_bytes, "database_bytes": self.database_bytes,
                          "autovacuum_analyze_runs": self.maintenance},
                "per_call": {"commits": c(self.commits), "inserted": c(self.inserted),
                             "updated": c(self.updated), "deleted": c(self.deleted),
                             "writing_transactions": c(self.writing_transactions),
                             "wal_bytes": c(self.wal_bytes),
                             "database_bytes": c(self.database_bytes)},
                "tables_per_call": {name: {"inserted": c(i), "updated": c(u), "deleted": c(d)}
                                    for name, (i, u, d) in self.top_tables(len(self.tables))}}


def writes_between(before: PgReading, after: PgReading, calls: int, *,
                   settled: bool = True) -> PgWrites:
    """The difference of two readings. A table that appeared after the first counts from 0;
    a counter that went down (statistics reset in between) is an error, not a figure."""
    d = {k: after.database[k] - before.database.get(k, 0) for k in DATABASE_COUNTERS}
    tables: dict[str, tuple[int, int, int]] = {}
    for name, counts in after.tables.items():
        was = before.tables.get(name, (0, 0, 0))
        delta = (counts[0] - was[0], counts[1] - was[1], counts[2] - was[2])
        if any(delta):
            tables[name] = delta
    if min([*d.values(), *(v for t in tables.values() for v in t)], default=0) < 0:
        raise ValueError("PostgreSQL's counters went down between the readings "
                         "(statistics reset?): no figure")
    return PgWrites(calls=calls, commits=d["xact_commit"], inserted=d["tup_inserted"],
                    updated=d["tup_updated"], deleted=d["tup_deleted"], tables=tables,
                    writing_transactions=after.next_xid - before.next_xid,
                    wal_bytes=after.wal_bytes - before.wal_bytes,
                    database_bytes=after.database_bytes - before.database_bytes,
                    maintenance=after.maintenance - before.maintenance, settled=settled)


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy URL (postgresql+asyncpg://...) as asyncpg's DSN."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def read(conn: asyncpg.Connection) -> PgReading:
    """One reading, in a transaction rolled back (so it adds no commit to what it reads); a
    fresh statistics snapshot (stats_fetch_consistency may cache one per transaction)."""
    tx = conn.transaction(readonly=True)
    await tx.start()
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        database = await conn.fetchrow(DATABASE_QUERY)
        if database is None:
            raise RuntimeError("pg_stat_database has no row for this database")
        tables = await conn.fetch(TABLES_QUERY)
        server = await conn.fetchrow(SERVER_QUERY)
    finally:
        await tx.rollback()
    return reading_from_rows(dict(database), [dict(r) for r in tables],
                             dict(server) if server is not None else None)


async def settled_reading(url: str, within: float = 60.0) -> tuple[PgReading, bool]:
    """A reading once the counters stood still for PG_IDLE_FLUSH_S (read every
    READ_PERIOD_S), or the last one after ``within`` s; and whether they stood still."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        last = await read(conn)
        since = loop.time()
        while loop.time() < deadline:
            await asyncio.sleep(READ_PERIOD_S)  # a reading period; the condition is stillness
            now = await read(conn)
            if not now.stands_still_as(last):
                since = loop.time()
            last = now
            if loop.time() - since >= PG_IDLE_FLUSH_S:
                return last, True
        return last, False
    finally:
        await conn.close()


async def wait_recorded(url: str, name_like: str, expected: int, within: float) -> int:
    """Wait (polling twice a second, at most ``within`` s) until ``expected`` consultations
    whose caller name is LIKE ``name_like`` have ended, i.e. the recorder wrote every call's
    end; how many had. Read in rolled-back transactions, like the counters."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            tx = conn.transaction(readonly=True)
            await tx.start()
            try:
                ended = int(await conn.fetchval(
                    "SELECT count(*) FROM consultations WHERE caller_name LIKE $1 "
                    "AND ended_at IS NOT NULL", name_like))
            finally:
                await tx.rollback()
            if ended >= expected or loop.time() > deadline:
                return ended
            await asyncio.sleep(0.5)  # polling the database, bounded by the deadline
    finally:
        await conn.close()
