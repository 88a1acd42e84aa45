"""bench.load's pooled callers (one SIPp per call kind): the split of the plans, the
injection file, the scenario each kind's SIPp runs and what a call's log lines became. The
whole driver runs against a real Asterisk in ``python -m bench.load`` (BENCHMARKS.md)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench.load_calls import DriveLimits, Mix, Planner, SpeechAudio
from bench.load_pool import injection, render, result_of, split
from hotline.tools.sipp import key_steps


def planner(tmp_path: Path, mix: str = "lookup=40,agent=30,speech=30") -> Planner:
    audio = tmp_path / "speech-ko.ulaw"
    audio.write_bytes(b"\xff" * 800)
    return Planner(Mix.parse(mix), "20261207001", SpeechAudio(audio, 3.5))


def test_each_kind_gets_its_share_of_the_rate_and_of_the_concurrency(tmp_path: Path) -> None:
    pools = split(planner(tmp_path), DriveLimits(8.0, 80, 45.0, 360, 70.0))
    assert sorted(p.kind for p in pools) == ["agent", "lookup", "speech"]
    assert sum(len(p.plans) for p in pools) == 360
    assert sum(p.rate for p in pools) == pytest.approx(8.0)
    assert 80 <= sum(p.limit for p in pools) <= 82  # rounded up, one per kind at most
    seqs = sorted(plan.seq for p in pools for plan in p.plans)
    assert seqs == list(range(1, 361))
    for pool in pools:
        assert {plan.kind for plan in pool.plans} == {pool.kind}
        assert pool.limit >= 1


def test_the_injection_file_names_each_call_in_order(tmp_path: Path) -> None:
    [pool] = split(planner(tmp_path, "lookup=1"), DriveLimits(1.0, 5, 10.0, 3, 10.0))
    path = injection(pool.plans, "L2", tmp_path / "lookup.csv")
    assert path.read_text(encoding="utf-8").splitlines() == [
        "SEQUENTIAL", "1;张三 L2-0001;", "2;张三 L2-0002;", "3;张三 L2-0003;"]


def test_a_kinds_scenario_takes_the_name_from_the_injection_file_and_tags_its_lines(
        tmp_path: Path) -> None:
    [pool] = split(planner(tmp_path, "speech=1"), DriveLimits(1.0, 5, 10.0, 2, 10.0))
    plan = pool.plans[0]
    path = render(tmp_path, kind="speech", caller_number=plan.number, caller_name="[field1]",
                  audio=str(plan.audio), steps=key_steps(plan.keys, 1, tmp_path),
                  hold_ms=plan.hold_ms, answer_timeout_ms=10_000, authenticate=False,
                  headers=[], telephone_event=True, codecs=["PCMU"], log_suffix=" [field0]")
    text = path.read_text(encoding="utf-8")
    ET.fromstring(text.encode())  # well-formed
    logs = [e.get("message") for e in ET.fromstring(text.encode()).iter("log")]
    assert logs[0] == "start [call_id] [field0]"
    assert {"answered [call_id] [field0]", "remote_bye [field0]", "local_bye [field0]",
            "no_remote_bye [field0]"} <= set(logs)
    assert 'From: "[field1]" <sip:13600136000@' in text


def test_what_a_calls_lines_became() -> None:
    done = result_of(["answered abc-1 7", "remote_bye 7"], timed_out=False)
    assert (done.answered, done.hung_up_by, done.call_id) == (True, "remote", "abc-1")
    stuck = result_of(["answered abc-2 8", "no_remote_bye 8", "local_bye 8"], timed_out=False)
    assert stuck.hung_up_by == "local"
    never = result_of([], timed_out=True)
    assert (never.answered, never.hung_up_by, never.timed_out) == (False, None, True)
