"""The one way the service, the CLI, demo data and migrations open the database, on SQLite
and PostgreSQL: engine and sessions together, statement logging as configured, connections
released when it closes."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from crm.demo_data import seed_demo
from crm.storage.db import open_database
from crm.storage.models import Agent


async def test_open_database_gives_sessions_and_releases_its_connections(
        sessions, db_url: str) -> None:
    await seed_demo(db_url)  # demo data opens and closes its own
    async with open_database(db_url) as database:
        async with database.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Agent)) > 0
        assert database.engine.pool.checkedin() == 1  # kept for the next session
    assert database.engine.pool.checkedin() == 0  # disposed


async def test_echo_logs_every_statement(sessions, db_url: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    assert not logging.getLogger("sqlalchemy.engine").isEnabledFor(logging.INFO)
    async with open_database(db_url, echo=True) as database, database.sessions() as session:
        await session.scalar(select(func.count()).select_from(Agent))
    async with open_database(db_url) as quiet, quiet.sessions() as session:
        await session.scalar(select(Agent.login).limit(1))
    statements = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SELECT")]
    assert len(statements) == 1 and "count(*)" in statements[0]
