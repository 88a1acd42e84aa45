"""A fake Asterisk Manager Interface on a real socket, for tests.

Like panoramisk's ``testing`` module it replays recorded AMI sessions, but it listens on
127.0.0.1 so the real client code (connect, login, ping, reconnect, TCP read boundaries) is
exercised. It answers Login, Logoff, Ping, Getvar, Setvar and CoreShowChannels itself; other
actions can be given handlers. Faults on demand: stop answering pings (half-open), leave
chosen actions unanswered, drop every connection, stop and restart on the same port, and send
arbitrary bytes split at chosen offsets (a UTF-8 character across two TCP reads).

Tests synchronise with :meth:`FakeAmiServer.wait_until` (bounded, woken on every server
event), never with fixed sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

EOL = "\r\n"
ActionHandler = Callable[["FakeAmiSession", dict[str, str]], str | None]
"""Gets the session and the action's headers; returns raw AMI text to send (or None)."""


def format_message(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """``{"Event": "Hangup", ...}`` -> ``"Event: Hangup\\r\\n...\\r\\n\\r\\n"``."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return "".join(f"{key}: {value}{EOL}" for key, value in pairs) + EOL


def load_session(path: str | Path) -> bytes:
    """A recorded session as bytes with CRLF line ends, whatever git did to the file."""
    text = Path(path).read_bytes().decode("utf-8")
    return text.replace("\r\n", "\n").replace("\n", EOL).encode("utf-8")


@dataclass(eq=False)
class FakeAmiSession:
    """One client connection to the fake server."""

    writer: asyncio.StreamWriter
    logged_in: bool = False
    username: str | None = None
    actions: list[dict[str, str]] = field(default_factory=list)

    async def send(self, data: bytes | str, *, chunks: Sequence[int] = (), pause: float = 0.0):
        """Write ``data``; ``chunks`` are byte offsets where to split it into separate writes.

        ``pause`` lets the peer read between writes, making split reads very likely (TCP
        may still merge them; tests must pass either way).
        """
        raw = data.encode("utf-8") if isinstance(data, str) else data
        cuts = [0, *sorted(c for c in chunks if 0 < c < len(raw)), len(raw)]
        for start, end in itertools.pairwise(cuts):
            if self.writer.is_closing():
                return
            self.writer.write(raw[start:end])
            await self.writer.drain()
            if pause and end < len(raw):
                await asyncio.sleep(pause)

    def abort(self) -> None:
        self.writer.transport.abort()


class FakeAmiServer:
    """``async with FakeAmiServer(secret="s") as ami: ...`` then connect to ``ami.port``."""

    def __init__(
        self,
        *,
        username: str = "hotline",
        secret: str = "secret",
        version: str = "11.0.0",
        host: str = "127.0.0.1",
        port: int = 0,
        login_delay: float = 0.0,
    ) -> None:
        self.username = username
        self.secret = secret
        self.version = version
        self.host = host
        self.port = port
        self.login_delay = login_delay
        """Asterisk sleeps about 1 s before answering a failed login; 0 keeps tests fast."""
        self.answer_pings = True
        self.silent_actions: set[str] = set()
        """Lower-case action names received but never answered."""
        self.handlers: dict[str, ActionHandler] = {}
        """Extra actions by lower-case name."""
        self.variables: dict[str, dict[str, str]] = {"": {}}
        """Variables per channel name; "" holds the globals. Getvar on another channel fails."""
        self.channels: list[dict[str, str]] = []
        """Headers of the CoreShowChannel events returned by CoreShowChannels."""
        self.sessions: list[FakeAmiSession] = []
        self.actions: list[dict[str, str]] = []
        self.connections = 0
        self.logins = 0
        self.failed_logins = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._activity = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> FakeAmiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (again) on ``port``: the first start picks a free port, restarts reuse it."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True, limit=1 << 22
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._notify()

    async def stop(self) -> None:
        """Stop listening and drop every connection (like Asterisk being killed)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.drop_connections()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._notify()

    def drop_connections(self) -> None:
        for session in list(self.sessions):
            session.abort()

    # -- synchronisation ------------------------------------------------------------------

    def _notify(self) -> None:
        self._activity.set()
        self._activity = asyncio.Event()

    async def wait_until(
        self, predicate: Callable[[], object], *, within: float = 3.0, what: str = "condition"
    ) -> None:
        """Wait until ``predicate()`` is true, re-checked on every connection, action,
        login or disconnect (and every 50 ms for conditions outside the server)."""
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    activity = self._activity
                    try:
                        async with asyncio.timeout(0.05):
                            await activity.wait()
                    except TimeoutError:
                        pass
        except TimeoutError:
            raise AssertionError(f"fake AMI: no {what} within {within}s") from None

    async def wait_logins(self, count: int, *, within: float = 3.0) -> None:
        await self.wait_until(lambda: self.logins >= count, within=within, what=f"{count} logins")

    async def wait_action(self, name: str, *, within: float = 3.0) -> dict[str, str]:
        """The first received action of that name (case-insensitive)."""

        def find() -> dict[str, str] | None:
            return next((a for a in self.actions if a["Action"].lower() == name.lower()), None)

        await self.wait_until(lambda: find() is not None, within=within, what=f"action {name}")
        found = find()
        assert found is not None
        return found

    # -- sending --------------------------------------------------------------------------

    @property
    def logged_in_sessions(self) -> list[FakeAmiSession]:
        return [s for s in self.sessions if s.logged_in and not s.writer.is_closing()]

    async def send(self, data: bytes | str, *, chunks: Sequence[int] = (), pause: float = 0.01):
        """Send raw bytes to every logged-in client, split at the ``chunks`` offsets."""
        for session in self.logged_in_sessions:
            await session.send(data, chunks=chunks, pause=pause)

    async def send_event(self, name: str, headers: Mapping[str, str] | None = None) -> None:
        await self.send(format_message({"Event": name, **(headers or {})}))

    async def replay(self, path: str | Path, *, chunk_size: int = 0, pause: float = 0.0) -> None:
        """Send a recorded session file, optionally cut into ``chunk_size``-byte writes."""
        data = load_session(path)
        chunks = range(chunk_size, len(data), chunk_size) if chunk_size else ()
        await self.send(data, chunks=chunks, pause=pause)

    # -- serving --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = FakeAmiSession(writer)
        self.sessions.append(session)
        self.connections += 1
        self._notify()
        try:
            writer.write(f"Asterisk Call Manager/{self.version}{EOL}".encode())
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                headers = _parse_action(raw.decode("utf-8", errors="replace"))
                if not await self._handle(session, headers):
                    break
        finally:
            self.sessions.remove(session)
            self._tasks.discard(task)
            writer.transport.abort()
            self._notify()

    async def _handle(self, session: FakeAmiSession, headers: dict[str, str]) -> bool:
        """Answer one action; False to close the connection."""
        name = headers.get("Action", "")
        self.actions.append(headers)
        session.actions.append(headers)
        self._notify()
        action_id = {"ActionID": headers["ActionID"]} if "ActionID" in headers else {}
        lname = name.lower()
        if lname == "login":
            return await self._login(session, headers, action_id)
        if not session.logged_in:
            self._reply(session, Response="Error", **action_id, Message="Permission denied")
            return True
        if lname in self.silent_actions or (lname == "ping" and not self.answer_pings):
            return True
        if lname in self.handlers:
            text = self.handlers[lname](session, headers)
            if text:
                session.writer.write(text.encode("utf-8"))
            return True
        if lname == "ping":
            self._reply(
                session,
                Response="Success",
                **action_id,
                Ping="Pong",
                Timestamp=f"{time.time():.6f}",
            )
        elif lname == "logoff":
            self._reply(
                session, Response="Goodbye", **action_id, Message="Thanks for all the fish."
            )
            return False
        elif lname in ("getvar", "setvar"):
            self._variable(session, lname, headers, action_id)
        elif lname == "coreshowchannels":
            self._core_show_channels(session, action_id)
        else:
            self._reply(session, Response="Error", **action_id, Message="Invalid/unknown command")
        return True

    async def _login(
        self, session: FakeAmiSession, headers: dict[str, str], action_id: dict[str, str]
    ) -> bool:
        if headers.get("Username") == self.username and headers.get("Secret") == self.secret:
            session.logged_in, session.username = True, self.username
            self.logins += 1
            self._reply(session, Response="Success", **action_id, Message="Authentication accepted")
            self._reply(
                session,
                Event="FullyBooted",
                Privilege="system,all",
                Uptime="5",
                LastReload="5",
                Status="Fully Booted",
            )
            self._notify()
            return True
        self.failed_logins += 1
        if self.login_delay:
            await asyncio.sleep(self.login_delay)
        self._reply(session, Response="Error", **action_id, Message="Authentication failed")
        await session.writer.drain()
        self._notify()
        return False

    def _variable(
        self,
        session: FakeAmiSession,
        lname: str,
        headers: dict[str, str],
        action_id: dict[str, str],
    ) -> None:
        channel = headers.get("Channel", "")
        variable = headers.get("Variable", "")
        if channel not in self.variables:
            self._reply(session, Response="Error", **action_id, Message="No such channel")
        elif lname == "setvar":
            self.variables[channel][variable] = headers.get("Value", "")
            self._reply(session, Response="Success", **action_id, Message="Variable Set")
        else:
            value = self.variables[channel].get(variable, "")
            self._reply(session, Response="Success", **action_id, Variable=variable, Value=value)

    def _core_show_channels(self, session: FakeAmiSession, action_id: dict[str, str]) -> None:
        self._reply(
            session,
            Response="Success",
            **action_id,
            EventList="start",
            Message="Channels will follow",
        )
        for channel in self.channels:
            self._reply(session, Event="CoreShowChannel", **action_id, **channel)
        self._reply(
            session,
            Event="CoreShowChannelsComplete",
            **action_id,
            EventList="Complete",
            ListItems=str(len(self.channels)),
        )

    @staticmethod
    def _reply(session: FakeAmiSession, **headers: str) -> None:
        if not session.writer.is_closing():
            session.writer.write(format_message(headers).encode("utf-8"))


def _parse_action(raw: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.split(EOL):
        key, sep, value = line.partition(": ")
        if sep:
            headers[key] = value
    return headers
