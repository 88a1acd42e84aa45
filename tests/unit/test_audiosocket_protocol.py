"""AudioSocket wire format: encoding, incremental parsing, malformed input."""

from __future__ import annotations

import itertools
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.audiosocket.protocol import (
    DEFAULT_MAX_PAYLOAD,
    DTMF_KEYS,
    HEADER,
    Audio,
    AudioSocketParser,
    AudioSocketProtocolError,
    Dtmf,
    DuplicateUuidError,
    Error,
    Hangup,
    InvalidAudioError,
    InvalidDtmfError,
    InvalidUuidError,
    Message,
    MessageKind,
    MissingUuidError,
    ParserFailedError,
    PayloadTooLargeError,
    UnknownMessageKindError,
    Uuid,
    encode,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_hangup,
    encode_uuid,
)

CALL_ID = uuid.UUID("0b9a5c2e-6a55-4f57-9a0e-3f1b6d2c8e41")


def raw(kind: int, payload: bytes) -> bytes:
    return struct.pack("!BH", kind, len(payload)) + payload


def started() -> AudioSocketParser:
    parser = AudioSocketParser()
    assert parser.feed(encode_uuid(CALL_ID)) == [Uuid(CALL_ID)]
    return parser


# --- encoding -----------------------------------------------------------------------------


def test_kinds_match_asterisk() -> None:
    assert [int(k) for k in MessageKind] == [0x00, 0x01, 0x03, 0x10, 0xFF]


def test_encodings_are_kind_length_payload() -> None:
    assert encode_hangup() == b"\x00\x00\x00"
    assert encode_uuid(CALL_ID) == b"\x01\x00\x10" + CALL_ID.bytes
    assert encode_dtmf("#") == b"\x03\x00\x01#"
    assert encode_audio(b"\x01\x02" * 160) == b"\x10\x01\x40" + b"\x01\x02" * 160
    assert encode_error(0x01) == b"\xff\x00\x01\x01"
    assert encode_error() == b"\xff\x00\x00"


@pytest.mark.parametrize("key", ["", "12", "E", "a", "x", "٣"])
def test_encode_dtmf_rejects_non_keys(key: str) -> None:
    with pytest.raises(ValueError, match="DTMF"):
        encode_dtmf(key)


def test_encode_audio_rejects_odd_and_oversized() -> None:
    with pytest.raises(ValueError, match="16-bit"):
        encode_audio(b"\x00" * 3)
    with pytest.raises(ValueError, match="protocol maximum"):
        encode_audio(bytes(0x10000))


# --- parsing --------------------------------------------------------------------------------


def test_parses_a_session_in_one_chunk() -> None:
    stream = (
        encode_uuid(CALL_ID)
        + encode_audio(bytes(320))
        + encode_dtmf("5")
        + encode_audio(b"\x10\x00" * 480)  # another packetisation: 60 ms
        + encode_error(0x02)
        + encode_hangup()
    )
    assert AudioSocketParser().feed(stream) == [
        Uuid(CALL_ID),
        Audio(bytes(320)),
        Dtmf("5"),
        Audio(b"\x10\x00" * 480),
        Error(code=2, payload=b"\x02"),
        Hangup(),
    ]


def test_error_description() -> None:
    assert Error.from_payload(b"\x02").description == "frame forwarding"
    assert Error.from_payload(b"").description == "unspecified error"
    assert Error.from_payload(b"\x42").description == "error code 0x42"


def test_truncated_message_waits_for_the_rest() -> None:
    parser = started()
    message = encode_audio(b"\x01\x00" * 160)
    assert parser.feed(message[:1]) == []
    assert parser.feed(message[1:3]) == []  # header complete, payload missing
    assert parser.feed(message[3:-1]) == []
    assert parser.buffered == len(message) - 1
    assert parser.feed(message[-1:]) == [Audio(b"\x01\x00" * 160)]
    assert parser.buffered == 0


def test_empty_feed_is_harmless() -> None:
    parser = AudioSocketParser()
    assert parser.feed(b"") == []
    assert parser.buffered == 0


