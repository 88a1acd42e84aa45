"""Shared fixtures: settings in a temporary state directory, and databases on both backends."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from crm.db import SessionFactory, make_engine, make_session_factory
from crm.migrate import upgrade
from hotline.settings import REPO_ROOT

pytest_plugins = ["tests.integration.asterisk_fixtures", "tests.integration.service_fixtures",
                  "tests.integration.browser_fixtures"]


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


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database URL on each backend the suite must cover."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    url = _postgres_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail("HOTLINE_TEST_PG_URL is not set: make test must start PostgreSQL")
        pytest.skip("PostgreSQL not prepared: run scripts/postgres-test.sh (make test does)")
    return url


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
