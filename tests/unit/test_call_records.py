"""Asterisk's channel event record (cel_custom JSON lines) read back: lines recorded from
the test Asterisk (tests/data/asterisk/cel_calls.jsonl: a call an agent answered and hung
up, then a call whose caller hung up waiting in the queue), damaged lines, the calls' ends."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm.consultations.reconciliation import reconciled_events
from crm.telephony.events import (
    AgentAnswered,
    AgentCallEnded,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
)
from ivr.asterisk.call_records import (
    MalformedRecord,
    call_endings,
    parse_line,
    read_events,
)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "asterisk" / "cel_calls.jsonl"
ANSWERED = "58b1a737-8d0e-4667-b7f3-2de38bc2808e"
ABANDONED = "a4acce0d-b344-4bc4-9c9e-f01df434ef2e"


def at(seconds: str) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)


def lines() -> list[str]:
    return SAMPLE.read_text(encoding="utf-8").splitlines()


def test_a_recorded_line_reads_as_its_event() -> None:
    event = parse_line(lines()[1])
    assert event.kind == "HOTLINE_CALL"
    assert event.at == at("1796551297.525822")
    assert event.channel == "PJSIP/pstn-gateway-00000000"
    assert (event.uniqueid, event.linkedid) == ("1796551297.0", "1796551297.0")
    assert event.extra == {"extra": ANSWERED}
    hangup = parse_line(lines()[4])
    assert hangup.kind == "HANGUP"
    assert hangup.extra["hangupsource"] == "PJSIP/2001-00000001"


def test_an_agent_answered_call_ends_as_recorded() -> None:
    [end] = call_endings(read_events(SAMPLE), [ANSWERED])
    assert end.call_id == ANSWERED
    assert end.ended_at == at("1796551300.800632")  # the caller's channel's HANGUP
    assert end.party == "agent"  # the dialplan's HANGUP_PARTY: the agent hung up first
    assert end.route == "fallback" and end.cause == "16 Normal Clearing"
    assert end.queued_at == at("1796551297.526657") and end.queue == "hotline"
    assert end.answered_at == at("1796551297.775750")
    assert end.agent_interface == "PJSIP/2001"
    assert end.agent_ended_at == at("1796551300.784856")


def test_a_caller_who_hung_up_in_the_queue() -> None:
    [end] = call_endings(read_events(SAMPLE), [ABANDONED])
    assert end.ended_at == at("1796551307.282674")
    assert end.party == "caller"  # HangupSource is the caller's own channel
    assert end.cause == "16 Normal Clearing"  # a BYE leaves the cause at 0
    assert end.answered_at is None and end.agent_interface is None
    assert end.queued_at == at("1796551303.790756")


def test_only_the_asked_calls_and_only_ended_ones() -> None:
    assert call_endings(read_events(SAMPLE), ["no-such-call"]) == []
    assert [e.call_id for e in call_endings(read_events(SAMPLE), [ANSWERED, ABANDONED])] == [
        ANSWERED, ABANDONED]
    live = [parse_line(line) for line in lines()[:-2]]  # the second caller still waits
    assert call_endings(live, [ABANDONED]) == []


def test_damaged_lines_are_skipped_with_a_clear_log(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    good = lines()
    record = tmp_path / "hotline-calls.json"
    record.write_text("\n".join([
        good[7][:60],  # a line cut short (Asterisk killed while writing)
        "not json at all",
        '["a", "list"]',
        good[8].replace('"eventtime":"1796551303.777163"', '"eventtime":"yesterday"'),
        good[8].replace('"uniqueid":"1796551303.0",', ""),
        *good[7:],
        "\udcff".encode("utf-8", "surrogateescape").decode("latin-1"),
    ]) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, "ivr.asterisk.call_records"):
        events = list(read_events(record))
    assert len(events) == 5
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 6, messages
    assert f"{record} line 1 skipped: not JSON" in messages[0]
    assert "line 3 skipped: not a JSON object" in messages[2]
    assert "line 4 skipped: eventtime 'yesterday' is not seconds since the epoch" in messages[3]
    assert "line 5 skipped: no uniqueid" in messages[4]
    [end] = call_endings(events, [ABANDONED])
    assert end.party == "caller"


def test_no_record_is_no_event(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "ivr.asterisk.call_records"):
        assert list(read_events(tmp_path / "missing.json")) == []
    assert "no channel event record" in caplog.text


def test_reading_from_a_time_skips_the_older_part(tmp_path: Path) -> None:
    """A long record is read from about the oldest open call on (binary search), the same
    events as reading it whole."""
    record = tmp_path / "hotline-calls.json"
    old = lines()[:7]
    filler = [old[0].replace("1796551297.021022", f"{1796540000 + i}.000000")
              for i in range(3000)]
    record.write_text("\n".join(filler + lines()) + "\n", encoding="utf-8")
    since = at("1796551200")
    read = list(read_events(record, since=since))
    assert len(read) < 200  # not the whole record
    assert [e for e in read if e.at >= since] == [parse_line(line) for line in lines()]


def test_malformed_record_names_the_problem() -> None:
    with pytest.raises(MalformedRecord, match="no eventtype"):
        parse_line('{"eventtime": "1.0", "uniqueid": "1.0", "linkedid": "1.0"}')


def test_the_missed_events_of_an_answered_call() -> None:
    [end] = call_endings(read_events(SAMPLE), [ANSWERED])
    events = reconciled_events(end, known_kinds=set())
    assert [type(e) for e in events] == [CallerQueued, AgentAnswered, AgentCallEnded, CallEnded]
    answered = events[1]
    assert isinstance(answered, AgentAnswered)
    assert answered.extension == "2001" and answered.hold_time_s == 0
    completed = events[2]
    assert isinstance(completed, AgentCallEnded)
    assert completed.at == end.agent_ended_at and completed.reason == "agent"
    assert completed.talk_time_s == 3
    # A queue step the consultation has already is not repeated.
    kinds = [type(e) for e in reconciled_events(end, known_kinds={"queued", "agent_answered"})]
    assert kinds == [AgentCallEnded, CallEnded]


def test_the_missed_events_of_an_abandoned_call() -> None:
    [end] = call_endings(read_events(SAMPLE), [ABANDONED])
    events = reconciled_events(end, known_kinds=set())
    assert [type(e) for e in events] == [CallerQueued, CallerAbandoned, CallEnded]
    final = events[-1]
    assert isinstance(final, CallEnded)
    assert (final.at, final.party, final.route) == (end.ended_at, "caller", "fallback")
