"""The test bed's supervisor (hotline/cluster/supervisor.py): its restart policy with a fake
clock (the delay doubles per exit of the last minute, capped; the burst's last exit gives
up), and how ``hotline cluster status`` shows restarts and a process given up on. The
supervisor itself, killing a real control: tests/cluster/test_supervisor.py."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hotline.cluster import processes, supervisor, watchdog
from hotline.cluster.launcher import supervisor_line
from hotline.cluster.plan import Plan, RoleProcess
from hotline.cluster.processes import _logged_up
from hotline.cluster.supervisor import (
    RestartPolicy,
    Restarts,
    Supervisor,
    annotate,
    read_state,
)
from hotline.roles.control_lease import STANDBY_LINE
from hotline.settings import Settings


def test_the_delay_doubles_and_the_fifth_exit_in_a_minute_gives_up() -> None:
    restarts = Restarts(RestartPolicy(first_delay_s=1, max_delay_s=30, burst=5, interval_s=60))
    now, delays = 100.0, []
    for _ in range(4):
        delay = restarts.exited(now)
        assert delay is not None and not restarts.gave_up
        delays.append(delay)
        now += delay + 2  # started again, up for 2 s, exits
    assert delays == [1, 2, 4, 8]
    assert restarts.exited(now) is None and restarts.gave_up


def test_exits_spread_over_more_than_the_interval_never_give_up() -> None:
    restarts = Restarts(RestartPolicy(burst=5, interval_s=60))
    assert [restarts.exited(t * 61.0) for t in range(10)] == [1.0] * 10
    assert not restarts.gave_up


def test_the_delay_is_capped() -> None:
    restarts = Restarts(RestartPolicy(first_delay_s=1, max_delay_s=30, burst=10,
                                      interval_s=600))
    assert [restarts.exited(float(t)) for t in range(9)] == [1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert restarts.exited(9.0) is None


def test_started_again_by_hand_after_giving_up_it_is_watched_afresh() -> None:
    restarts = Restarts(RestartPolicy(burst=2, interval_s=60))
    assert restarts.exited(0.0) == 1.0
    assert restarts.exited(1.0) is None and restarts.gave_up
    restarts.start_again()
    assert not restarts.gave_up and restarts.exited(2.0) == 1.0


def test_status_names_restarts_and_the_processes_given_up_on() -> None:
    report = {"supervisor": {"running": True, "pid": 42},
              "parts": [{"name": "redis"}, {"name": "control", "restarts": 1},
                        {"name": "ivr-1", "restarts": 4, "gave_up": True},
                        {"name": "web-1", "restarts": 0}]}
    assert supervisor_line(report) == ("  supervisor: running (pid 42); restarts: control 1, "
                                       "ivr-1 4; gave up on ivr-1")
    report["supervisor"]["running"] = False
    assert "NOT running" in supervisor_line(report)


def test_the_first_control_restarted_beside_a_working_one_comes_back_as_standby(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = RoleProcess("control", "control", "127.0.0.5")
    second = RoleProcess("control-2", "control", "127.0.0.10")
    plan = Plan(tmp_path, "127.0.0.4", 6390, "postgresql://x", [first, second])
    path = plan.log_file(first)
    path.parent.mkdir(parents=True)
    path.write_text(f"INFO hotline.roles.control_lease {STANDBY_LINE} host:1:ab\n")
    running: dict[str, int] = {}
    monkeypatch.setattr(processes, "live_pid",
                        lambda plan, process: (running.get(process.name), None))
    assert not _logged_up(plan, first, 0)  # alone: it must be up (it migrates)
    running["control-2"] = 7  # control-2 holds the lease
    assert _logged_up(plan, first, 0)


class FakeProcess:
    """What the supervisor asks of a process it started (subprocess.Popen's pid, poll)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        return self.returncode


def test_a_worker_that_keeps_dying_is_given_up_on_and_watched_again_once_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The supervisor's rounds with a fake clock: ivr-1 dies, is started again after 1 s,
    then dies during each start-up (2 s, 4 s, 8 s later) until the fifth exit in a minute;
    then it stays down, and status says so; started by hand, it is watched afresh."""
    caplog.set_level(logging.INFO, logger="hotline.cluster.supervisor")
    worker = RoleProcess("ivr-1", "ivr", "127.0.0.8", audiosocket_port=9092)
    plan = Plan(tmp_path, "127.0.0.4", 6390, "postgresql://x", [worker])
    running: dict[str, int] = {"ivr-1": 10}
    started: list[int] = []

    def launch(plan: Plan, process: RoleProcess, base: object) -> processes.Launched:
        started.append(len(started) + 100)
        return processes.Launched(FakeProcess(started[-1]), 0)  # type: ignore[arg-type]

    def dies_at_start(plan: Plan, process: RoleProcess, launched: processes.Launched) -> bool:
        launched.proc.returncode = 1
        raise processes.ProcessError("exited with 1 during start-up")

    monkeypatch.setattr(processes, "live_pid",
                        lambda plan, process: (running.get(process.name), None))
    monkeypatch.setattr(processes, "launch", launch)
    monkeypatch.setattr(processes, "serving_since", dies_at_start)
    watcher = Supervisor(plan, Settings(state_dir=tmp_path), RestartPolicy())
    watcher.check(0.0)
    del running["ivr-1"]  # killed
    launched_at = []
    for now in range(0, 40):
        before = len(started)
        watcher.check(float(now))
        if len(started) > before:
            launched_at.append(now)
    assert launched_at == [1, 4, 9, 18], launched_at  # exits at 0, 2, 5, 10 (next round)
    assert len(started) == 4 and watcher.watched[0].restarts.gave_up
    assert "ivr-1 exited (exit 1 during start-up" in caplog.text
    assert "5 times in 60 s: gave up" in caplog.text
    assert read_state(plan)["processes"]["ivr-1"] == {
        "pid": 103, "restarts": 4, "gave_up": True, "exits": 5, "pinging": False,
        "state": "gave up"}
    monkeypatch.setattr(supervisor, "running_pid", lambda plan: 4242)
    parts = [{"name": "ivr-1", "health": "not running"}]
    assert annotate(parts, plan) == {"running": True, "pid": 4242,
                                     "log": str(supervisor.log_file(plan))}
    assert parts[0]["restarts"] == 4 and parts[0]["gave_up"]
    assert "supervisor gave up after 5 exits in 60 s" in parts[0]["health"]

    running["ivr-1"] = 500  # `hotline cluster up` started it again
    watcher.check(100.0)
    assert not watcher.watched[0].restarts.gave_up and watcher.watched[0].pid == 500
    assert "ivr-1 runs again (pid 500)" in caplog.text


PINGER = """
import sys
from hotline import systemd_notify
for line in sys.stdin:
    systemd_notify.notify("WATCHDOG=1")
    print("sent", flush=True)
"""
"""A role process stand-in that pings when told to and otherwise does nothing: once it stops
being told, it is as hung as a process whose event loop stopped turning."""


def test_a_process_that_stops_pinging_is_aborted_and_started_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A real process pings the supervisor's real socket (its pid comes from the kernel,
    SO_PASSCRED); the rounds run on a fake clock. Silent past WATCHDOG_S, it is aborted
    (SIGABRT) and due to be started again; one that never pinged is left alone."""
    caplog.set_level(logging.INFO, logger="hotline.cluster.supervisor")
    worker = RoleProcess("ivr-1", "ivr", "127.0.0.8", audiosocket_port=9092)
    quiet = RoleProcess("web-1", "web", "127.0.0.9", web_port=9093)
    plan = Plan(tmp_path, "127.0.0.4", 6390, "postgresql://x", [worker, quiet])
    env = {**os.environ, **watchdog.process_environment(plan.directory)}
    child = subprocess.Popen([sys.executable, "-c", PINGER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env, text=True)
    never = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE, env=env)
    processes_by_name = {"ivr-1": child, "web-1": never}

    def live_pid(plan: Plan, process: RoleProcess) -> tuple[int | None, str | None]:
        proc = processes_by_name[process.name]
        return (proc.pid, None) if proc.poll() is None else (None, "exited")

    started: list[RoleProcess] = []

    def launch(plan: Plan, process: RoleProcess, base: object) -> processes.Launched:
        started.append(process)
        return processes.Launched(FakeProcess(4000 + len(started)), 0)  # type: ignore[arg-type]

    monkeypatch.setattr(processes, "live_pid", live_pid)
    monkeypatch.setattr(processes, "launch", launch)
    watcher = Supervisor(plan, Settings(state_dir=tmp_path), RestartPolicy())
    try:
        watcher.check(0.0)

        def ping() -> None:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write("ping\n")
            child.stdin.flush()
            assert child.stdout.readline() == "sent\n"  # in the socket's queue now

        ping()
        watcher.check(1.0)
        assert read_state(plan)["processes"]["ivr-1"]["pinging"]
        ping()
        watcher.check(8.0)
        watcher.check(8.0 + watchdog.WATCHDOG_S)  # silent for WATCHDOG_S: not yet
        assert child.poll() is None
        watcher.check(9.0 + watchdog.WATCHDOG_S)
        assert child.wait(timeout=30) == -signal.SIGABRT
        assert "ivr-1 exited (hung: no watchdog ping for 11 s" in caplog.text
        assert read_state(plan)["processes"]["ivr-1"]["state"] == "waiting to start"
        watcher.check(20.0 + watchdog.WATCHDOG_S)  # its restart delay past: started again
        assert started == [worker] and watcher.watched[0].restarts.restarts == 1
        assert never.poll() is None  # never pinged: not watched for pings
    finally:
        for proc in (child, never):
            proc.kill()
            proc.wait()
        if watcher.pings is not None:
            watcher.pings.close()
