"""The AMI wire format: stream decoding, malformed input, events, action encoding."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.ami.codec import (
    AmiEvent,
    AmiStreamDecoder,
    Headers,
    build_action,
    caller_identity,
    encode_action,
    parse_message,
)
from tests.ami_replay import load_session

SESSION = Path(__file__).resolve().parents[1] / "data" / "ami" / "queue_call.txt"
QUEUE_CALL = load_session(SESSION)
CALL_ID = "c7d4e2a0-5b1f-4e0a-9a61-2f0d3b8c9e11"
EXPECTED_NAMES = [
    "Newchannel",
    "Newstate",
    "VarSet",
    "UserEvent",
    "QueueCallerJoin",
    "Newchannel",
    "AgentCalled",
    "Newstate",
    "QueueCallerLeave",
    "AgentConnect",
    "AgentComplete",
    "Hangup",
    "Hangup",
]


def decode_in_pieces(data: bytes, cuts: list[int]) -> list[AmiEvent]:
    decoder = AmiStreamDecoder()
    events: list[AmiEvent] = []
    bounds = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(bounds):
        events.extend(decoder.feed(data[start:end]))
    return events


def test_recorded_queue_call_decodes_to_its_events() -> None:
    events = AmiStreamDecoder().feed(QUEUE_CALL)

    assert [e.name for e in events] == EXPECTED_NAMES
    start = events[3]
    assert start.get("UserEvent") == "HotlineCallStart"
    assert start.get("CallerIDName") == "张三"
    assert start.get("calleridname") == "张三"  # header names are case-insensitive
    agent_called = events[6]
    assert agent_called.get("DestChannel") == "PJSIP/2001-00000001"
    assert agent_called.get("MemberName") == "王芳"
    assert agent_called.chan_variables() == {"CALL_ID": CALL_ID, "IVR_ROUTE": "agent"}
    assert agent_called.chan_variables("Dest") == {"CALL_ID": CALL_ID, "IVR_ROUTE": ""}
    assert events[0].chan_variables() == {"CALL_ID": "", "IVR_ROUTE": ""}  # set later
    assert start.get_all("ChanVariable") == (f"CALL_ID={CALL_ID}", "IVR_ROUTE=")  # repeated
    assert float(start.get("Timestamp") or 0) > 1.7e9  # manager.conf: timestampevents=yes
    assert events[0].get("AccountCode") == ""
    assert events[-2].get("Cause-txt") == "Normal Clearing"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(QUEUE_CALL) - 1), max_size=40))
def test_any_split_of_the_stream_gives_the_same_events(cuts: list[int]) -> None:
    assert decode_in_pieces(QUEUE_CALL, cuts) == AmiStreamDecoder().feed(QUEUE_CALL)


def test_multibyte_character_split_across_reads_survives() -> None:
    data = "Event: UserEvent\r\nCallerName: 张三\r\n\r\n".encode()
    cut = data.index("张".encode()) + 1  # inside the three bytes of 张

    events = decode_in_pieces(data, [cut, cut + 1])

    assert [e.get("CallerName") for e in events] == ["张三"]


def test_greeting_gives_version_even_when_split() -> None:
    data = b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nMessage: ok\r\n\r\n"
    decoder = AmiStreamDecoder()

    assert decoder.feed(data[:9]) == []
    assert decoder.feed(data[9:33]) == []
    events = decoder.feed(data[33:])

    assert decoder.version == "11.0.0"
    assert [(e.name, e.is_response, e.get("Message")) for e in events] == [("Response", True, "ok")]


def test_stream_without_greeting_is_accepted() -> None:
    events = AmiStreamDecoder().feed(b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n")
    assert [e.name for e in events] == ["FullyBooted"]


def test_garbage_and_lines_without_colon_are_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = (
        b"complete garbage\r\nmore\r\n\r\n"
        b"Event: Hangup\r\nthis line has no colon\r\nUniqueid: 1.1\r\n\r\n"
        b"\x00\xff\xfe\r\n\r\n"
        b"Event: Newstate\r\n\r\n"
    )
    with caplog.at_level(logging.WARNING, logger="ivr.ami.codec"):
        events = AmiStreamDecoder().feed(data)

    assert [(e.name, e.get("Uniqueid")) for e in events] == [("Hangup", "1.1"), ("Newstate", None)]
    assert "complete garbage" in caplog.text
    assert "this line has no colon" in caplog.text


def test_huge_message_is_discarded_and_the_stream_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    huge = b"Event: Huge\r\nPayload: " + b"x" * 5000 + b"\r\n\r\n"
    data = b"Event: Before\r\n\r\n" + huge + b"Event: After\r\nA: 1\r\n\r\n"
    decoder = AmiStreamDecoder(max_message_chars=1000)

    with caplog.at_level(logging.WARNING, logger="ivr.ami.codec"):
        events = [e for i in range(0, len(data), 700) for e in decoder.feed(data[i : i + 700])]

    assert [e.name for e in events] == ["Before", "After"]
    assert "longer than 1000" in caplog.text
    assert caplog.text.count("longer than") == 1


def test_empty_value_at_end_of_message_is_kept() -> None:
    [event] = AmiStreamDecoder().feed(b"Response: Success\r\nVariable: X\r\nValue: \r\n\r\n")
    assert event.get("Value") == ""


def test_invalid_utf8_is_replaced_not_dropped() -> None:
    [event] = AmiStreamDecoder().feed(b"Event: X\r\nName: a\xffb\r\n\r\n")
    assert event.get("Name") == "a\ufffdb"


def test_legacy_follows_body_becomes_output() -> None:
    data = b"Response: Follows\r\nPrivilege: Command\r\nline one\n--END COMMAND--\r\n\r\n"
    [event] = AmiStreamDecoder().feed(data)
    assert event.is_response
    assert event.success
    assert "--END COMMAND--" in (event.get("Output") or "")


def test_headers_keep_every_value_of_repeated_keys() -> None:
    headers = Headers([("ChanVariable", "A=1"), ("chanvariable", "B=2=3"), ("Channel", "x")])
    event = AmiEvent("Newchannel", headers)

    assert headers["CHANVARIABLE"] == "A=1"
    assert event.get_all("ChanVariable") == ("A=1", "B=2=3")
    assert event.chan_variables() == {"A": "1", "B": "2=3"}
    assert event.chan_variables("Dest") == {}
    assert list(headers) == ["ChanVariable", "Channel"]
    assert "channel" in headers
    assert hash(event) == hash(AmiEvent("Newchannel", Headers(headers._pairs)))


def test_error_response_is_not_success() -> None:
    [event] = AmiStreamDecoder().feed(b"Response: Error\r\nMessage: Permission denied\r\n\r\n")
    assert not event.success


# panoramisk's Action creates an asyncio.Future, so actions are built inside a running loop.
async def test_action_encoding_has_crlf_and_action_id() -> None:
    action = build_action("Setvar", {"Channel": "PJSIP/1-1", "Variable": "LANG", "Value": "中"})
    text = encode_action(action).decode("utf-8")

    assert text.endswith("\r\n\r\n")
    assert "Action: Setvar\r\n" in text
    assert "Value: 中\r\n" in text
    assert "ActionID: " in text


async def test_list_values_repeat_the_header() -> None:
    text = encode_action(build_action("Originate", {"Variable": ["A=1", "B=2"]})).decode()
    assert "Variable: A=1\r\nVariable: B=2\r\n" in text


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("Setvar", {"Value": "x\r\nAction: Hangup"}),
        ("Setvar", {"Value": "x\nEvents: off"}),
        ("Setvar", {"Bad: key": "x"}),
        ("Set\r\nvar", {}),
        ("", {}),
    ],
)
async def test_header_injection_is_refused(name: str, fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="invalid AMI"):
        build_action(name, fields)


def test_caller_identity_is_the_snapshot_unescaped() -> None:
    """AMI C-escapes snapshot names (ast_escape_c) and PJSIP keeps SIP's quoted-pairs, so the
    display name sent as ``\"quoted\" it's`` arrives as ``\\\"quoted\\\" it\'s``. A field the
    dialplan appended after the snapshot never wins."""
    name = r'\\\"quoted\\\" it\'s ok\? a\tb \\\\'
    block = ("Event: UserEvent\r\nChannel: PJSIP/pstn-gateway-00000001\r\n"
             f"CallerIDNum: 13900139000\r\nCallerIDName: {name}\r\n"
             "UserEvent: HotlineCallStart\r\nCallerIDNum: 13800138000\r\n"
             "CallerIDName: forged\r\n")
    event = parse_message(block)
    assert event is not None
    assert caller_identity(event) == ("13900139000", '"quoted" it\'s ok? a\tb \\')
    empty = parse_message("Event: Newchannel\r\nCallerIDNum: <unknown>\r\nCallerIDName: \r\n")
    assert empty is not None and caller_identity(empty) == (None, None)
