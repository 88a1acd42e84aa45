"""A durable journal of writes, so a write the database refused is retried after a restart
instead of being lost: call events for the consultation recorder (the default), and any other
JSON-serialisable record given its own ``name``, ``encode`` and ``decode`` (the desk hub's
audit entries of pop views).

Each event is appended as one JSON line before it is queued for the database; once it is
written, its sequence number is acknowledged. On start-up the events after the last
acknowledgement are replayed. The journal is compacted when everything in it is written.
Appends are flushed to the operating system at once (they survive a crash of the process);
``fsync=True`` also survives a power cut at the cost of a disk flush per event.

Journaled records carry residents' data (numbers, names, what they said), so the journal's
directory is 0700 and its files 0600, and written entries do not linger: the journal is
emptied once everything in it is written and it is over ``COMPACT_BYTES`` or its oldest
entry is older than ``COMPACT_AGE`` seconds, and when it is closed with nothing pending.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from crm.storage.private_files import open_private, private_dir, write_private
from crm.telephony import events as call_events
from crm.telephony.steps import StepFields, step_from_json, step_from_row

log = logging.getLogger(__name__)

COMPACT_BYTES = 1 << 20
COMPACT_AGE = 600.0
"""Seconds a written entry may stay in the journal (while others are being written)."""


def encode_event(event: Any) -> dict[str, Any]:
    fields = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, datetime):
            value = {"$dt": value.isoformat()}
        elif isinstance(value, StepFields):
            value = {"$step": value.to_json()}
        fields[f.name] = value
    return {"type": type(event).__name__, "fields": fields}


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "$dt" in value:
        return datetime.fromisoformat(value["$dt"])
    if isinstance(value, dict) and "$step" in value:
        return step_from_json(value["$step"])
    return value


def decode_event(data: dict[str, Any]) -> Any:
    cls = getattr(call_events, data["type"], None)
    if cls is None or not dataclasses.is_dataclass(cls):
        raise ValueError(f"unknown call event type {data['type']!r}")
    fields = {k: _decode_value(v) for k, v in data["fields"].items()}
    if cls is call_events.CallStep and "kind" in fields:  # journaled before steps were typed
        fields["step"] = step_from_row(fields.pop("kind"), fields.pop("detail", None))
    return cls(**fields)


def _as_is(data: Any) -> Any:
    return data


class EventJournal:
    def __init__(self, directory: Path, *, fsync: bool = False, name: str = "call-events",
                 encode: Callable[[Any], Any] = encode_event,
                 decode: Callable[[Any], Any] = decode_event) -> None:
        """``name`` names its files in ``directory``; ``encode`` turns a record into JSON data
        and ``decode`` back (call events by default; :func:`json_journal` for records that
        are JSON data already)."""
        private_dir(directory)
        self._log_path = directory / f"{name}.jsonl"
        self._ack_path = directory / f"{name}.ack"
        self._fsync = fsync
        self._encode = encode
        self._decode = decode
        self.acked = self._read_ack()
        self.last_seq = max([self.acked, *(seq for seq, _ in self._entries())])
        self._fh = open_private(self._log_path, "a", encoding="utf-8")
        self._compacted_at = time.monotonic()

    def _read_ack(self) -> int:
        try:
            return int(self._ack_path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            log.error("journal acknowledgement file %s is corrupt; replaying everything",
                      self._ack_path)
            return 0

    def _entries(self) -> Iterator[tuple[int, dict[str, Any]]]:
        try:
            lines = self._log_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                yield int(entry["seq"]), entry["event"]
            except (ValueError, KeyError, TypeError):
                # A torn last line after a crash: nothing acknowledged can be in it.
                log.warning("journal %s line %d is unreadable; skipped", self._log_path, number)

    def append(self, event: Any) -> int:
        self.last_seq += 1
        line = json.dumps({"seq": self.last_seq, "event": self._encode(event)},
                          ensure_ascii=False)
        self._fh.write(line + "\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())
        return self.last_seq

    def ack(self, seq: int) -> None:
        if seq <= self.acked:
            return
        self.acked = seq
        write_private(self._ack_path, str(seq))
        if self.acked == self.last_seq and (
                self._log_path.stat().st_size > COMPACT_BYTES
                or time.monotonic() - self._compacted_at > COMPACT_AGE):
            self._compact()

    def _compact(self) -> None:
        """Empty the journal (everything in it is written)."""
        self._fh.close()
        self._fh = open_private(self._log_path, "w", encoding="utf-8")
        self._compacted_at = time.monotonic()

    def pending(self) -> list[tuple[int, Any]]:
        """Events appended but not acknowledged, oldest first."""
        out = []
        for seq, data in self._entries():
            if seq > self.acked:
                try:
                    out.append((seq, self._decode(data)))
                except (ValueError, TypeError) as exc:
                    log.error("journal event %d cannot be replayed: %s", seq, exc)
        return out

    def close(self) -> None:
        if (self.acked == self.last_seq and not self._fh.closed
                and os.fstat(self._fh.fileno()).st_size > 0):
            self._compact()
        self._fh.close()


def json_journal(directory: Path, name: str, *, fsync: bool = False) -> EventJournal:
    """A journal of records that are JSON data already (dicts of str, int, lists...)."""
    return EventJournal(directory, fsync=fsync, name=name, encode=_as_is, decode=_as_is)
