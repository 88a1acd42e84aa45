"""What the cluster wrote to PostgreSQL during ``bench.cluster``'s calls, counted by the server,
read before and after the calls:

- rows inserted, updated, deleted per table of the application (``pg_stat_user_tables``):
  the cluster's own rows, exactly;
- the transactions that wrote: transaction ids assigned (a transaction takes one when it first
  writes, none when it only reads; one that wrote and rolled back counts too) less
  autovacuum's (its ANALYZE of a table takes one; its VACUUM none), from
  ``pg_stat_all_tables``' run counts;
- commits and rows of the whole database (``pg_stat_database``): the above plus autovacuum's
  own transactions and catalog rows (``pg_statistic``), any read-only commit, and one commit
  per connection's start-up (the cluster's new pool connections; the bench's own left out);
- WAL bytes and the database's growth on disk.

Transaction ids and WAL are server-wide: exact on a server of the bench's own (other
databases' work would count too).

Two precautions make the counts exact rather than sampled:

- **The reading does not count itself.** It goes through plain asyncpg connections, each
  reading in a transaction it rolls back: no row, no transaction id of its own, and no commit
  but the one PostgreSQL counts for every connection's start (the backend's own start-up
  transaction): the readings count the connections they open to the database and leave those
  out of the commits. (A SQLAlchemy engine would not do: its first connection runs four
  statements in implicit transactions, four commits more in the very counters read -- why the
  bench's earlier reading, one engine a second, never saw them settle.)
- **The counters are read once every backend has flushed them.** A PostgreSQL 15 backend
  reports its statistics at a transaction's end at most once a second, and one that goes idle
  with some pending within ``PGSTAT_IDLE_INTERVAL`` (10 s). ``pg_stat_force_next_flush()``
  flushes only the calling session's own statistics, not the cluster processes', so it cannot
  help and is not used: the reading waits for the counters to stand still for
  ``PG_IDLE_FLUSH_S`` (longer than that interval), bounded, and says whether they did.
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
TABLES_QUERY = (f"SELECT schemaname, relname, {', '.join(TABLE_COUNTERS)} "
                "FROM pg_stat_user_tables")
SERVER_QUERY = (
    "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal_bytes, "
    "pg_database_size(current_database()) AS database_bytes, "
    "(SELECT coalesce(sum(autovacuum_count), 0) FROM pg_stat_all_tables) AS autovacuums, "
    "(SELECT coalesce(sum(autoanalyze_count), 0) FROM pg_stat_all_tables) AS autoanalyzes")

_connections: dict[str, int] = {}
"""Connections this module opened, per database (DSN)."""

Rows = tuple[int, int, int]
"""Rows inserted, updated, deleted."""


@dataclass(frozen=True)
class PgReading:
    """The counters at one moment (totals since the statistics were last reset)."""

    database: dict[str, int]
    """DATABASE_COUNTERS of the connection's database."""
    tables: dict[str, Rows]
    """Per user table ("table", or "schema.table" outside public)."""
    next_xid: int = 0
    """The next transaction id to be assigned (server-wide)."""
    wal_bytes: int = 0
    """The WAL's write position in bytes (server-wide)."""
    database_bytes: int = 0
    """The database's size on disk (tables and indexes; grows by whole pages)."""
    autovacuums: int = 0
    autoanalyzes: int = 0
    """Autovacuum's VACUUM and ANALYZE runs over the database's tables, catalogs included."""
    own_connections: int = 0
    """Connections the bench had opened to the database by then, this reading's included:
    each start-up is a commit in ``database`` (flushed by the time the reading settled)."""

    def stands_still_as(self, other: PgReading) -> bool:
        """Whether the flushed statistics are the same (server-wide positions aside: WAL moves
        with checkpoints, and neither shows a flush)."""
        return self.database == other.database and self.tables == other.tables


def table_name(schema: str, table: str) -> str:
    return table if schema == "public" else f"{schema}.{table}"


