"""``hotline cluster up`` with a standby control in the plan (hotline/cluster/processes.py):
a control after the plan's first counts as started once it logs that it stands by (it
never logs "up" until it takes over); the first must be up, since it migrates the
database."""

from __future__ import annotations

from pathlib import Path

from hotline.cluster.plan import Plan, RoleProcess
from hotline.cluster.processes import _logged_up
from hotline.roles.control_lease import STANDBY_LINE

FIRST = RoleProcess("control", "control", "127.0.0.5")
SECOND = RoleProcess("control-2", "control", "127.0.0.10")


def plan(tmp_path: Path) -> Plan:
    return Plan(tmp_path, "127.0.0.4", 6390, "postgresql://x", [FIRST, SECOND])


def logs(made: Plan, process: RoleProcess, text: str) -> None:
    path = made.log_file(process)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_second_control_is_started_once_it_stands_by(tmp_path: Path) -> None:
    made = plan(tmp_path)
    standby = f"INFO hotline.roles.control_lease {STANDBY_LINE} host:1:ab\n"
    logs(made, SECOND, "INFO starting\n")
    assert not _logged_up(made, SECOND, 0)
    logs(made, SECOND, "INFO starting\n" + standby)
    assert _logged_up(made, SECOND, 0)
    logs(made, FIRST, standby)  # the first control must really be up
    assert not _logged_up(made, FIRST, 0)
    logs(made, FIRST, standby + "INFO hotline control up: AMI ...\n")
    assert _logged_up(made, FIRST, 0)
