"""A redis-server of the test's own (Debian's package, started through the project's
hotline/bus/redis_server.py): a free loopback port and a temporary directory, stopped at the
end."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from crm.storage.db import SessionFactory, make_engine, make_session_factory
from crm.storage.migrate import upgrade
from hotline.bus.redis_server import RedisServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: scripts/bootstrap.sh installs it")
        pytest.skip("redis-server is not installed (scripts/bootstrap.sh installs it)")
    server = RedisServer(tmp_path / "redis", port=free_port(), die_with_parent=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def pg_sessions(postgres_database: str) -> AsyncIterator[SessionFactory]:
    """The cluster's database: PostgreSQL only (every node shares it), migrated and empty."""
    engine = make_engine(postgres_database)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await upgrade(postgres_database)
    try:
        yield make_session_factory(engine)
    finally:
        await engine.dispose()