def reading_from_rows(database_row: Mapping[str, Any], table_rows: Iterable[Mapping[str, Any]],
                      server_row: Mapping[str, Any] | None = None,
                      own_connections: int = 0) -> PgReading:
    """A reading from the rows of DATABASE_QUERY, TABLES_QUERY and SERVER_QUERY; a missing
    counter (NULL) counts 0."""
    tables: dict[str, Rows] = {}
    for row in table_rows:
        ins, upd, dele = (int(row[k] or 0) for k in TABLE_COUNTERS)
        tables[table_name(str(row["schemaname"]), str(row["relname"]))] = (ins, upd, dele)
    server = server_row or {}

    def number(key: str) -> int:
        return int(server.get(key) or 0)

    return PgReading(database={k: int(database_row[k] or 0) for k in DATABASE_COUNTERS},
                     tables=tables, next_xid=number("next_xid"), wal_bytes=number("wal_bytes"),
                     database_bytes=number("database_bytes"),
                     autovacuums=number("autovacuums"), autoanalyzes=number("autoanalyzes"),
                     own_connections=own_connections)


@dataclass(frozen=True)
class PgWrites:
    """What was written between two readings, over ``calls`` calls."""

    calls: int
    tables: dict[str, Rows] = field(default_factory=dict)
    """Rows per user table that changed."""
    transaction_ids: int = 0
    """Transaction ids assigned, autovacuum's ANALYZE runs included."""
    autovacuums: int = 0
    autoanalyzes: int = 0
    database: dict[str, int] = field(default_factory=dict)
    """The database's DATABASE_COUNTERS, autovacuum's work included, the start-ups of the
    bench's own connections left out of ``xact_commit``."""
    wal_bytes: int = 0
    database_bytes: int = 0
    settled: bool = True
    """Whether both readings were taken with the counters standing still."""

    @property
    def rows(self) -> Rows:
        """The cluster's rows, over every user table."""
        return (sum(t[0] for t in self.tables.values()),
                sum(t[1] for t in self.tables.values()),
                sum(t[2] for t in self.tables.values()))

    @property
    def writing_transactions(self) -> int:
        """The cluster's transactions that wrote: ids assigned less autovacuum's ANALYZEs."""
        return self.transaction_ids - self.autoanalyzes

    @property
    def commits(self) -> int:
        """Every commit in the database (autovacuum's and read-only ones included)."""
        return self.database.get("xact_commit", 0)

    def per_call(self, value: float) -> float:
        return value / max(self.calls, 1)

    def top_tables(self, n: int = TOP_TABLES) -> list[tuple[str, Rows]]:
        """The ``n`` tables with the most rows written (inserted + updated + deleted), most
        first; ties by name."""
        return sorted(self.tables.items(), key=lambda kv: (-sum(kv[1]), kv[0]))[:n]

    def at_rate(self, calls_per_second: float) -> dict[str, float]:
        """Per second at that many new calls a second (the counts per call, scaled): the
        cluster's writing transactions and rows written, all commits, WAL bytes."""
        return {key: self.per_call(value) * calls_per_second for key, value in (
            ("writing_transactions", self.writing_transactions),
            ("rows_written", sum(self.rows)), ("commits", self.commits),
            ("wal_bytes", self.wal_bytes))}

    def lines(self, database: str) -> list[str]:
        """The bench's summary lines."""
        c = self.per_call
        ins, upd, dele = self.rows
        db = self.database
        lines = [
            f"  PostgreSQL ({database}; {self.calls} calls; counters "
            + ("settled" if self.settled else "STILL MOVING after the bound: approximate")
            + f"): the cluster's transactions that wrote {self.writing_transactions} "
            f"({c(self.writing_transactions):.2f}/call), rows inserted {ins} ({c(ins):.2f}/call),"
            f" updated {upd} ({c(upd):.2f}/call), deleted {dele} ({c(dele):.2f}/call)",
            f"    all commits in the database {self.commits} ({c(self.commits):.2f}/call) and "
            f"rows {db.get('tup_inserted', 0)}/{db.get('tup_updated', 0)}/"
            f"{db.get('tup_deleted', 0)}, autovacuum's included ({self.autovacuums} vacuum and "
            f"{self.autoanalyzes} analyze runs); WAL {self.wal_bytes / 1024:.0f} kB "
            f"({c(self.wal_bytes) / 1024:.1f} kB/call, server-wide), the database grew "
            f"{self.database_bytes / 1024:.0f} kB ({c(self.database_bytes) / 1024:.1f} kB/call)"]
        top = self.top_tables()
        if top:
            lines.append("    rows per call, top tables (inserted/updated/deleted): "
                         + ", ".join(f"{name} {c(i):.2f}/{c(u):.2f}/{c(d):.2f}"
                                     for name, (i, u, d) in top))
        return lines

    def as_json(self) -> dict[str, Any]:
        c = self.per_call
        ins, upd, dele = self.rows
        totals = {"writing_transactions": self.writing_transactions, "inserted": ins,
                  "updated": upd, "deleted": dele, "commits_all": self.commits,
                  "wal_bytes": self.wal_bytes, "database_bytes": self.database_bytes}
        return {"calls": self.calls, "settled": self.settled, "total": totals,
                "per_call": {k: c(v) for k, v in totals.items()},
                "database_counters": self.database, "transaction_ids": self.transaction_ids,
                "autovacuums": self.autovacuums, "autoanalyzes": self.autoanalyzes,
                "tables_per_call": {name: {"inserted": c(i), "updated": c(u), "deleted": c(d)}
                                    for name, (i, u, d) in self.top_tables(len(self.tables))}}


