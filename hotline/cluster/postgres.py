"""The cluster's PostgreSQL: the database ``[database] url`` names when it is PostgreSQL
(an operator's, or a test's), else a database of the test bed's own on this machine's
PostgreSQL (Debian's package; the cluster started as scripts/postgres-test.sh starts it):
role and database ``hotline_cluster``, its password kept in ``<cluster dir>/pg-password``.
Nothing here drops or resets anything."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from crm.storage.private_files import write_private
from hotline.settings import Settings

NAME = "hotline_cluster"


class DatabaseError(RuntimeError):
    """No PostgreSQL for the cluster; the message says what to install or set."""


def database_url(settings: Settings, directory: Path) -> str:
    """The URL every role process uses."""
    if settings.database_url.startswith("postgresql"):
        return settings.database_url
    return _local_database(directory)


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
    except subprocess.CalledProcessError as exc:
        raise DatabaseError(f"{' '.join(command[:3])}: {exc.stderr.strip()}") from None
    return done.stdout


def _local_database(directory: Path) -> str:
    if shutil.which("pg_lsclusters") is None:
        raise DatabaseError("PostgreSQL is not installed (scripts/bootstrap.sh installs it), "
                            "or set [database] url to a PostgreSQL database")
    clusters = [line.split() for line in _run(["pg_lsclusters", "-h"]).splitlines()]
    if not clusters:
        raise DatabaseError("no PostgreSQL cluster: run scripts/postgres-test.sh once")
    version, cluster, port, status = clusters[-1][:4]
    if status != "online":
        _run(["pg_ctlcluster", version, cluster, "start"])
    password_file = directory / "pg-password"
    if not password_file.exists():
        write_private(password_file, secrets.token_urlsafe(18))
    password = password_file.read_text().strip()

    def psql(sql: str) -> str:
        return _run(["su", "postgres", "-c",
                     f"psql -v ON_ERROR_STOP=1 -qAt -p {port} -c \"{sql}\""]).strip()

    if psql(f"select 1 from pg_roles where rolname='{NAME}'") != "1":
        psql(f"create role {NAME} login password '{password}'")
    else:
        psql(f"alter role {NAME} login password '{password}'")
    if psql(f"select 1 from pg_database where datname='{NAME}'") != "1":
        psql(f"create database {NAME} owner {NAME}")
    return f"postgresql+asyncpg://{NAME}:{password}@127.0.0.1:{port}/{NAME}"


def where(url: str) -> str:
    """host:port/database, without the password."""
    parsed = make_url(url)
    return f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"


def accepts_connections(url: str) -> bool:
    parsed = make_url(url)
    try:
        with socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5432),
                                      timeout=2.0):
            return True
    except OSError:
        return False