@pytest.mark.parametrize(
    ("stream", "error", "text"),
    [
        (raw(0x42, b""), UnknownMessageKindError, "0x42"),
        (raw(0x01, bytes(15)), InvalidUuidError, "16 bytes"),
        (raw(0x01, bytes(17)), InvalidUuidError, "16 bytes"),
        (raw(0x03, b"x"), MissingUuidError, "first AudioSocket message"),
        (raw(0x10, bytes(320)), MissingUuidError, "AUDIO"),
        (raw(0x00, b""), MissingUuidError, "HANGUP"),
    ],
)
def test_bad_first_message(stream: bytes, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        AudioSocketParser().feed(stream)


@pytest.mark.parametrize(
    ("stream", "error", "text"),
    [
        (raw(0x03, b""), InvalidDtmfError, "got 0 bytes"),
        (raw(0x03, b"12"), InvalidDtmfError, "got 2 bytes"),
        (raw(0x03, b"x"), InvalidDtmfError, "0x78 is not a key"),
        (raw(0x03, b"\xff"), InvalidDtmfError, "0xff is not a key"),
        (raw(0x03, b"a"), InvalidDtmfError, "0x61 is not a key"),
        (raw(0x10, bytes(321)), InvalidAudioError, "321 bytes"),
        (raw(0x02, b""), UnknownMessageKindError, "0x02"),
        (raw(0x01, CALL_ID.bytes), DuplicateUuidError, "second UUID"),
    ],
)
def test_malformed_message_after_uuid(stream: bytes, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        started().feed(stream)


def test_oversized_payload_is_rejected_from_the_header_alone() -> None:
    parser = started()
    with pytest.raises(PayloadTooLargeError, match="65535-byte payload") as info:
        parser.feed(b"\x10\xff\xff")  # nothing buffered while waiting for 64 KiB
    assert info.value.limit == DEFAULT_MAX_PAYLOAD


def test_configurable_payload_limit() -> None:
    parser = AudioSocketParser(max_payload=640)
    parser.feed(encode_uuid(CALL_ID))
    assert parser.feed(encode_audio(bytes(640))) == [Audio(bytes(640))]
    with pytest.raises(PayloadTooLargeError):
        parser.feed(encode_audio(bytes(642)))
    with pytest.raises(ValueError):
        AudioSocketParser(max_payload=0x10000)


def test_error_carries_messages_decoded_before_it() -> None:
    parser = started()
    with pytest.raises(InvalidDtmfError) as info:
        parser.feed(encode_dtmf("1") + encode_audio(bytes(4)) + raw(0x03, b"z"))
    assert info.value.decoded == [Dtmf("1"), Audio(bytes(4))]


def test_parser_refuses_input_after_failure() -> None:
    parser = started()
    with pytest.raises(UnknownMessageKindError):
        parser.feed(b"\x7f\x00\x00")
    assert parser.failed
    assert parser.buffered == 0
    with pytest.raises(ParserFailedError, match="earlier error"):
        parser.feed(encode_dtmf("1"))


def test_client_side_parser_needs_no_uuid() -> None:
    parser = AudioSocketParser(expect_uuid_first=False)
    assert parser.feed(encode_audio(bytes(320)) + encode_hangup()) == [
        Audio(bytes(320)),
        Hangup(),
    ]


def test_all_errors_share_one_base() -> None:
    for error in (
        UnknownMessageKindError,
        PayloadTooLargeError,
        InvalidUuidError,
        InvalidDtmfError,
        InvalidAudioError,
        MissingUuidError,
        DuplicateUuidError,
        ParserFailedError,
    ):
        assert issubclass(error, AudioSocketProtocolError)


# --- properties -----------------------------------------------------------------------------

after_uuid: st.SearchStrategy[Message] = st.one_of(
    st.binary(max_size=2000).map(lambda b: Audio(b[: len(b) // 2 * 2])),
    st.sampled_from(sorted(DTMF_KEYS)).map(Dtmf),
    st.just(Hangup()),
    st.binary(max_size=8).map(Error.from_payload),
)
sessions = st.tuples(
    st.uuids().map(Uuid), st.lists(after_uuid, max_size=30)
).map(lambda t: [t[0], *t[1]])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(messages=sessions, cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_roundtrip_under_any_tcp_split(messages: list[Message], cuts: list[int]) -> None:
    stream = b"".join(encode(m) for m in messages)
    parser = AudioSocketParser()
    decoded: list[Message] = []
    for chunk in split(stream, cuts):
        decoded += parser.feed(chunk)
        assert parser.buffered <= HEADER.size + DEFAULT_MAX_PAYLOAD
    assert decoded == messages
    assert parser.buffered == 0


@given(messages=sessions, data=st.data())
def test_truncated_stream_holds_the_last_message(
    messages: list[Message], data: st.DataObject
) -> None:
    encoded = [encode(m) for m in messages]
    cut = data.draw(st.integers(min_value=1, max_value=len(encoded[-1])), label="cut")
    stream = b"".join(encoded)
    parser = AudioSocketParser()
    assert parser.feed(stream[:-cut]) == messages[:-1]
    assert parser.feed(stream[-cut:]) == messages[-1:]


@settings(max_examples=300)
@given(
    expect_uuid=st.booleans(),
    chunks=st.lists(st.binary(max_size=300), max_size=20),
    prefix=st.booleans(),
)
def test_random_bytes_only_raise_protocol_errors(
    expect_uuid: bool, chunks: list[bytes], prefix: bool
) -> None:
    parser = AudioSocketParser(expect_uuid_first=expect_uuid)
    if prefix and expect_uuid:
        chunks = [encode_uuid(CALL_ID), *chunks]
    for chunk in chunks:
        try:
            parser.feed(chunk)
        except AudioSocketProtocolError:
            assert parser.failed
            assert parser.buffered == 0
            return
        assert parser.buffered <= HEADER.size + DEFAULT_MAX_PAYLOAD
