"""The test bed's supervisor (hotline/cluster/supervisor.py): its restart policy with a fake
clock (the delay doubles per exit of the last minute, capped; the burst's last exit gives
up), and how ``hotline cluster status`` shows restarts and a process given up on. The
supervisor itself, killing a real control: tests/cluster/test_supervisor.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline.cluster import processes
from hotline.cluster.launcher import supervisor_line
from hotline.cluster.plan import Plan, RoleProcess
from hotline.cluster.processes import _logged_up
from hotline.cluster.supervisor import RestartPolicy, Restarts
from hotline.roles.control_lease import STANDBY_LINE


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
