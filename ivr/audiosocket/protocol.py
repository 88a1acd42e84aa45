"""AudioSocket wire format (Asterisk app_audiosocket): pure encoding and incremental parsing.

A message is one byte of kind, a two-byte big-endian payload length, then the payload.
Asterisk sends the call's UUID first, then audio (8 kHz signed 16-bit little-endian mono,
framed however the caller's channel packetises it), DTMF key presses, hang-up and errors.

Nothing here does I/O: the parser is fed whatever bytes TCP delivered, in any split, and
returns the complete messages it now holds.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from enum import IntEnum

HEADER = struct.Struct("!BH")
"""Kind (1 byte) and payload length (2 bytes, big-endian)."""

PROTOCOL_MAX_PAYLOAD = 0xFFFF
"""The largest payload the two-byte length field can announce."""

DEFAULT_MAX_PAYLOAD = 16 * 1024
"""Largest payload accepted by default: one second of 8 kHz audio is 16 000 bytes, while
Asterisk sends 20 ms frames (320 bytes); anything bigger means the stream is not AudioSocket."""

DTMF_KEYS = frozenset("0123456789*#ABCD")


class MessageKind(IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


class AudioSocketErrorCode(IntEnum):
    """Codes Asterisk puts in the first byte of an ERROR payload."""

    NONE = 0x00
    HANGUP = 0x01
    FRAME_FORWARDING = 0x02
    MEMORY = 0x04


@dataclass(frozen=True, slots=True)
class Hangup:
    """The peer ends the session (from us: the dialplan continues after AudioSocket)."""


@dataclass(frozen=True, slots=True)
class Uuid:
    value: uuid.UUID


@dataclass(frozen=True, slots=True)
class Dtmf:
    key: str


@dataclass(frozen=True, slots=True)
class Audio:
    pcm: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"Audio({len(self.pcm)} bytes)"


@dataclass(frozen=True, slots=True)
class Error:
    code: int | None
    payload: bytes = b""

    @classmethod
    def from_payload(cls, payload: bytes) -> Error:
        return cls(code=payload[0] if payload else None, payload=bytes(payload))

    @property
    def description(self) -> str:
        if self.code is None:
            return "unspecified error"
        try:
            return AudioSocketErrorCode(self.code).name.lower().replace("_", " ")
        except ValueError:
            return f"error code 0x{self.code:02x}"


Message = Hangup | Uuid | Dtmf | Audio | Error


# --- errors -------------------------------------------------------------------------------


class AudioSocketProtocolError(Exception):
    """The byte stream is not valid AudioSocket.

    ``decoded`` holds the messages that were complete before the fault in the same
    ``feed()`` call, so a caller can still act on them before closing the session.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.decoded: list[Message] = []


class UnknownMessageKindError(AudioSocketProtocolError):
    def __init__(self, kind: int) -> None:
        super().__init__(f"unknown AudioSocket message kind 0x{kind:02x}")
        self.kind = kind


class PayloadTooLargeError(AudioSocketProtocolError):
    def __init__(self, kind: int, length: int, limit: int) -> None:
        super().__init__(
            f"AudioSocket message kind 0x{kind:02x} announces a {length}-byte payload; "
            f"the limit is {limit} bytes"
        )
        self.kind, self.length, self.limit = kind, length, limit


class InvalidUuidError(AudioSocketProtocolError):
    pass


class InvalidDtmfError(AudioSocketProtocolError):
    pass


class InvalidAudioError(AudioSocketProtocolError):
    pass


class MissingUuidError(AudioSocketProtocolError):
    """The first message of a session was not the call's UUID."""


class DuplicateUuidError(AudioSocketProtocolError):
    """A second UUID arrived within one session."""


class ParserFailedError(AudioSocketProtocolError):
    """More data was fed after the parser had already rejected the stream."""


# --- encoding -----------------------------------------------------------------------------


def _frame(kind: MessageKind, payload: bytes = b"") -> bytes:
    if len(payload) > PROTOCOL_MAX_PAYLOAD:
        raise ValueError(
            f"{kind.name} payload of {len(payload)} bytes exceeds the protocol maximum "
            f"of {PROTOCOL_MAX_PAYLOAD}"
        )
    return HEADER.pack(kind, len(payload)) + payload


def encode_audio(pcm: bytes) -> bytes:
    """One audio message; ``pcm`` is signed 16-bit little-endian mono samples."""
    if len(pcm) % 2:
        raise ValueError(f"audio must be whole 16-bit samples; got {len(pcm)} bytes")
    return _frame(MessageKind.AUDIO, bytes(pcm))


def encode_hangup() -> bytes:
    return _frame(MessageKind.HANGUP)


def encode_uuid(value: uuid.UUID) -> bytes:
    return _frame(MessageKind.UUID, value.bytes)


