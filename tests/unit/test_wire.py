"""The wire format of bus events (crm/telephony/wire.py): every event class has a codec, every
event reads back equal, and what cannot be read says why instead of vanishing."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from crm.errors import (
    InvalidInput,
    UnknownEventType,
    UnsupportedEventVersion,
    WireFormatError,
)
from crm.telephony import events, wire
from crm.telephony.events import (
    AgentStatusChanged,
    BusEvent,
    CallEnded,
    CallStarted,
    CallStep,
    QueueSnapshot,
    WaitingCaller,
)
from crm.telephony.steps import SpeechHeard, Step
from tests.unit.test_call_steps import ALL_EXAMPLES

BUS_EVENT_CLASSES: tuple[type[Any], ...] = typing.get_args(BusEvent)
BEIJING = timezone(timedelta(hours=8))


def _sample(hint: Any, variant: int) -> Any:
    """A value of the hint's type that is not a field's default (variant picks among several)."""
    if hint == Step:
        return ALL_EXAMPLES[variant % len(ALL_EXAMPLES)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return (_sample(item, variant), _sample(item, variant + 1))
    if dataclasses.is_dataclass(hint):
        return full(typing.cast(type[Any], hint), variant)
    if hint is datetime:  # not UTC on purpose: the wire carries UTC, the instant is the same
        return datetime(2026, 12, 6, 18, 30, 15, 123456, tzinfo=BEIJING)
    return {str: f"张三 {variant}", int: 40 + variant, bool: True, float: 0.25}[hint]


def full(cls: type[Any], variant: int = 0) -> Any:
    """An instance with every field set to something other than its default."""
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _sample(hints[f.name], variant) for f in dataclasses.fields(cls)})


def least(cls: type[Any]) -> Any:
    """An instance with only the fields that have no default."""
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _sample(hints[f.name], 0) for f in dataclasses.fields(cls)
                  if f.default is dataclasses.MISSING
                  and f.default_factory is dataclasses.MISSING})


EXAMPLES = [maker(cls) for cls in BUS_EVENT_CLASSES for maker in (full, least)] + [
    CallStep("c-1", step) for step in ALL_EXAMPLES]


def test_every_bus_event_class_has_a_codec() -> None:
    missing = [cls.__name__ for cls in BUS_EVENT_CLASSES if cls not in wire.EVENT_VERSIONS]
    assert not missing, f"bus events without a wire codec (crm/telephony/wire.py): {missing}"
    assert set(wire.EVENT_VERSIONS) == set(BUS_EVENT_CLASSES), "a codec for a non-event"


def test_a_bus_event_class_without_a_codec_is_refused_by_name() -> None:
    @dataclasses.dataclass(frozen=True)
    class CallTransferred:
        call_id: str

    with pytest.raises(UnknownEventType, match="CallTransferred has no wire codec"):
        wire.encode(typing.cast(BusEvent, CallTransferred("c-1")))


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__ + (
    f"-{e.step.kind}" if isinstance(e, CallStep) else ""))
def test_every_event_reads_back_equal(event: BusEvent) -> None:
    text = wire.dumps(event)
    back = wire.loads(text)
    assert back == event
    assert type(back) is type(event)
    assert wire.loads(text.encode()) == event  # as a Redis stream field arrives (bytes)


def test_times_travel_in_utc_and_arrive_in_utc() -> None:
    at = datetime(2026, 12, 6, 18, 0, tzinfo=BEIJING)
    data = wire.encode(CallStarted("c-1", "13800000000", None, at=at))
    assert data["fields"]["at"] == "2026-12-06T10:00:00+00:00"
    back = wire.decode(data)
    assert back.at == at and back.at.utcoffset() == timedelta(0)


def test_nested_members_and_waiting_callers_keep_their_types() -> None:
    member = AgentStatusChanged("PJSIP/2001", "2001", "hotline", "on_call", paused=True,
                                member_name="李四", at=datetime(2026, 1, 2, tzinfo=UTC))
    snapshot = QueueSnapshot("hotline", members=(member,),
                             waiting=(WaitingCaller("PJSIP/gw-1", 1, 30, "12345", "张三"),))
    back = wire.loads(wire.dumps(snapshot))
    assert isinstance(back, QueueSnapshot)
    assert back.members == (member,) and isinstance(back.members, tuple)
    assert isinstance(back.waiting[0], WaitingCaller) and back.waiting[0].caller_name == "张三"


def test_the_envelope_names_type_and_version() -> None:
    data = json.loads(wire.dumps(CallEnded("c-1", "agent", "16 Normal Clearing")))
    assert data["type"] == "CallEnded" and data["v"] == 2
    assert data["fields"]["cause"] == "16 Normal Clearing"


def test_an_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownEventType, match="unknown bus event type 'CallTeleported'"):
        wire.decode({"type": "CallTeleported", "v": 1, "fields": {}})


def test_a_newer_version_is_a_clear_error() -> None:
    data = wire.encode(CallStarted("c-1", None, None))
    data["v"] = 3
    with pytest.raises(UnsupportedEventVersion, match="CallStarted version 3 cannot be read"):
        wire.decode(data)


def test_version_1_of_an_event_that_gained_its_node_is_still_read() -> None:
    """CallStarted and IvrLegAnnounced v2 name the media node; a v1 event (written before,
    still in a stream or journal) reads with no node."""
    data = wire.encode(CallStarted("c-1", None, None, node="media-2"))
    assert data["v"] == 2 and data["fields"]["node"] == "media-2"
    assert wire.decode(data) == CallStarted("c-1", None, None, at=data_at(data),
                                            node="media-2")
    del data["fields"]["node"]
    data["v"] = 1
    assert wire.decode(data) == CallStarted("c-1", None, None, at=data_at(data))


@pytest.mark.parametrize("event", [
    CallStep("c-1", SpeechHeard("查询 工单", 0.82, "status", "12345678"), node="media-2"),
    CallEnded("c-1", "agent", "16 Normal Clearing", party="caller", node="media-2"),
    events.AgentRinging("c-1", "hotline", "PJSIP/2001", "2001", node="media-2"),
    events.CallerQueued("c-1", "hotline", 1, node="media-2"),
], ids=["CallStep", "CallEnded", "AgentRinging", "CallerQueued"])
def test_a_call_step_and_end_name_their_node_in_v2_and_v1_still_reads(event: Any) -> None:
    """CallStep, CallEnded and the queue events v2 name the node they happened on; version 1
    (no node) still reads, as None; one box's events (node None) round-trip."""
    data = json.loads(wire.dumps(event))
    assert (data["v"], data["fields"]["node"]) == (2, "media-2")
    assert wire.loads(json.dumps(data)) == event
    del data["fields"]["node"]
    data["v"] = 1
    assert wire.decode(data) == dataclasses.replace(event, node=None)
    one_box = dataclasses.replace(event, node=None)
    assert wire.decode(wire.encode(one_box)) == one_box
    assert wire.encode(one_box)["fields"]["node"] is None


