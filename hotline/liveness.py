"""Is the hotline service alive? From the process itself and its health endpoint, never from
a pid that merely exists.

A pid file outlives its process: after ``kill -9`` the pid may name a zombie (dead, not yet
reaped by its parent), nothing, or, once reused, another program. ``hotline up`` records the
service's pid with the process's start time (``/proc/<pid>/stat``, in clock ticks since
boot); a recorded pid counts only while that very process runs (not a zombie) and is
``hotline serve``. Whether it serves is what ``/healthz`` answers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    state: str
    """The kernel's one-letter state: R, S, D, ... Z (zombie), X (dead)."""
    start_ticks: int
    argv: tuple[str, ...]

    @property
    def dead(self) -> bool:
        return self.state in ("Z", "X")


def process_info(pid: int, proc: Path = PROC) -> ProcessInfo | None:
    """What /proc says of ``pid``; None when there is no such process."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        argv = (proc / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = stat.rsplit(")", 1)[1].split()
    return ProcessInfo(pid, fields[0], int(fields[19]),
                       tuple(a.decode(errors="replace") for a in argv.split(b"\0") if a))


def is_hotline_serve(argv: tuple[str, ...]) -> bool:
    """``python -m hotline.cli serve`` (as ``hotline up`` starts it) or ``hotline serve``."""
    if "serve" not in argv:
        return False
    return "hotline.cli" in argv or any(Path(a).name == "hotline" for a in argv[:2])


@dataclass(frozen=True)
class Recorded:
    """What a pid file names."""

    pid: int
    start_ticks: int | None = None

    def render(self) -> str:
        return f"{self.pid} {self.start_ticks}" if self.start_ticks is not None else str(self.pid)

    @classmethod
    def parse(cls, text: str) -> Recorded | None:
        parts = text.split()
        try:
            pid = int(parts[0])
            ticks = int(parts[1]) if len(parts) > 1 else None
        except (IndexError, ValueError):
            return None
        return cls(pid, ticks)

    @classmethod
    def of(cls, pid: int, proc: Path = PROC) -> Recorded:
        info = process_info(pid, proc)
        return cls(pid, info.start_ticks if info is not None else None)


def check_recorded(recorded: Recorded, proc: Path = PROC) -> str | None:
    """None when the recorded process runs and is the hotline service; else why not."""
    info = process_info(recorded.pid, proc)
    if info is None:
        return f"pid {recorded.pid} has exited"
    if info.dead:
        return f"pid {recorded.pid} has died (a zombie its parent has not reaped)"
    if recorded.start_ticks is not None and info.start_ticks != recorded.start_ticks:
        return (f"pid {recorded.pid} is now another process (started later than the service "
                f"recorded): {' '.join(info.argv)[:80] or '?'}")
    if not is_hotline_serve(info.argv):
        return f"pid {recorded.pid} is another program: {' '.join(info.argv)[:80] or '?'}"
    return None


def fetch_health(host: str, port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """The service's /healthz report (its ``ok`` says whether it serves calls); None when
    nothing answers there with a health report."""
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:  # 503: answers, not healthy
        try:
            body = json.load(exc)
        except ValueError:
            return None
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return body if isinstance(body, dict) and "ok" in body else None


def describe_health(health: dict[str, Any]) -> str:
    """"ok", or what is wrong, in the report's own words."""
    if health.get("ok"):
        return "ok"
    problems = []
    if health.get("ami") != "logged_in":
        problems.append(f"AMI {health.get('ami')}")
    if health.get("audiosocket_port") is None:
        problems.append("AudioSocket not listening")
    return "not ok: " + (", ".join(problems) or json.dumps(health)[:200])
