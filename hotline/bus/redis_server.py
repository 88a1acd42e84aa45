"""A redis-server of the project's own (Debian's package, installed by scripts/bootstrap.sh):
its own configuration, port and directory, on a loopback address, never the system service.

The stream must survive a restart, so the server keeps an append-only file (``appendonly
yes``); ``appendfsync always`` (the default here) flushes it before a write is acknowledged,
so an event Redis accepted is not lost even when Redis is killed; ``everysec`` trades up to a
second of acknowledged events on a crash of the machine or of Redis for fewer disk flushes.

Used by the tests (tests/cluster/conftest.py) and by ``python -m hotline.bus.redis_server
start|stop DIR [--port N]`` (for the cluster scripts): ``start`` runs it in the background and
returns once it answers PING; ``stop`` shuts it down cleanly (SIGTERM: Redis flushes the
append-only file and exits).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

DEFAULT_PORT = 6390
"""Not 6379, so the project's server never meets a system Redis."""


class RedisServerError(RuntimeError):
    """The server could not be started or stopped; the message says why (and the end of its
    log)."""


class RedisServer:
    def __init__(self, directory: Path, *, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                 appendfsync: Literal["always", "everysec"] = "always",
                 binary: str = "redis-server", die_with_parent: bool = False) -> None:
        """``die_with_parent``: the server gets SIGTERM when the thread that started it ends
        (Linux), so a test run that is killed leaves no server behind."""
        if not host.startswith("127."):
            raise ValueError(f"the project's Redis binds a loopback address, not {host}")
        self.directory = directory
        self.port = port
        self.host = host
        self.appendfsync = appendfsync
        self.binary = binary
        self.die_with_parent = die_with_parent
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.directory / "redis.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    @property
    def pid_path(self) -> Path:
        return self.directory / "redis.pid"

    def config(self) -> str:
        return "\n".join([
            f"bind {self.host}",
            f"port {self.port}",
            "protected-mode yes",
            "daemonize no",
            f'dir "{self.directory}"',
            f'pidfile "{self.pid_path}"',
            f'logfile "{self.log_path}"',
            "appendonly yes",
            f"appendfsync {self.appendfsync}",
            'save ""',
            "databases 1",
            "",
        ])

    def start(self, timeout: float = 15.0) -> None:
        """Start it and return once it answers PING (after loading its append-only file)."""
        binary = shutil.which(self.binary)
        if binary is None:
            raise RedisServerError(
                f"{self.binary} not found: install Debian's redis-server package "
                "(scripts/bootstrap.sh does)")
        if self.answers():
            raise RedisServerError(f"something already answers on {self.host}:{self.port}")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config_path.write_text(self.config())
        self._process = subprocess.Popen(
            [binary, str(self.config_path)], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent if self.die_with_parent else None)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self._process.poll() is not None:
                raise RedisServerError(f"redis-server exited with {self._process.returncode}"
                                       f"; its log ends:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RedisServerError(f"redis-server did not answer within {timeout} s; "
                                       f"its log ends:\n{self.log_tail()}")
            time.sleep(0.02)  # polling a condition, bounded by the deadline

    def stop(self, timeout: float = 15.0) -> None:
        """Shut it down cleanly (SIGTERM: flush the append-only file, exit) and wait."""
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            raise RedisServerError(f"redis-server {pid} did not stop within {timeout} s")

    def kill(self) -> None:
        """Kill it at once (SIGKILL), as a crash would."""
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 15.0)

    def answers(self) -> bool:
        """Whether a Redis server answers PING here (not merely loading its data)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _pid(self) -> int | None:
        if self._process is not None:
            return self._process.pid if self._process.poll() is None else None
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            self._process = None
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        return False


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent (thread) ends (prctl
    PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hotline.bus.redis_server",
                                     description="the project's own redis-server")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("directory", type=Path, help="its data, configuration and log")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    server = RedisServer(args.directory.resolve(), port=args.port, host=args.host)
    try:
        if args.action == "start":
            server.start()
            server._process = None  # leave it running after this command
            print(f"redis-server on {server.url} (data in {server.directory})")
        else:
            server.stop()
    except RedisServerError as exc:
        print(f"redis_server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
