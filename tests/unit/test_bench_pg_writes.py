"""bench/pg_writes.py's arithmetic on rows shaped as PostgreSQL returns them (the bench itself,
``make bench-cluster``, is the real measurement)."""

from __future__ import annotations

import pytest

from bench.pg_writes import PgReading, asyncpg_dsn, reading_from_rows, writes_between


def _db(commit: int, ins: int, upd: int, dele: int) -> dict[str, int]:
    return {"xact_commit": commit, "tup_inserted": ins, "tup_updated": upd, "tup_deleted": dele}


def _table(name: str, ins: int, upd: int, dele: int | None,
           schema: str = "public") -> dict[str, object]:
    return {"schemaname": schema, "relname": name, "n_tup_ins": ins, "n_tup_upd": upd,
            "n_tup_del": dele}


def _server(next_xid: int, wal: int, size: int, vacuums: int,
            analyzes: int) -> dict[str, int]:
    return {"next_xid": next_xid, "wal_bytes": wal, "database_bytes": size,
            "autovacuums": vacuums, "autoanalyzes": analyzes}


BEFORE = reading_from_rows(
    _db(100, 50, 10, 1),
    [_table("consultations", 10, 5, 0), _table("recorded_events", 30, 0, None),
     _table("audit_log", 7, 0, 0, schema="audit")],
    _server(1000, 4_000_000, 9_000_000, 3, 10))
# 40 calls later: the cluster wrote 360 rows and took 160 transaction ids; autovacuum
# analyzed 5 tables (5 ids, 34 pg_statistic rows, 23 commits) and vacuumed one.
AFTER = reading_from_rows(
    _db(100 + 160 + 23, 50 + 360 + 34, 10 + 80, 1),
    [_table("consultations", 50, 85, 0), _table("recorded_events", 270, 0, 0),
     _table("audit_log", 7, 0, 0, schema="audit"), _table("callback_requests", 10, 0, 0)],
    _server(1165, 4_819_200, 9_163_840, 4, 15))


def test_rows_become_a_reading_with_none_as_zero_and_schemas_outside_public_named() -> None:
    assert BEFORE.database == _db(100, 50, 10, 1)
    assert BEFORE.tables == {"consultations": (10, 5, 0), "recorded_events": (30, 0, 0),
                             "audit.audit_log": (7, 0, 0)}
    assert (BEFORE.next_xid, BEFORE.wal_bytes, BEFORE.database_bytes) == (
        1000, 4_000_000, 9_000_000)
    assert (BEFORE.autovacuums, BEFORE.autoanalyzes) == (3, 10)
    assert reading_from_rows(_db(1, 0, 0, 0), []).next_xid == 0  # no server row: zeros


def test_the_clusters_rows_and_transactions_apart_from_autovacuums() -> None:
    writes = writes_between(BEFORE, AFTER, 40)
    # unchanged tables are left out; a table first seen after counts from zero
    assert writes.tables == {"consultations": (40, 80, 0), "recorded_events": (240, 0, 0),
                             "callback_requests": (10, 0, 0)}
    assert writes.rows == (290, 80, 0)
    assert writes.transaction_ids == 165 and writes.autoanalyzes == 5
    assert writes.writing_transactions == 160
    assert writes.commits == 183 and writes.database["tup_inserted"] == 394
    assert (writes.autovacuums, writes.wal_bytes, writes.database_bytes) == (1, 819_200, 163_840)
    assert writes.per_call(writes.writing_transactions) == pytest.approx(4.0)
    assert [name for name, _ in writes.top_tables()] == [
        "recorded_events", "consultations", "callback_requests"]
    assert [name for name, _ in writes.top_tables(1)] == ["recorded_events"]


def test_seventeen_calls_a_second_scale_the_counts_per_call() -> None:
    rate = writes_between(BEFORE, AFTER, 40).at_rate(17)
    assert rate["writing_transactions"] == pytest.approx(4 * 17)
    assert rate["rows_written"] == pytest.approx(370 / 40 * 17)
    assert rate["commits"] == pytest.approx(183 / 40 * 17)
    assert rate["wal_bytes"] == pytest.approx(20_480 * 17)


def test_summary_and_json_carry_the_same_figures() -> None:
    writes = writes_between(BEFORE, AFTER, 40, settled=False)
    lines = writes.lines("hotline_bench_cluster")
    assert "STILL MOVING" in lines[0]
    assert "transactions that wrote 160 (4.00/call)" in lines[0]
    assert "rows inserted 290 (7.25/call)" in lines[0]
    assert "all commits in the database 183 (4.58/call)" in lines[1]
    assert "1 vacuum and 5 analyze runs" in lines[1]
    assert "recorded_events 6.00/0.00/0.00" in lines[2]
    data = writes.as_json()
    assert data["settled"] is False
    assert data["total"]["writing_transactions"] == 160
    assert data["per_call"]["inserted"] == pytest.approx(7.25)
    assert data["tables_per_call"]["consultations"] == {"inserted": 1.0, "updated": 2.0,
                                                        "deleted": 0.0}
    assert next(iter(data["tables_per_call"])) == "recorded_events"


def test_counters_that_went_down_are_refused_not_reported() -> None:
    reset = PgReading(database=_db(3, 0, 0, 0), tables={})
    with pytest.raises(ValueError, match="went down"):
        writes_between(BEFORE, reset, 40)
    table_reset = PgReading(database=AFTER.database, tables={"consultations": (0, 0, 0)})
    with pytest.raises(ValueError, match="went down"):
        writes_between(BEFORE, table_reset, 40)


def test_stillness_ignores_the_server_wide_positions_only() -> None:
    moved = PgReading(BEFORE.database, BEFORE.tables, next_xid=BEFORE.next_xid + 1,
                      wal_bytes=BEFORE.wal_bytes + 8192)
    assert moved.stands_still_as(BEFORE)
    one_more_row = PgReading(BEFORE.database, {**BEFORE.tables, "consultations": (11, 5, 0)})
    assert not one_more_row.stands_still_as(BEFORE)
    one_more_commit = PgReading(_db(101, 50, 10, 1), BEFORE.tables)
    assert not one_more_commit.stands_still_as(BEFORE)


def test_a_sqlalchemy_url_becomes_asyncpgs_dsn_with_its_password() -> None:
    assert asyncpg_dsn("postgresql+asyncpg://u:p%40ss@127.0.0.1:5433/bench") == \
        "postgresql://u:p%40ss@127.0.0.1:5433/bench"


def test_the_benchs_own_connections_start_ups_are_not_the_clusters_commits() -> None:
    """Each connection's start is a commit in PostgreSQL's count: those the bench opened
    between the readings (the after-reading's own included) are taken out."""
    before = reading_from_rows(_db(100, 0, 0, 0), [], own_connections=1)
    after = reading_from_rows(_db(110, 0, 0, 0), [], own_connections=3)
    assert writes_between(before, after, 1).commits == 8
