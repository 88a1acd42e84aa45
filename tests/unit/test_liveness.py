"""Whether a recorded pid is the running hotline service, with real processes: one that
exited, a zombie nobody reaped, a pid now used by another program, and the service itself."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline.daemon import service_state, show_status, stop_service
from hotline.liveness import Recorded, check_recorded, describe_health, process_info
from hotline.settings import Settings
from hotline.tools.bed import free_tcp_port

SERVE_LIKE = [sys.executable, "-c", "import sys; sys.stdin.read()", "-m", "hotline.cli",
              "serve"]
"""A process whose command line is ``python ... -m hotline.cli serve`` but that only waits."""


@pytest.fixture
def waiting() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(SERVE_LIKE, stdin=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def started_sleep() -> subprocess.Popen[bytes]:
    """``sleep 30``, once it runs as sleep (not the fork before its exec)."""
    proc = subprocess.Popen(["sleep", "30"])
    deadline = time.monotonic() + 10
    while (info := process_info(proc.pid)) is None or info.argv != ("sleep", "30"):
        assert time.monotonic() < deadline, f"sleep never ran: {info}"
        time.sleep(0.01)  # polling the kernel's process table, bounded
    return proc


def wait_state(pid: int, state: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while (info := process_info(pid)) is None or info.state != state:
        assert time.monotonic() < deadline, f"pid {pid} never in state {state}: {info}"
        time.sleep(0.01)  # polling the kernel's process table, bounded


def test_the_running_service_counts(waiting: subprocess.Popen[bytes]) -> None:
    recorded = Recorded.of(waiting.pid)
    assert recorded.start_ticks is not None
    assert check_recorded(recorded) is None
    assert Recorded.parse(recorded.render()) == recorded
    assert check_recorded(Recorded(waiting.pid)) is None  # an old pid file: pid only


def test_a_zombie_does_not_count(waiting: subprocess.Popen[bytes]) -> None:
    """kill -9 and nobody reaps it: the pid still exists (os.kill(pid, 0) succeeds)."""
    recorded = Recorded.of(waiting.pid)
    waiting.kill()
    wait_state(waiting.pid, "Z")
    reason = check_recorded(recorded)
    assert reason is not None and "zombie" in reason


def test_an_exited_process_does_not_count(waiting: subprocess.Popen[bytes]) -> None:
    recorded = Recorded.of(waiting.pid)
    waiting.kill()
    waiting.wait()
    assert check_recorded(recorded) == f"pid {waiting.pid} has exited"


def test_a_pid_reused_by_another_program_does_not_count() -> None:
    other = started_sleep()
    try:
        reason = check_recorded(Recorded(other.pid))
        assert reason == f"pid {other.pid} is another program: sleep 30"
        info = process_info(other.pid)
        assert info is not None
        # The same pid recorded with another start time: the service's process is gone.
        reason = check_recorded(Recorded(other.pid, info.start_ticks - 1))
        assert reason is not None and "is now another process" in reason
    finally:
        other.kill()
        other.wait()


def test_garbage_in_the_pid_file() -> None:
    assert Recorded.parse("") is None
    assert Recorded.parse("twelve") is None
    assert Recorded.parse("12 x") is None
    assert Recorded.parse("12\n") == Recorded(12)


def test_health_in_words() -> None:
    assert describe_health({"ok": True}) == "ok"
    assert describe_health({"ok": False, "ami": "connecting", "audiosocket_port": 4000}) == (
        "not ok: AMI connecting")


# -- what status and down say, with the pid file pointing at each kind of process -------------
def _settings(tmp_path: Path) -> Settings:
    settings = Settings(state_dir=tmp_path)
    settings.web.port = free_tcp_port()  # nothing answers there
    return settings


def _record(settings: Settings, recorded: Recorded) -> None:
    (settings.state_dir / "hotline.pid").write_text(recorded.render())


def test_status_and_down_after_kill_9(tmp_path: Path, waiting: subprocess.Popen[bytes],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    settings = _settings(tmp_path)
    _record(settings, Recorded.of(waiting.pid))
    waiting.kill()
    wait_state(waiting.pid, "Z")
    state = service_state(settings)
    assert state.pid is None and state.health is None and not state.serving
    assert state.stale is not None and "zombie" in state.stale
    assert show_status(settings) == 3
    assert "not running (pid" in capsys.readouterr().out
    said = stop_service(settings)
    assert said.startswith("hotline service was not running (pid") and "pid file removed" in said
    assert not (tmp_path / "hotline.pid").exists()


def test_down_stops_the_recorded_service(tmp_path: Path,
                                         waiting: subprocess.Popen[bytes]) -> None:
    settings = _settings(tmp_path)
    _record(settings, Recorded.of(waiting.pid))
    state = service_state(settings)
    assert state.pid == waiting.pid and state.health is None
    assert show_status(settings) == 1  # runs, but its health endpoint does not answer
    assert stop_service(settings) == f"hotline service stopped (pid {waiting.pid})"
    assert waiting.wait(5) == -signal.SIGTERM


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    other = started_sleep()
    try:
        _record(settings, Recorded(other.pid))
        said = stop_service(settings)
        assert "is another program: sleep 30" in said
        assert other.poll() is None  # still running: down did not kill it
    finally:
        other.kill()
        other.wait()
