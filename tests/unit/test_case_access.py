"""The need-to-know rule's pure part (crm.cases.access): decisions from ties and roles, and
which calls a case may be linked to. The query and the desk are tested over real databases in
tests/storage/test_case_access.py and tests/storage/test_roles_matrix.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm.cases.access import (
    RECENT_WINDOW,
    CaseTies,
    Line,
    Viewer,
    answered_recently,
    may_change_stage,
    may_link,
    may_read,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NONE = CaseTies(exists=True)


@pytest.mark.parametrize("ties,read,change", [
    (CaseTies(), False, False),  # no such case
    (NONE, False, False),
    (CaseTies(True, created=True), True, True),
    (CaseTies(True, on_current_call=True), True, True),
    (CaseTies(True, on_recent_call=True), True, False),
    (CaseTies(True, callers_case=True), True, False),
    (CaseTies(True, on_recent_call=True, callers_case=True), True, False),
])
def test_agents_by_tie(ties: CaseTies, read: bool, change: bool) -> None:
    assert may_read("agent", ties).allowed is read
    assert may_change_stage("agent", ties).allowed is change


@pytest.mark.parametrize("role", ["supervisor", "admin"])
def test_supervisors_and_admins_see_and_move_every_case(role: str) -> None:
    assert may_read(role, CaseTies()).allowed and may_change_stage(role, NONE).allowed


def test_refusals_say_what_to_do() -> None:
    assert "Link it to the call you are on" in may_read("agent", NONE).reason
    assert "supervisor" in may_change_stage("agent", CaseTies(True, callers_case=True)).reason


def test_linking_needs_an_answered_or_recent_call_of_ones_own() -> None:
    def agent(phase: str | None) -> Viewer:
        return Viewer(1, "agent1", "agent", Line("c1", phase) if phase else None)

    recent, old = NOW - timedelta(days=2), NOW - RECENT_WINDOW - timedelta(minutes=1)
    assert may_link(agent("connected"), "c1", answered_by_viewer=True, started_at=NOW,
                    ended_at=None, now=NOW).allowed
    assert may_link(agent("ended"), "c1", answered_by_viewer=True, started_at=NOW,
                    ended_at=None, now=NOW).allowed
    ringing = may_link(agent("ringing"), "c1", answered_by_viewer=False, started_at=NOW,
                       ended_at=None, now=NOW)
    assert not ringing.allowed and "answer" in ringing.reason
    assert may_link(agent(None), "c2", answered_by_viewer=True, started_at=recent,
                    ended_at=None, now=NOW).allowed
    assert not may_link(agent(None), "c2", answered_by_viewer=True, started_at=old,
                        ended_at=old, now=NOW).allowed
    assert not may_link(agent(None), "c2", answered_by_viewer=False, started_at=recent,
                        ended_at=recent, now=NOW).allowed
    boss = Viewer(3, "supervisor1", "supervisor")
    assert may_link(boss, "c2", answered_by_viewer=False, started_at=old, ended_at=old,
                    now=NOW).allowed


def test_a_call_counts_as_recent_by_its_start_or_its_end() -> None:
    edge = NOW - RECENT_WINDOW
    assert answered_recently(edge, None, now=NOW)
    assert not answered_recently(edge - timedelta(seconds=1), None, now=NOW)
    assert answered_recently(edge - timedelta(days=1), NOW - timedelta(hours=1), now=NOW)
    assert not answered_recently(None, None, now=NOW)
