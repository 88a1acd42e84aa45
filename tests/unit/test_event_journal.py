import json
from datetime import UTC, datetime
from pathlib import Path

from crm.storage.journal import EventJournal
from crm.telephony.events import CallEnded, CallStarted, CallStep
from crm.telephony.steps import KeysEntered, StatusTold

T = datetime(2026, 11, 22, 9, tzinfo=UTC)


def test_unacknowledged_events_survive_a_restart(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path)
    events = [CallStarted("c1", "13800138000", "张三", "PJSIP/x", at=T),
              CallStep("c1", KeysEntered("1"), at=T),
              CallEnded("c1", "agent", "16", at=T)]
    seqs = [journal.append(e) for e in events]
    journal.ack(seqs[0])
    journal.close()

    reopened = EventJournal(tmp_path)
    assert [e for _, e in reopened.pending()] == events[1:]
    assert reopened.append(CallStep("c2", KeysEntered("2"))) == seqs[-1] + 1


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path)
    journal.append(CallStep("c1", KeysEntered("9"), at=T))
    journal.close()
    with (tmp_path / "call-events.jsonl").open("a") as fh:
        fh.write('{"seq": 2, "event": {"type": "CallSt')
    assert [e.call_id for _, e in EventJournal(tmp_path).pending()] == ["c1"]


def test_compacts_when_everything_is_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("crm.storage.journal.COMPACT_BYTES", 10)
    journal = EventJournal(tmp_path)
    last = [journal.append(CallStep("c1", KeysEntered(""), at=T)) for _ in range(3)][-1]
    journal.ack(last)
    assert (tmp_path / "call-events.jsonl").stat().st_size == 0
    assert journal.append(CallStep("c1", KeysEntered(""), at=T)) == last + 1
    journal.close()
    assert [s for s, _ in EventJournal(tmp_path).pending()] == [last + 1]


def test_call_steps_journaled_before_steps_were_typed_are_replayed(tmp_path: Path) -> None:
    """A journal left by the previous version holds steps as kind + detail, unversioned."""
    old = {"type": "CallStep", "fields": {"call_id": "c1", "kind": "told",
                                          "detail": {"case": "1", "stage": "accepted",
                                                     "verified": False},
                                          "at": {"$dt": T.isoformat()}}}
    (tmp_path / "call-events.jsonl").write_text(json.dumps({"seq": 1, "event": old}) + "\n")
    journal = EventJournal(tmp_path)
    assert journal.pending() == [(1, CallStep("c1", StatusTold("1", "accepted"), at=T))]
    journal.append(CallStep("c1", KeysEntered("2"), at=T))
    line = (tmp_path / "call-events.jsonl").read_text().splitlines()[-1]
    assert json.loads(line)["event"]["fields"]["step"] == {
        "$step": {"kind": "keys", "v": 1, "keys": "2"}}
    journal.close()
