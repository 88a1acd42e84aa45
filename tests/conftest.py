"""Shared fixtures: settings in a temporary state directory, and databases on both backends."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from crm.storage.db import SessionFactory, make_engine, make_session_factory
from crm.storage.migrate import upgrade
from hotline.settings import REPO_ROOT

pytest_plugins = ["tests.integration.asterisk_fixtures", "tests.integration.service_fixtures",
                  "tests.integration.browser_fixtures", "tests.task_dump"]


def _postgres_url() -> str | None:
    url = os.environ.get("HOTLINE_TEST_PG_URL")
    if url:
        return url
    env_file = REPO_ROOT / "var" / "pg-test.env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "HOTLINE_TEST_PG_URL":
                return value
    return None


async def _create_or_drop(base_url: str, statement: str) -> None:
    engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of this pytest process's own (hotline_test_<pid>), so runs on
    one machine at the same time never reset each other's tables."""
    base_url = _postgres_url()
    if base_url is None:
        if os.environ.get("CI"):
            pytest.fail("HOTLINE_TEST_PG_URL is not set: make test must start PostgreSQL")
        pytest.skip("PostgreSQL not prepared: run scripts/postgres-test.sh (make test does)")
    name = f"hotline_test_{os.getpid()}"
    asyncio.run(_create_or_drop(base_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    asyncio.run(_create_or_drop(base_url, f"CREATE DATABASE {name}"))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_create_or_drop(base_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database URL on each backend the suite must cover."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[SessionFactory]:
    engine = make_engine(db_url)
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await upgrade(db_url)
    try:
        yield make_session_factory(engine)
    finally:
        await engine.dispose()
