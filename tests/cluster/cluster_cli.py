"""What the tests of `hotline cluster` (test_run_cluster, test_supervisor) share: the CLI
run as a child process, and a PostgreSQL database of the test's own for the plan."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import _create_or_drop, _postgres_url


def hotline(env: dict[str, str], *args: str,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hotline.cli", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


@contextlib.contextmanager
def own_database(prefix: str) -> Iterator[str]:
    """A fresh database ``<prefix>_<pid>`` on the test PostgreSQL (skips without it),
    dropped afterwards; yields its URL."""
    base = _postgres_url()
    if base is None:
        pytest.skip("PostgreSQL not prepared: run scripts/postgres-test.sh (make test does)")
    name = f"{prefix}_{os.getpid()}"
    asyncio.run(_create_or_drop(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    asyncio.run(_create_or_drop(base, f"CREATE DATABASE {name}"))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_create_or_drop(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
