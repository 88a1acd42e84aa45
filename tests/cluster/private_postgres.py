"""A PostgreSQL of the test's own, for tests that restart it: the shared test server
(scripts/postgres-test.sh) serves other test runs at the same time and is never restarted.

Debian's binaries (/usr/lib/postgresql/<version>/bin), run as the ``postgres`` user (they
refuse root), a cluster in a temporary directory listening on 127.0.0.1 on a free port, a
password of its own (scram), fsync off (a throwaway cluster)."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline.tools.bed import free_tcp_port

PG_ROOT = Path("/usr/lib/postgresql")
USER = "postgres"
"""The system user the server runs as (the Debian package's)."""


def _bin_dir() -> Path | None:
    versions = sorted((p for p in PG_ROOT.glob("*/bin") if (p / "pg_ctl").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


class PrivatePostgres:
    def __init__(self, directory: Path) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None or shutil.which("su") is None:
            pytest.skip("PostgreSQL's server binaries are not installed (scripts/bootstrap.sh)")
        self.bin = bin_dir
        self.directory = directory
        self.data = directory / "data"
        self.port = free_tcp_port("127.0.0.1")
        self.password = secrets.token_urlsafe(18)

    @property
    def url(self) -> str:
        return (f"postgresql+asyncpg://hotline:{self.password}@127.0.0.1:{self.port}"
                "/postgres")

    def _run(self, *args: str) -> None:
        command = " ".join(shlex.quote(a) for a in args)
        if os.geteuid() == 0:
            argv = ["su", USER, "-s", "/bin/sh", "-c", command]
        else:
            argv = ["/bin/sh", "-c", command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        pwfile = self.directory / "pw"
        pwfile.write_text(self.password)
        if os.geteuid() == 0:
            shutil.chown(self.directory, USER)
            shutil.chown(pwfile, USER)
        pwfile.chmod(0o600)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "hotline",
                  "-A", "scram-sha-256", f"--pwfile={pwfile}", "--no-sync")
        pwfile.unlink()

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.directory} -c fsync=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.directory / "log"), "-w", "-t", "30", "start")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                  "stop")


def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private cluster (in a directory of /tmp that its user can reach: pytest's
    own temporary directories are private to root), stopped and removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="hotline-faults-pg-"))
    server = PrivatePostgres(directory)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop()
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # never started, or stopped already
        shutil.rmtree(directory, ignore_errors=True)