def encode_dtmf(key: str) -> bytes:
    if len(key) != 1 or key not in DTMF_KEYS:
        raise ValueError(f"DTMF key must be one of 0-9 * # A-D; got {key!r}")
    return _frame(MessageKind.DTMF, key.encode("ascii"))


def encode_error(code: int | None = None, payload: bytes | None = None) -> bytes:
    """An error message; ``payload`` wins over ``code`` when both are given."""
    if payload is None:
        payload = b"" if code is None else bytes([code])
    return _frame(MessageKind.ERROR, payload)


def encode(message: Message) -> bytes:
    match message:
        case Audio(pcm):
            return encode_audio(pcm)
        case Dtmf(key):
            return encode_dtmf(key)
        case Uuid(value):
            return encode_uuid(value)
        case Hangup():
            return encode_hangup()
        case Error(code, payload):
            return encode_error(code, payload or None)
    raise TypeError(f"not an AudioSocket message: {message!r}")


# --- decoding -----------------------------------------------------------------------------


def decode_payload(kind: int, payload: bytes) -> Message:
    """Turn one complete message into its dataclass, validating the payload."""
    if kind == MessageKind.AUDIO:
        if len(payload) % 2:
            raise InvalidAudioError(
                f"audio payload of {len(payload)} bytes is not whole 16-bit samples"
            )
        return Audio(bytes(payload))
    if kind == MessageKind.DTMF:
        if len(payload) != 1:
            # Never echo the bytes: a mangled key press may still be part of an id number.
            raise InvalidDtmfError(
                f"DTMF payload must be exactly one key (0-9 * # A-D); got {len(payload)} bytes"
            )
        key = chr(payload[0])
        if key not in DTMF_KEYS:
            raise InvalidDtmfError(f"DTMF payload 0x{payload[0]:02x} is not a key (0-9 * # A-D)")
        return Dtmf(key)
    if kind == MessageKind.UUID:
        if len(payload) != 16:
            raise InvalidUuidError(f"UUID payload must be 16 bytes; got {len(payload)}")
        return Uuid(uuid.UUID(bytes=bytes(payload)))
    if kind == MessageKind.HANGUP:
        return Hangup()  # any payload is ignored
    if kind == MessageKind.ERROR:
        return Error.from_payload(bytes(payload))
    raise UnknownMessageKindError(kind)


_KNOWN_KINDS = frozenset(int(k) for k in MessageKind)


class AudioSocketParser:
    """Incremental parser: ``feed()`` any TCP chunk, get back the complete messages.

    Memory stays bounded: a header is checked (kind, announced length) as soon as its three
    bytes arrive, so at most one header plus ``max_payload`` bytes are ever kept between
    calls. After a protocol error the parser refuses further input.
    """

    def __init__(
        self, *, expect_uuid_first: bool = True, max_payload: int = DEFAULT_MAX_PAYLOAD
    ) -> None:
        if not 0 <= max_payload <= PROTOCOL_MAX_PAYLOAD:
            raise ValueError(f"max_payload must be within 0..{PROTOCOL_MAX_PAYLOAD}")
        self._buffer = bytearray()
        self._max_payload = max_payload
        self._awaiting_uuid = expect_uuid_first
        self._uuid_seen = False
        self._failure: AudioSocketProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back while waiting for the rest of a message."""
        return len(self._buffer)

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def feed(self, data: bytes) -> list[Message]:
        if self._failure is not None:
            raise ParserFailedError(f"parser stopped after an earlier error: {self._failure}")
        self._buffer += data
        messages: list[Message] = []
        offset = 0
        try:
            while len(self._buffer) - offset >= HEADER.size:
                kind, length = HEADER.unpack_from(self._buffer, offset)
                self._check_header(kind, length)
                end = offset + HEADER.size + length
                if len(self._buffer) < end:
                    break
                payload = bytes(self._buffer[offset + HEADER.size : end])
                offset = end
                messages.append(self._accept(decode_payload(kind, payload)))
        except AudioSocketProtocolError as exc:
            self._failure = exc
            self._buffer.clear()
            exc.decoded = messages
            raise
        del self._buffer[:offset]
        return messages

    def _check_header(self, kind: int, length: int) -> None:
        if kind not in _KNOWN_KINDS:
            raise UnknownMessageKindError(kind)
        if self._awaiting_uuid and kind != MessageKind.UUID:
            raise MissingUuidError(
                f"first AudioSocket message must be the call UUID; got "
                f"{MessageKind(kind).name} (0x{kind:02x})"
            )
        if length > self._max_payload:
            raise PayloadTooLargeError(kind, length, self._max_payload)

    def _accept(self, message: Message) -> Message:
        if isinstance(message, Uuid):
            if self._uuid_seen:
                raise DuplicateUuidError(f"second UUID {message.value} within one session")
            self._uuid_seen = True
            self._awaiting_uuid = False
        return message
