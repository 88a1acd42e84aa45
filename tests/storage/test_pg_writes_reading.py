"""bench/pg_writes.py's reading against a real PostgreSQL: what a client wrote, exactly, and
nothing of the reading's own (the bench's figures rest on both)."""

from __future__ import annotations

import asyncpg

from bench.pg_writes import asyncpg_dsn, settled_reading, writes_between


async def test_a_clients_commits_and_rows_are_counted_and_the_readings_are_not(
        postgres_database: str) -> None:
    dsn = asyncpg_dsn(postgres_database)
    setup = await asyncpg.connect(dsn)
    await setup.execute("DROP TABLE IF EXISTS bench_probe; CREATE TABLE bench_probe (n int)")
    await setup.close()
    # The writer disconnects before each reading (its backend flushes as it exits), so a
    # short quiet suffices; three readings in a row show the reading adds nothing itself.
    # On a shared server autovacuum may still be analysing the fresh database's catalogs
    # (its commits are the database's too): take readings until two in a row differ by
    # nothing, which also shows that a reading adds nothing itself (bounded: 8 tries).
    again, settled = await settled_reading(postgres_database, within=30, quiet=2)
    for _ in range(8):
        before, again = again, (await settled_reading(postgres_database, within=30,
                                                      quiet=2))[0]
        if writes_between(before, again, 1).commits == 0:
            break
    assert settled and writes_between(before, again, 1).commits == 0

    # Autovacuum's worker visits each database now and then (to look for work) and its
    # transactions are the database's commits although no table counter moves: a window it
    # visited counts more. So the scenario runs up to four times: every window must hold at
    # least the writer's six commits, and one of them exactly six.
    commits = []
    for _ in range(4):
        await write_the_probe_rows(dsn)
        after, settled_after = await settled_reading(postgres_database, within=30, quiet=2)
        writes = writes_between(again, after, 1, settled=settled and settled_after)
        again = after

        assert writes.settled
        assert writes.tables == {"bench_probe": (5, 1, 0)}
        assert writes.rows == (5, 1, 0)
        assert writes.transaction_ids >= 4  # server-wide: other databases' work may add to it
        # 3, the implicit one, the read-only one and the writer's connection start-up
        # (PostgreSQL counts a commit for each); none of the readings' (nor their
        # connections')
        commits.append(writes.commits)
        if writes.commits == 6:
            break
    assert min(commits) == 6 and commits[-1] == 6, commits

    cleanup = await asyncpg.connect(dsn)
    await cleanup.execute("DROP TABLE bench_probe")
    await cleanup.close()


async def write_the_probe_rows(dsn: str) -> None:
    """Three transactions of inserts, an implicit one updating a row, a read-only one."""
    writer = await asyncpg.connect(dsn)
    try:
        for rows in ([1, 2], [3], [4, 5]):
            async with writer.transaction():
                await writer.executemany("INSERT INTO bench_probe VALUES ($1)",
                                         [(n,) for n in rows])
        await writer.execute("UPDATE bench_probe SET n = 10 WHERE n = 1")  # implicit commit
        async with writer.transaction(readonly=True):  # read-only: no id, no row
            await writer.fetchval("SELECT count(*) FROM bench_probe")
    finally:
        await writer.close()