def test_a_version_of_a_step_event_newer_than_2_is_a_clear_error() -> None:
    data = wire.encode(CallStep("c-1", SpeechHeard("你好", 0.5, None, None)))
    data["v"] = 3
    with pytest.raises(UnsupportedEventVersion, match="CallStep version 3 cannot be read"):
        wire.decode(data)


def data_at(data: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(data["fields"]["at"])


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not JSON"),
    (b"\xff\xfe\x00garbage", "not JSON"),
    ('["CallStarted"]', "not an encoded bus event"),
    ('{"type":"CallStarted","v":1,"fields":{"call_id":"c-1"}}', "needs caller_number"),
    ('{"type":"CallStarted","v":1,"fields":{"call_id":7,"caller_number":null,'
     '"caller_name":null}}', "CallStarted.call_id: 7 is not a str"),
    ('{"type":"CallStarted","v":1,"fields":{"call_id":"c","caller_number":null,'
     '"caller_name":null,"colour":"red"}}', "has no field colour"),
    ('{"type":"CallEnded","v":1,"fields":{"call_id":"c","route":null,"cause":null,'
     '"at":"2026-12-06T10:00:00"}}', "has no time zone"),
    ('{"type":"CallerQueued","v":1,"fields":{"call_id":"c","queue":"q","position":true}}',
     "CallerQueued.position: True is not a int | None"),
    ('{"type":"CallStep","v":1,"fields":{"call_id":"c","step":"prompt"}}',
     "a call step expected"),
])
def test_text_that_is_not_an_event_says_why(text: str | bytes, message: str) -> None:
    with pytest.raises(WireFormatError, match=message) as caught:
        wire.loads(text)
    assert isinstance(caught.value, InvalidInput)


def test_events_that_do_not_fit_their_class_are_refused_when_written() -> None:
    with pytest.raises(WireFormatError, match="has no time zone"):
        wire.encode(CallStarted("c-1", None, None, at=datetime(2026, 12, 6)))
    with pytest.raises(WireFormatError, match="call_id: 5 is not a str"):
        wire.encode(CallStarted(typing.cast(str, 5), None, None))
    with pytest.raises(WireFormatError, match="a call step expected"):
        wire.encode(CallStep("c-1", typing.cast(Step, {"kind": "prompt"})))


def test_a_step_of_a_newer_version_is_kept_not_lost() -> None:
    step = {"kind": "speech", "v": 9, "text": "hello", "tone": "calm"}
    data = {"type": "CallStep", "v": 1, "fields": {"call_id": "c-1", "step": step,
                                                    "at": "2026-12-06T10:00:00+00:00"}}
    back = wire.decode(data)
    assert isinstance(back, CallStep) and back.kind == "speech"
    assert not isinstance(back.step, SpeechHeard)
    assert wire.decode(wire.encode(back)) == back


def test_every_event_class_is_in_the_union_that_the_test_introspects() -> None:
    """The dataclasses of events.py that carry a call id and an ``at`` are all bus events, so
    a new event class cannot slip past the codec check by staying out of BusEvent."""
    candidates = {obj for obj in vars(events).values()
                  if isinstance(obj, type) and dataclasses.is_dataclass(obj)
                  and obj.__module__ == events.__name__
                  and {"call_id", "at"} <= {f.name for f in dataclasses.fields(obj)}}
    assert candidates == set(BUS_EVENT_CLASSES)
