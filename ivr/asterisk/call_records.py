"""Asterisk's own record of each call (channel event logging, cel_custom's JSON lines), read
to learn how calls ended while the hotline service was not running.

The rendered ``cel.conf`` / ``cel_custom.conf`` have Asterisk write one JSON object per channel
event to ``<log dir>/`` :data:`CEL_FILE`. The dialplan ties the caller's channel
to its CALL_ID (``CELGenUserEvent(HOTLINE_CALL, <CALL_ID>)``) and its hang-up handler adds
the party, route and queue it knows (``HOTLINE_CALL_END``); Asterisk adds when a channel answered,
entered the queue (APP_START of Queue) and hung up (HANGUP, with the channel that hung up).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crm.consultations.reconciliation import RecordedEnd
from ivr.asterisk.hangup import cause_code, describe_cause, hangup_party

log = logging.getLogger(__name__)

CEL_FILE = "hotline-calls.json"
"""The file name cel_custom writes in Asterisk's log directory."""

CALL_TAG = "HOTLINE_CALL"
END_TAG = "HOTLINE_CALL_END"
SEEK_BLOCK = 64 * 1024
"""Bytes read at a time when looking for where the record's recent part begins."""


class MalformedRecord(ValueError):
    """A line of the channel event record that is not one event as cel_custom writes it."""


@dataclass(frozen=True)
class ChannelEvent:
    """One line of the record: a channel event (the user-defined ones by their own name)."""

    kind: str
    at: datetime
    channel: str
    uniqueid: str
    linkedid: str
    app: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def parse_line(line: str) -> ChannelEvent:
    """One JSON line as cel_custom writes it (see cel_custom.conf); :class:`MalformedRecord`
    says what is wrong with any other."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise MalformedRecord(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise MalformedRecord("not a JSON object")
    missing = [k for k in ("eventtype", "eventtime", "uniqueid", "linkedid")
               if not isinstance(raw.get(k), str) or not raw[k]]
    if missing:
        raise MalformedRecord(f"no {', '.join(missing)}")
    try:
        at = datetime.fromtimestamp(float(raw["eventtime"]), UTC)
    except (ValueError, OverflowError, OSError):
        raise MalformedRecord(f"eventtime {raw['eventtime']!r} is not seconds since the "
                              "epoch") from None
    extra: Any = raw.get("eventextra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra else {}
        except json.JSONDecodeError:
            raise MalformedRecord("eventextra is not JSON") from None
    if not isinstance(extra, dict):
        raise MalformedRecord("eventextra is not a JSON object")
    return ChannelEvent(kind=raw.get("userdeftype") or raw["eventtype"], at=at,
                        channel=str(raw.get("channame") or ""), uniqueid=raw["uniqueid"],
                        linkedid=raw["linkedid"], app=str(raw.get("appname") or ""),
                        extra=extra)


def read_events(path: Path, *, since: datetime | None = None) -> Iterator[ChannelEvent]:
    """The events of the record at ``path``, in the order written; from about ``since`` on
    when given (the record only grows: earlier lines are not read). A line that is not an
    event is logged (file, line, what is wrong) and skipped; a missing file is no event."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        log.warning("no channel event record at %s: calls that ended while the service was "
                    "down cannot be reconciled (is cel_custom loaded?)", path)
        return
    except OSError as exc:
        log.warning("channel event record %s unreadable (%s): calls that ended while the "
                    "service was down cannot be reconciled", path, exc)
        return
    with handle:
        start = _offset_since(handle, since) if since is not None else 0
        handle.seek(start)
        where = "line" if start == 0 else f"byte {start} +line"
        for number, raw in enumerate(handle, 1):
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                yield parse_line(text)
            except MalformedRecord as exc:
                log.warning("%s %s %d skipped: %s", path, where, number, exc)


def _offset_since(handle: Any, since: datetime) -> int:
    """The offset of a line start at or before the first event at ``since`` (binary search
    over the file: events are appended in time order)."""
    size = os.fstat(handle.fileno()).st_size
    low, high = 0, size
    while high - low > SEEK_BLOCK:
        middle = (low + high) // 2
        handle.seek(middle)
        handle.readline()  # the rest of a line cut in the middle
        at = _first_time(handle)
        if at is None or at >= since:
            high = middle
        else:
            low = middle
    return _line_start(handle, low)


def _first_time(handle: Any) -> datetime | None:
    for _ in range(16):
        line = handle.readline()
        if not line:
            return None
        try:
            return parse_line(line.decode("utf-8", errors="replace")).at
        except MalformedRecord:
            continue
    return None