def writes_between(before: PgReading, after: PgReading, calls: int, *,
                   settled: bool = True) -> PgWrites:
    """The difference of two readings. A table that appeared after the first counts from 0;
    a counter that went down (statistics reset in between) is an error, not a figure."""
    database = {k: after.database[k] - before.database.get(k, 0) for k in DATABASE_COUNTERS}
    database["xact_commit"] -= after.own_connections - before.own_connections
    tables: dict[str, Rows] = {}
    for name, counts in after.tables.items():
        was = before.tables.get(name, (0, 0, 0))
        delta = (counts[0] - was[0], counts[1] - was[1], counts[2] - was[2])
        if any(delta):
            tables[name] = delta
    if min([*database.values(), *(v for t in tables.values() for v in t)], default=0) < 0:
        raise ValueError("PostgreSQL's counters went down between the readings "
                         "(statistics reset?): no figure")
    return PgWrites(calls=calls, tables=tables, transaction_ids=after.next_xid - before.next_xid,
                    autovacuums=after.autovacuums - before.autovacuums,
                    autoanalyzes=after.autoanalyzes - before.autoanalyzes, database=database,
                    wal_bytes=after.wal_bytes - before.wal_bytes,
                    database_bytes=after.database_bytes - before.database_bytes,
                    settled=settled)


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy URL (postgresql+asyncpg://...) as asyncpg's DSN."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def connect(url: str) -> asyncpg.Connection:
    """A connection to the URL's database, counted (its start-up is a commit there)."""
    dsn = asyncpg_dsn(url)
    _connections[dsn] = _connections.get(dsn, 0) + 1
    return await asyncpg.connect(dsn)


async def read(conn: asyncpg.Connection, own_connections: int = 0) -> PgReading:
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
                             dict(server) if server is not None else None, own_connections)


async def settled_reading(url: str, within: float = 60.0,
                          quiet: float = PG_IDLE_FLUSH_S) -> tuple[PgReading, bool]:
    """A reading once the counters stood still for ``quiet`` s (read every READ_PERIOD_S),
    or the last one after ``within`` s; and whether they stood still. (A shorter ``quiet``
    only holds when every writer has disconnected: a backend flushes as it exits.)"""
    conn = await connect(url)
    opened = _connections[asyncpg_dsn(url)]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        last = await read(conn, opened)
        since = loop.time()
        while loop.time() < deadline:
            await asyncio.sleep(READ_PERIOD_S)  # a reading period; the condition is stillness
            now = await read(conn, opened)
            if not now.stands_still_as(last):
                since = loop.time()
            last = now
            if loop.time() - since >= quiet:
                return last, True
        return last, False
    finally:
        await conn.close()


async def wait_recorded(url: str, name_like: str, expected: int, within: float) -> int:
    """Wait (polling twice a second, at most ``within`` s) until ``expected`` consultations
    whose caller name is LIKE ``name_like`` have ended, i.e. the recorder wrote every call's
    end; how many had. Read in rolled-back transactions, like the counters."""
    conn = await connect(url)
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
