"""AudioSocket TCP server: one ``MediaSession`` and one call-handler task per connection.

Asterisk's AudioSocket() connects, sends the call UUID, then streams audio and key presses.
Whatever goes wrong on our side (malformed data, a failing handler, shutdown) we answer with
an AudioSocket hang-up so the dialplan continues to the queue: no caller is dropped because
software failed. The same holds for overload: beyond ``audiosocket.max_calls`` calls at once a
new call is handed back at once, so it waits for an agent instead of getting an IVR whose every
prompt comes late.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType

from hotline.settings import AudioSocketSettings
from ivr.audiosocket_protocol import (
    DEFAULT_MAX_PAYLOAD,
    AudioSocketParser,
    AudioSocketProtocolError,
    Message,
    Uuid,
    encode_hangup,
)
from ivr.media_session import MediaSession, call_logger

logger = logging.getLogger(__name__)

CallHandler = Callable[[MediaSession], Awaitable[None]]
OverflowHandler = Callable[[uuid.UUID], Awaitable[None]]

READ_CHUNK = 4096


class MediaServerError(Exception):
    """The media server could not start (for example, its port is taken)."""


class MediaServer:
    def __init__(
        self,
        settings: AudioSocketSettings,
        handler: CallHandler,
        *,
        first_message_timeout: float = 5.0,
        shutdown_timeout: float = 5.0,
        keepalive: bool = True,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        on_overflow: OverflowHandler | None = None,
    ) -> None:
        """``on_overflow`` is told (after the connection is closed) of each call handed back
        because ``max_calls`` were being served."""
        self._settings = settings
        self._handler = handler
        self._first_message_timeout = first_message_timeout
        self._shutdown_timeout = shutdown_timeout
        self._keepalive = keepalive
        self._max_payload = max_payload
        self._server: asyncio.Server | None = None
        self._sessions: set[MediaSession] = set()
        self._connections: set[asyncio.Task[None]] = set()
        self._handshaking: set[asyncio.Task[None]] = set()
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._limit = settings.call_limit()
        self._on_overflow = on_overflow
        self.refused_overload = 0
        """Calls handed back to the dialplan because ``max_calls`` were being served."""

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("media server already started")
        host, port = self._settings.host, self._settings.port
        try:
            self._server = await asyncio.start_server(self._on_connection, host, port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MediaServerError(
                    f"AudioSocket port {host}:{port} is already in use; stop the other "
                    f"process or set audiosocket.port (HOTLINE_AUDIOSOCKET__PORT)"
                ) from exc
            raise MediaServerError(
                f"cannot listen for AudioSocket on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        logger.info("AudioSocket media server listening on %s:%d", host, self.bound_port)

    async def close(self) -> None:
        """Stop accepting, hang up every session, wait (bounded) for handlers to finish."""
        server, self._server = self._server, None
        if server is None:
            return
        self._closing = True
        server.close()
        for task in list(self._handshaking):
            task.cancel()
        for session in list(self._sessions):
            session.terminate("media server shutting down", send_hangup=True)
        pending = self._connections | self._handler_tasks
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self._shutdown_timeout)
        if pending:
            logger.warning(
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
            logger.warning("listening socket did not close within %.1f s", self._shutdown_timeout)
        self._closing = False
        logger.info("AudioSocket media server stopped")

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
        task = asyncio.current_task()
        assert task is not None
        self._track(task, self._connections)
        self._handshaking.add(task)
        peer = writer.get_extra_info("peername")
        try:
            await self._serve(reader, writer, task, peer)
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except Exception:
            logger.exception("AudioSocket connection from %s failed", peer)
            writer.transport.abort()
        finally:
            self._handshaking.discard(task)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        task: asyncio.Task[None],
        peer: object,
    ) -> None:
        parser = AudioSocketParser(max_payload=self._max_payload)
        first = await self._read_first_messages(reader, writer, parser, peer)
        self._handshaking.discard(task)
        if first is None:
            return
        call_id, rest = first
        if self._limit is not None and len(self._sessions) >= self._limit:
            self.refused_overload += 1
            call_logger(logger, call_id.value).warning(
                "%d calls in the IVR already (audiosocket.max_calls): handed back to the "
                "dialplan, which queues it for an agent", len(self._sessions))
            await _close_writer(writer, send_hangup=True)
            if self._on_overflow is not None:
                try:
                    await self._on_overflow(call_id.value)
                except Exception:
                    logger.exception("recording the handed-back call %s failed", call_id.value)
            return
        session = MediaSession(call_id.value, writer, keepalive=self._keepalive)
        log = call_logger(logger, session.call_id)
        log.info("AudioSocket connected from %s", peer)
        self._sessions.add(session)
        try:
            session.start()
            handler_task = asyncio.create_task(
                self._run_handler(session), name=f"call-handler-{session.call_id}"
            )
            self._track(handler_task, self._handler_tasks)
            for message in rest:
                session.deliver(message)
            await self._pump(reader, parser, session)
        finally:
            self._sessions.discard(session)
            session.terminate("media server stopped serving the connection")
            await session.wait_closed()

    async def _read_first_messages(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: AudioSocketParser,
        peer: object,
    ) -> tuple[Uuid, list[Message]] | None:
        """Read until the UUID arrives; on failure log, close and return None."""
        try:
            async with asyncio.timeout(self._first_message_timeout):
                while True:
                    data = await reader.read(READ_CHUNK)
                    if not data:
                        logger.info("AudioSocket peer %s closed before sending a UUID", peer)
                        await _close_writer(writer, send_hangup=False)
                        return None
                    messages = parser.feed(data)
                    if messages:
                        first = messages[0]
                        assert isinstance(first, Uuid)  # the parser enforces it
                        return first, messages[1:]
        except TimeoutError:
            logger.warning(
                "AudioSocket peer %s sent no UUID within %.1f s; closing",
                peer, self._first_message_timeout,
            )
        except AudioSocketProtocolError as exc:
            logger.warning("AudioSocket peer %s sent an invalid first message: %s", peer, exc)
        except ConnectionError as exc:
            logger.info("AudioSocket peer %s dropped before sending a UUID: %r", peer, exc)
            await _close_writer(writer, send_hangup=False)
            return None
        await _close_writer(writer, send_hangup=True)
        return None

    async def _pump(
        self, reader: asyncio.StreamReader, parser: AudioSocketParser, session: MediaSession
    ) -> None:
        """Route inbound messages into the session until either side ends it."""
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
            try:
                messages = parser.feed(data)
            except AudioSocketProtocolError as exc:
                for message in exc.decoded:
                    session.deliver(message)
                call_logger(logger, session.call_id).warning(
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
            call_logger(logger, session.call_id).exception(
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
