"""AMI wire format: bytes from Asterisk -> :class:`AmiEvent`, actions -> bytes.

Pure code, no sockets, so every quirk is testable by feeding bytes. Parsing of one message
reuses panoramisk's ``Message.from_line``; what this module adds over panoramisk's protocol:

- one incremental UTF-8 decoder per connection, so a multibyte character split across TCP
  reads survives (panoramisk decodes each read alone with ``errors='ignore'``);
- a bound on the size of one message (a peer that never sends the blank line cannot grow
  our memory without limit) and a log line for every message or line that is skipped;
- header values that end in a space (``Value: `` for an empty variable) are kept;
- action fields are checked for CR/LF, which would otherwise inject extra AMI headers.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from panoramisk.actions import Action
from panoramisk.message import Message

log = logging.getLogger(__name__)

EOL = "\r\n"
TERMINATOR = EOL + EOL
GREETING_PREFIX = "Asterisk Call Manager/"
DEFAULT_MAX_MESSAGE_CHARS = 1 << 20
"""Largest message accepted (1 Mi characters); longer ones are logged and discarded."""
_LOGGED_CHARS = 120


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive AMI headers that remember every value of a repeated key.

    ``headers["ChanVariable"]`` is the first value; :meth:`get_all` returns all of them.
    """

    __slots__ = ("_index", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = tuple(pairs)
        index: dict[str, tuple[str, str]] = {}
        for key, value in self._pairs:
            index.setdefault(key.lower(), (key, value))
        self._index = index

    def __getitem__(self, key: str) -> str:
        return self._index[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._index.values())

    def __len__(self) -> int:
        return len(self._index)

    def __hash__(self) -> int:
        return hash(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({list(self._pairs)!r})"

    def get_all(self, key: str) -> tuple[str, ...]:
        wanted = key.lower()
        return tuple(value for name, value in self._pairs if name.lower() == wanted)


@dataclass(frozen=True)
class AmiEvent:
    """One AMI message: an event, or the response to an action (``name == "Response"``)."""

    name: str
    headers: Mapping[str, str] = field(default_factory=Headers)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.headers.get(key, default)

    def get_all(self, key: str) -> tuple[str, ...]:
        """Every value of a header that may repeat (``ChanVariable``, ``Variable``...)."""
        if isinstance(self.headers, Headers):
            return self.headers.get_all(key)
        value = self.headers.get(key)
        return () if value is None else (value,)

    def chan_variables(self, prefix: str = "") -> dict[str, str]:
        """``ChanVariable: NAME=value`` headers as a dict; ``prefix="Dest"`` for the agent leg."""
        variables: dict[str, str] = {}
        for item in self.get_all(f"{prefix}ChanVariable"):
            name, sep, value = item.partition("=")
            if sep:
                variables[name] = value
            else:
                log.warning(
                    "ignoring %sChanVariable without '=' in %s: %r", prefix, self.name, item
                )
        return variables

    @property
    def is_response(self) -> bool:
        return "Response" in self.headers and "Event" not in self.headers

    @property
    def success(self) -> bool:
        """True for events and for responses Asterisk did not reject."""
        return self.get("Response", "Success") in Message.success_responses

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")


def event_from_message(message: Message) -> AmiEvent:
    """Convert panoramisk's dict (values may be lists) into an immutable AmiEvent."""
    pairs: list[tuple[str, str]] = []
    for key, value in message.items():
        if key == "content":  # panoramisk stores the (legacy) Follows body under this key
            if value:
                pairs.append(("Output", value))
            continue
        values = value if isinstance(value, list) else [value]
        pairs.extend((key, str(v)) for v in values)
    headers = Headers(pairs)
    return AmiEvent(name=headers.get("Event", "Response"), headers=headers)


def parse_message(block: str) -> AmiEvent | None:
    """Parse one message (the text between blank lines); None (logged) if unusable."""
    block = block.strip("\r\n")
    if not block:
        return None
    lines = block.split(EOL)
    if not lines[0].startswith("Response: Follows"):
        for line in lines:
            if ": " not in line:
                log.warning("skipping malformed AMI line: %r", line[:_LOGGED_CHARS])
    try:
        message = Message.from_line(block)
    except Exception:
        log.exception("cannot parse AMI message: %r", block[:_LOGGED_CHARS])
        return None
    if message is None:
        log.warning("skipping AMI message without Event or Response: %r", block[:_LOGGED_CHARS])
        return None
    return event_from_message(message)


class AmiStreamDecoder:
    """Turn the byte stream of one AMI connection into AmiEvents, whatever the read sizes."""

    def __init__(self, max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._scanned = 0  # chars of _buffer already known to hold no terminator
        self._discarding = False
        self._greeting_checked = False
        self.max_message_chars = max_message_chars
        self.version: str | None = None
        """AMI protocol version from the greeting line, once seen."""

    def feed(self, data: bytes) -> list[AmiEvent]:
        self._buffer += self._utf8.decode(data)
        if not self._greeting_checked and not self._take_greeting():
            return []
        events: list[AmiEvent] = []
        while True:
            end = self._buffer.find(TERMINATOR, max(0, self._scanned - len(TERMINATOR) + 1))
            if end < 0:
                break
            block, self._buffer, self._scanned = self._buffer[:end], self._buffer[end + 4 :], 0
            if self._discarding:
                self._discarding = False
                continue
            event = parse_message(block)
            if event is not None:
                events.append(event)
        self._scanned = len(self._buffer)
        if len(self._buffer) > self.max_message_chars:
            if not self._discarding:
                log.warning(
                    "discarding AMI message longer than %d characters: %r...",
                    self.max_message_chars,
                    self._buffer[:_LOGGED_CHARS],
                )
            self._discarding = True
            self._buffer = self._buffer[-(len(TERMINATOR) - 1) :]
            self._scanned = len(self._buffer)
        return events

    def _take_greeting(self) -> bool:
        """Consume 'Asterisk Call Manager/x.y.z\\r\\n'; False while it may still be arriving."""
        line, sep, rest = self._buffer.partition(EOL)
        still_arriving = GREETING_PREFIX.startswith(line) or line.startswith(GREETING_PREFIX)
        if not sep and still_arriving and len(line) <= self.max_message_chars:
            return False
        self._greeting_checked = True
        if sep and line.startswith(GREETING_PREFIX):
            self.version = line[len(GREETING_PREFIX) :].strip()
            log.debug("AMI protocol version %s", self.version)
            self._buffer = rest
        return True


_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", "'": "'", '"': '"', "?": "?"}
_C_ESCAPE = re.compile(r"\\(.)", re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


def unescape_c(value: str) -> str:
    """Undo Asterisk's ``ast_escape_c``, which AMI applies to the caller's and the connected
    party's names in channel snapshots (``it's`` arrives as ``it\\'s``)."""
    return _C_ESCAPE.sub(lambda m: _C_ESCAPES.get(m.group(1), m.group(0)), value)


def _clean_caller_field(value: str | None) -> str | None:
    """AMI renders empty or unknown caller fields as '' or '<unknown>'."""
    if value is None or value.strip() in ("", "<unknown>"):
        return None
    return value.strip()


def caller_identity(event: AmiEvent, prefix: str = "") -> tuple[str | None, str | None]:
    """The caller's number and name exactly as Asterisk filled them on the channel.

    Events about a channel start with its snapshot (``Channel``, ``CallerIDNum``,
    ``CallerIDName``, ...) before any field the dialplan passed (``UserEvent``); a header
    that repeats keeps its first value (:class:`Headers`), so a field added later can never
    replace the snapshot's. The name is unescaped twice: AMI's C escaping, then SIP's
    quoted-pairs (``"a \\"b\\""`` in From is the name ``a "b"``). ``prefix="Dest"`` reads
    the other leg of a queue event.
    """
    number = _clean_caller_field(event.get(f"{prefix}CallerIDNum"))
    name = _clean_caller_field(event.get(f"{prefix}CallerIDName"))
    if name is not None:
        name = _QUOTED_PAIR.sub(lambda m: m.group(1), unescape_c(name)) or None
    return number, name


def _check_token(kind: str, text: str, *, header: bool) -> None:
    if not text or "\r" in text or "\n" in text or (header and ":" in text):
        raise ValueError(f"invalid AMI {kind}: {text!r}")


def build_action(name: str, fields: Mapping[str, str | Iterable[str]]) -> Action:
    """A panoramisk Action (it adds the ActionID), refusing CR/LF that would inject headers.

    A field whose value is a list is sent once per item (``Variable: A=1``, ``Variable: B=2``).
    Call it inside a running event loop: panoramisk's Action creates an asyncio.Future.
    """
    _check_token("action name", name, header=True)
    headers: dict[str, str | list[str]] = {"Action": name}
    for key, value in fields.items():
        _check_token("field name", key, header=True)
        values = [value] if isinstance(value, str) else [str(v) for v in value]
        for item in values:
            if "\r" in item or "\n" in item:
                raise ValueError(f"invalid AMI value for {key} in action {name}: {item!r}")
        headers[key] = value if isinstance(value, str) else values
    return Action(headers)


def encode_action(action: Action) -> bytes:
    return str(action).encode("utf-8")