def _line_start(handle: Any, offset: int) -> int:
    if offset == 0:
        return 0
    handle.seek(offset - 1)
    handle.readline()
    return handle.tell()


@dataclass
class _Call:
    call_id: str
    channel: str
    uniqueid: str
    linkedid: str
    queued_at: datetime | None = None
    queue: str | None = None
    answered_at: datetime | None = None
    answered_by: str | None = None
    agent_ended_at: datetime | None = None
    ended_at: datetime | None = None
    hangup_source: str | None = None
    cause: int = 0
    party: str | None = None
    route: str | None = None


def call_endings(events: Iterable[ChannelEvent], call_ids: Iterable[str]) -> list[RecordedEnd]:
    """How each of ``call_ids`` ended, as far as the record tells: only calls whose caller's
    channel hung up (a call still live has no end yet)."""
    wanted = set(call_ids)
    by_channel: dict[str, _Call] = {}
    by_link: dict[str, list[_Call]] = {}
    agent_legs: dict[str, _Call] = {}
    for event in events:
        if event.kind == CALL_TAG:
            call_id = str(event.extra.get("extra") or "").strip()
            if call_id in wanted:
                call = _Call(call_id, event.channel, event.uniqueid, event.linkedid)
                by_channel[event.uniqueid] = call
                by_link.setdefault(event.linkedid, []).append(call)
            continue
        call = by_channel.get(event.uniqueid)
        if call is not None:
            _caller_event(call, event)
        elif event.kind == "ANSWER":
            for other in by_link.get(event.linkedid, ()):
                if other.answered_at is None and other.ended_at is None:
                    other.answered_at, other.answered_by = event.at, event.channel
                    agent_legs[event.uniqueid] = other
        elif event.kind == "HANGUP" and event.uniqueid in agent_legs:
            agent_legs.pop(event.uniqueid).agent_ended_at = event.at
    return [_ending(call) for call in by_channel.values() if call.ended_at is not None]


def _caller_event(call: _Call, event: ChannelEvent) -> None:
    if event.kind == "APP_START" and event.app.lower() == "queue":
        call.queued_at = call.queued_at or event.at
    elif event.kind == END_TAG:
        fields = dict(part.partition("=")[::2]
                      for part in str(event.extra.get("extra") or "").split("&"))
        call.party = fields.get("party") or None
        call.route = fields.get("route") or None
        call.queue = fields.get("queue") or None
    elif event.kind == "HANGUP":
        call.ended_at = event.at
        call.hangup_source = str(event.extra.get("hangupsource") or "") or None
        call.cause = cause_code(str(event.extra.get("hangupcause", "")))


def _ending(call: _Call) -> RecordedEnd:
    assert call.ended_at is not None
    party = hangup_party(dialplan_party=call.party, hangup_source=call.hangup_source,
                         caller_channel=call.channel)
    # A caller's BYE leaves the channel's own cause at 0 (ivr.asterisk.hangup): a BYE is a
    # normal clearing.
    cause = call.cause or (16 if party == "caller" else 0)
    return RecordedEnd(call_id=call.call_id, ended_at=call.ended_at, party=party,
                       route=call.route, cause=describe_cause(cause),
                       queued_at=call.queued_at, queue=call.queue, answered_at=call.answered_at,
                       agent_interface=_interface(call.answered_by),
                       agent_ended_at=call.agent_ended_at)


def _interface(channel: str | None) -> str | None:
    """PJSIP/2001-0000002a -> PJSIP/2001."""
    if not channel:
        return None
    return channel.rsplit("-", 1)[0] if "-" in channel else channel


class CallRecordReader:
    """Reads how calls ended from the record at ``path`` (for the AMI resynchronisation: calls
    that ended while the link was down), off the event loop."""

    def __init__(self, path: Path, *, look_back: timedelta = timedelta(hours=12)) -> None:
        self.path = path
        self.look_back = look_back
        """How far back the record is read for calls whose start is not given."""

    async def endings(self, call_ids: Iterable[str],
                      since: datetime | None = None) -> dict[str, RecordedEnd]:
        wanted = list(call_ids)
        if not wanted:
            return {}
        since = since or datetime.now(UTC) - self.look_back
        ends = await asyncio.to_thread(
            lambda: call_endings(read_events(self.path, since=since), wanted))
        return {end.call_id: end for end in ends}
