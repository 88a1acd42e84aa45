"""AudioSocket TCP server: one ``MediaSession`` and one call-handler task per connection.

Asterisk's AudioSocket() connects, sends the call UUID, then streams audio and key presses.
Whatever goes wrong on our side (malformed data, a failing handler, shutdown) we answer with
an AudioSocket hang-up so the dialplan continues to the queue: no caller is dropped because
software failed. The same holds for overload: beyond ``audiosocket.max_calls`` calls at once a
new call is handed back at once, so it waits for an agent instead of getting an IVR whose every
prompt comes late.

The socket is a trust boundary: whoever connects with a call's id gets that call's caller
identity and its route. So a connection is served only when

- it comes from ``audiosocket.allowed_peers`` (else it is closed at once, nothing sent);
- it sends its call id within ``first_frame_timeout``, and at most ``max_pending``
  connections wait for admission at once (idle ones are closed first, see ``_admit``);
- AMI has announced the id (``announcements``: the call tracker; else it is closed once
  ``announce_timeout`` passes) and no other connection has claimed it: an id is served once,
  and a second connection presenting it is closed without touching the call that holds it;
- and, once served, its peer does not send faster than real time by more than
  ``max_burst_bytes`` (the session is closed as flooding).

Inbound bytes are bounded at every depth: the kernel's socket buffer, the StreamReader
(``READ_LIMIT``: reading pauses when it holds twice that), the parser (one header plus at most
``max_payload``), the session's event queue (``max_buffered_bytes``, oldest dropped) and the
rate above. Every refusal is logged with the peer and the claimed id and counted in
``refusals`` (``/healthz``: ``audiosocket_refused``).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol

from crm.telephony.call_context import enter_call
from ivr.audiosocket.protocol import (
    DEFAULT_MAX_PAYLOAD,
    AudioSocketParser,
    AudioSocketProtocolError,
    Message,
    Uuid,
    encode_hangup,
)
from ivr.audiosocket.session import SAMPLE_RATE, MediaSession, call_logger
from ivr.settings import AudioSocketSettings

log = logging.getLogger(__name__)

CallHandler = Callable[[MediaSession], Awaitable[None]]
OverflowHandler = Callable[[uuid.UUID], Awaitable[None]]

READ_CHUNK = 4096
READ_LIMIT = 64 * 1024
"""StreamReader limit: it stops reading the socket once it holds twice this."""
REAL_TIME_BYTES_PER_SECOND = SAMPLE_RATE * 2 + 50 * 3
"""What Asterisk sends in a second: 8 kHz 16-bit audio, and a 3-byte header per 20 ms."""
FLOOD_SLACK = 1.25
"""The rate a peer's backlog drains at, as a multiple of real time (clock drift, jitter)."""
MAX_CLAIMS = 16384
"""Claimed ids kept at most; ids no longer announced are forgotten well before."""

RefusalReason = Literal["peer_not_allowed", "pending_limit", "no_call_id", "unannounced",
                        "id_in_use", "flood"]
REFUSAL_REASONS: tuple[RefusalReason, ...] = (
    "peer_not_allowed", "pending_limit", "no_call_id", "unannounced", "id_in_use", "flood")


class SessionDirectory(Protocol):
    """Says which AudioSocket ids AMI announced (:class:`ivr.asterisk.call_tracker.CallTracker`)."""

    def session_of(self, session_id: str) -> object | None:
        """What the id stands for now, None if not announced (or over)."""

    async def wait_for_session(self, session_id: str, timeout: float) -> object | None:
        """The same, waiting up to ``timeout`` seconds for the announcement."""


@dataclass(eq=False)
class _Handshake:
    """A connection not yet admitted as a session."""

    peer: object
    writer: asyncio.StreamWriter
    call_id: uuid.UUID | None = None
    """Set once it claimed the id its first frame carried; it then waits for AMI."""
    identified_at: float = 0.0
    """Loop time its first frame arrived: from then on its audio runs in real time."""
    evicted: bool = False


class _Backlog:
    """Leaky bucket: bytes a peer sent ahead of real time. It drains at real time (times
    ``FLOOD_SLACK``); beyond ``capacity`` the peer is flooding.

    It may drain below zero, to minus ``capacity``: bytes are counted when we read them, and
    after a stall of our own event loop (or a pause of the peer) what arrived meanwhile is
    read in one go; that credit keeps it from being taken for a flood."""

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.level = 0.0
        self._at = now

    def add(self, size: int, now: float) -> bool:
        """Count ``size`` bytes received at ``now``; False once over capacity."""
        drained = (now - self._at) * REAL_TIME_BYTES_PER_SECOND * FLOOD_SLACK
        self.level = max(-float(self.capacity), self.level - drained) + size
        self._at = now
        return self.level <= self.capacity


class MediaServerError(Exception):
    """The media server could not start (for example, its port is taken)."""


class MediaServer:
    def __init__(
        self,
        settings: AudioSocketSettings,
        handler: CallHandler,
        *,
        first_message_timeout: float | None = None,
        shutdown_timeout: float = 5.0,
        keepalive: bool = True,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        on_overflow: OverflowHandler | None = None,
        announcements: SessionDirectory | None = None,
    ) -> None:
        """``on_overflow`` is told (after the connection is closed) of each call handed back
        because ``max_calls`` were being served. ``announcements`` (the call tracker) says
        which ids AMI announced; without it (tests, benches) any id is served, still once at
        a time. ``first_message_timeout`` overrides ``settings.first_frame_timeout``."""
        self._settings = settings
        self._handler = handler
        self._first_message_timeout = (settings.first_frame_timeout
                                       if first_message_timeout is None
                                       else first_message_timeout)
        self._shutdown_timeout = shutdown_timeout
        self._keepalive = keepalive
        self._max_payload = max_payload
        self._server: asyncio.Server | None = None
        self._sessions: set[MediaSession] = set()
        self._connections: set[asyncio.Task[None]] = set()
        self._handshakes: dict[asyncio.Task[None], _Handshake] = {}
        """Connections not yet admitted, oldest first."""
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._announcements = announcements
        self._peers = settings.peer_networks()
        self._claims: dict[uuid.UUID, None] = {}
        """Ids presented by a connection and not released: served once (oldest first)."""
        self._holders: set[uuid.UUID] = set()
        """Claimed ids whose connection is still open."""
        self._refusals: Counter[str] = Counter()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._limit = settings.call_limit()
        self._on_overflow = on_overflow
        self.refused_overload = 0
        """Calls handed back to the dialplan because ``max_calls`` were being served."""

    @property
    def refusals(self) -> dict[str, int]:
        """Connections refused since start, by reason (every reason, zeros included)."""
        return {reason: self._refusals[reason] for reason in REFUSAL_REASONS}

    @property
    def pending_count(self) -> int:
        """Connections waiting for admission (their call id, or its announcement)."""
        return len(self._handshakes)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("media server already started")
        host, port = self._settings.host, self._settings.port
        try:
            self._server = await asyncio.start_server(self._on_connection, host, port,
                                                      limit=READ_LIMIT)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MediaServerError(
                    f"AudioSocket port {host}:{port} is already in use; stop the other "
                    f"process or set audiosocket.port (HOTLINE_AUDIOSOCKET__PORT)"
                ) from exc
            raise MediaServerError(
                f"cannot listen for AudioSocket on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        log.info("AudioSocket media server listening on %s:%d", host, self.bound_port)

    async def close(self) -> None:
        """Stop accepting, hang up every session, wait (bounded) for handlers to finish."""
        server, self._server = self._server, None
        if server is None:
            return
        self._closing = True
        server.close()
        for task in list(self._handshakes):
            task.cancel()
        for session in list(self._sessions):
            session.terminate("media server shutting down", send_hangup=True)
        pending = self._connections | self._handler_tasks
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self._shutdown_timeout)
        if pending:
            log.warning(
                "%d call task(s) still running %.1f s after shutdown; cancelling them",
                len(pending), self._shutdown_timeout,
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=self._shutdown_timeout)
        try:
            async with asyncio.timeout(self._shutdown_timeout):
                await server.wait_closed()
        except TimeoutError:
            log.warning("listening socket did not close within %.1f s", self._shutdown_timeout)
        self._closing = False
        log.info("AudioSocket media server stopped")

    async def __aenter__(self) -> MediaServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def bound_port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("media server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_sessions(self) -> tuple[MediaSession, ...]:
        return tuple(self._sessions)

    @property
    def connection_count(self) -> int:
        """Open TCP connections, including ones that have not sent their UUID yet."""
        return len(self._connections)

    @property
    def handler_count(self) -> int:
        return len(self._handler_tasks)

    async def wait_idle(self) -> None:
        """Wait until no connection is open and no call handler is running."""
        await self._idle.wait()

    def _track(self, task: asyncio.Task[None], tasks: set[asyncio.Task[None]]) -> None:
        tasks.add(task)
        self._idle.clear()

        def forget(done: asyncio.Task[None]) -> None:
            tasks.discard(done)
            if not self._connections and not self._handler_tasks:
                self._idle.set()

        task.add_done_callback(forget)

    # --- per connection -----------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._closing:  # accepted just before close(): let the dialplan carry on
            await _close_writer(writer, send_hangup=True)
            return
        peer = writer.get_extra_info("peername")
        if not self._peer_allowed(peer):
            self._refuse("peer_not_allowed", peer, None,
                         "its address is not in audiosocket.allowed_peers")
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        handshake = _Handshake(peer, writer)
        if not self._admit(task, handshake):
            writer.transport.abort()
            return
        self._track(task, self._connections)
        try:
            await self._serve(reader, writer, handshake)
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except Exception:
            log.exception("AudioSocket connection from %s failed", _peer_text(peer))
            writer.transport.abort()
        finally:
            self._handshakes.pop(task, None)
            if handshake.call_id is not None:
                self._release(handshake.call_id)

    def _peer_allowed(self, peer: object) -> bool:
        address = _peer_address(peer)
        return address is not None and any(address in net for net in self._peers)

    def _admit(self, task: asyncio.Task[None], handshake: _Handshake) -> bool:
        """Count a new connection as pending; at ``max_pending`` close the oldest that has
        not sent its call id (Asterisk sends it at once, so that one is idle), or refuse the
        new one if all have. True when the new connection may go on."""
        if len(self._handshakes) >= self._settings.max_pending:
            idle = next(((t, h) for t, h in self._handshakes.items() if h.call_id is None),
                        None)
            if idle is None:
                self._refuse("pending_limit", handshake.peer, None,
                             f"{len(self._handshakes)} connections already wait for their "
                             f"call to be announced (audiosocket.max_pending)")
                return False
            idle_task, idle_handshake = idle
            del self._handshakes[idle_task]
            idle_handshake.evicted = True
            self._refuse("pending_limit", idle_handshake.peer, None,
                         f"{self._settings.max_pending} connections without a call id "
                         f"(audiosocket.max_pending): closing the oldest")
            idle_handshake.writer.transport.abort()
        self._handshakes[task] = handshake
        return True

    def _claim(self, call_id: uuid.UUID) -> bool:
        """Claim an id for this connection; False if another connection claimed it and it is
        still live or still announced (an id is served once)."""
        if call_id in self._claims:
            directory = self._announcements
            if (call_id in self._holders or directory is None
                    or directory.session_of(str(call_id)) is not None):
                return False
            del self._claims[call_id]  # the call it stood for is over: not in use any more
        if len(self._claims) >= MAX_CLAIMS:
            self._forget_claims()
        self._claims[call_id] = None
        self._holders.add(call_id)
        return True

    def _release(self, call_id: uuid.UUID, *, forget: bool = False) -> None:
        """The connection holding ``call_id`` is over. Without a directory the id is free
        again; with one, it stays claimed while AMI still announces it."""
        self._holders.discard(call_id)
        if forget or self._announcements is None:
            self._claims.pop(call_id, None)
        elif len(self._claims) > self._settings.max_pending + 2 * (self._limit or 512):
            self._forget_claims()

    def _forget_claims(self) -> None:
        """Drop claims of closed connections whose id AMI no longer announces; as a last
        resort (``MAX_CLAIMS`` ids all still announced) the oldest closed ones."""
        directory = self._announcements
        for call_id in list(self._claims):
            if call_id not in self._holders and (
                    directory is None or directory.session_of(str(call_id)) is None):
                del self._claims[call_id]
        for call_id in list(self._claims):
            if len(self._claims) < MAX_CLAIMS:
                break
            if call_id not in self._holders:
                del self._claims[call_id]

    def _refuse(self, reason: RefusalReason, peer: object, call_id: uuid.UUID | None,
                detail: str) -> None:
        self._refusals[reason] += 1
        log.warning("AudioSocket connection from %s refused (%s): %s; claimed call id %s",
                       _peer_text(peer), reason, detail, call_id or "none")

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handshake: _Handshake,
    ) -> None:
        parser = AudioSocketParser(max_payload=self._max_payload)
        first = await self._read_first_messages(reader, writer, parser, handshake)
        if first is None:
            return
        call_id, rest = first
        enter_call(call_id.value)  # this connection's task and the call's tasks it starts
        peer = handshake.peer
        if not self._claim(call_id.value):
            self._refuse("id_in_use", peer, call_id.value,
                         "another connection already claimed this call id")
            await _close_writer(writer, send_hangup=True)
            return
        handshake.call_id = call_id.value
        directory = self._announcements
        if directory is not None:
            known = await directory.wait_for_session(str(call_id.value),
                                                     self._settings.announce_timeout)
            if known is None:
                self._refuse("unannounced", peer, call_id.value,
                             f"AMI did not announce this call id within "
                             f"{self._settings.announce_timeout:.1f} s")
                self._release(call_id.value, forget=True)
                handshake.call_id = None
                await _close_writer(writer, send_hangup=True)
                return
        task = asyncio.current_task()
        assert task is not None
        self._handshakes.pop(task, None)
        if self._limit is not None and len(self._sessions) >= self._limit:
            self.refused_overload += 1
            call_logger(log, call_id.value).warning(
                "%d calls in the IVR already (audiosocket.max_calls): handed back to the "
                "dialplan, which queues it for an agent", len(self._sessions))
            await _close_writer(writer, send_hangup=True)
            if self._on_overflow is not None:
                try:
                    await self._on_overflow(call_id.value)
                except Exception:
                    log.exception("recording the handed-back call %s failed", call_id.value)
            return
        session = MediaSession(call_id.value, writer, keepalive=self._keepalive,
                               max_pending_bytes=self._settings.max_buffered_bytes)
        call_logger(log, session.call_id).info("AudioSocket connected from %s",
                                               _peer_text(peer))
        self._sessions.add(session)
        try:
            session.start()
            handler_task = asyncio.create_task(
                self._run_handler(session), name=f"call-handler-{session.call_id}"
            )
            self._track(handler_task, self._handler_tasks)
            for message in rest:
                session.deliver(message)
            await self._pump(reader, parser, session, peer, handshake.identified_at)
        finally:
            self._sessions.discard(session)
            session.terminate("media server stopped serving the connection")
            await session.wait_closed()

    async def _read_first_messages(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: AudioSocketParser,
        handshake: _Handshake,
    ) -> tuple[Uuid, list[Message]] | None:
        """Read until the UUID arrives; on failure log, close and return None."""
        peer = _peer_text(handshake.peer)
        try:
            async with asyncio.timeout(self._first_message_timeout):
                while True:
                    data = await reader.read(READ_CHUNK)
                    if handshake.evicted:  # closed for a newer connection (already logged)
                        return None
                    if not data:
                        log.info("AudioSocket peer %s closed before sending a UUID", peer)
                        await _close_writer(writer, send_hangup=False)
                        return None
                    messages = parser.feed(data)
                    if messages:
                        first = messages[0]
                        assert isinstance(first, Uuid)  # the parser enforces it
                        handshake.identified_at = asyncio.get_running_loop().time()
                        return first, messages[1:]
        except TimeoutError:
            self._refuse("no_call_id", handshake.peer, None,
                         f"no call id within {self._first_message_timeout:.1f} s "
                         f"(audiosocket.first_frame_timeout)")
        except AudioSocketProtocolError as exc:
            self._refuse("no_call_id", handshake.peer, None, f"invalid first message: {exc}")
        except ConnectionError as exc:
            if not handshake.evicted:
                log.info("AudioSocket peer %s dropped before sending a UUID: %r", peer, exc)
            await _close_writer(writer, send_hangup=False)
            return None
        await _close_writer(writer, send_hangup=True)
        return None

    async def _pump(
        self, reader: asyncio.StreamReader, parser: AudioSocketParser, session: MediaSession,
        peer: object, since: float,
    ) -> None:
        """Route inbound messages into the session until either side ends it; a peer that
        sends faster than real time (counted ``since`` its first frame, so what arrived while
        AMI was awaited is no burst) by more than ``max_burst_bytes`` is cut off."""
        loop = asyncio.get_running_loop()
        backlog = _Backlog(self._settings.max_burst_bytes, since)
        while not session.closed:
            try:
                data = await reader.read(READ_CHUNK)
            except ConnectionError as exc:  # a reset is how peers often close
                session.terminate(
                    f"peer closed the connection ({type(exc).__name__})", send_hangup=False
                )
                return
            if not data:
                session.terminate("peer closed the connection", send_hangup=False)
                return
            if not backlog.add(len(data), loop.time()):
                self._refuse("flood", peer, session.call_id,
                             f"sent more than {self._settings.max_burst_bytes} bytes ahead of "
                             f"real time (audiosocket.max_burst_bytes); closing the session")
                session.terminate("peer sent faster than real time", send_hangup=True)
                return
            try:
                messages = parser.feed(data)
            except AudioSocketProtocolError as exc:
                for message in exc.decoded:
                    session.deliver(message)
                call_logger(log, session.call_id).warning(
                    "malformed AudioSocket data, ending the session: %s", exc
                )
                session.terminate(f"protocol error: {exc}", send_hangup=True)
                return
            for message in messages:
                session.deliver(message)

    async def _run_handler(self, session: MediaSession) -> None:
        try:
            await self._handler(session)
        except asyncio.CancelledError:
            session.terminate("call handler cancelled", send_hangup=True)
            raise
        except Exception:
            call_logger(log, session.call_id).exception(
                "call handler failed; hanging up so the dialplan continues"
            )
            await session.hangup("call handler failed")
        else:
            if not session.closed:
                await session.hangup("call handler finished")


async def _close_writer(writer: asyncio.StreamWriter, *, send_hangup: bool) -> None:
    if not writer.transport.is_closing():
        if send_hangup:
            writer.write(encode_hangup())
        writer.close()
    try:
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except (ConnectionError, OSError):
        pass


def _peer_address(peer: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's IP address (an IPv4-mapped IPv6 address as IPv4), None if it has none."""
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _peer_text(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)
