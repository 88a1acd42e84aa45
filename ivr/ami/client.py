"""The one AMI client every part of the hotline uses.

Built from panoramisk's pieces (``Message`` parsing and ``Action`` serialisation, see
:mod:`ivr.ami.codec`) but not its ``Manager``, whose connection handling is what needs
replacing: it reports success when TCP connects rather than when login succeeds, its ping
never times out, it reconnects on a fixed timer, re-sends pending actions after a reconnect,
lets a failing event callback tear the connection down and decodes UTF-8 per TCP read.

Here instead: login success or failure is reported (:meth:`AmiClient.wait_ready`); reconnects
back off exponentially with jitter; a Ping watchdog drops half-open connections; pending
actions fail fast with :class:`AmiNotConnected` when the connection goes (never re-sent);
each subscriber gets its events in order from its own queue and task, so a slow or failing
subscriber delays or breaks nothing else; ``on_ready`` handlers run after every login so
subscribers can resynchronise what they missed while disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal, cast

from panoramisk.actions import Action

from ivr.ami.codec import AmiEvent, AmiStreamDecoder, build_action, encode_action
from ivr.settings import AmiSettings

__all__ = [
    "AmiActionError",
    "AmiClient",
    "AmiError",
    "AmiEvent",
    "AmiLoginError",
    "AmiNotConnected",
    "AmiTimeout",
]

log = logging.getLogger(__name__)

State = Literal["disconnected", "connecting", "logged_in", "login_failed", "closed"]
EventHandler = Callable[[AmiEvent], Awaitable[None] | None]
ReadyHandler = Callable[[], Awaitable[None] | None]


class AmiError(Exception):
    """Base of every error raised by this module."""


class AmiLoginError(AmiError):
    """Asterisk rejected our credentials."""


class AmiNotConnected(AmiError):
    """Not logged in, or the connection went while an action was waiting for its response."""


class AmiActionError(AmiError):
    """Asterisk answered an action with ``Response: Error``."""

    def __init__(self, action: str, response: AmiEvent) -> None:
        self.action = action
        self.response = response
        self.message = response.get("Message") or ""
        super().__init__(f"AMI action {action} failed: {self.message or 'no message'}")


class AmiTimeout(AmiError, TimeoutError):
    """No (complete) response to an action in time; the connection may still be fine."""


class _Pending:
    """An action waiting for its response, or for a list action the events up to *Complete."""

    def __init__(self, action: Action, *, list_mode: bool) -> None:
        self.name = str(action["Action"])
        self.list_mode = list_mode
        self.items: list[AmiEvent] = []
        self.future: asyncio.Future[AmiEvent | list[AmiEvent]] = (
            asyncio.get_running_loop().create_future()
        )

    def add(self, event: AmiEvent) -> bool:
        """Take one message carrying our ActionID; True once the action is complete."""
        if self.future.done():
            return True
        if event.is_response and not event.success:
            self.future.set_exception(AmiActionError(self.name, event))
        elif not self.list_mode:
            self.future.set_result(event)
        elif event.is_response:
            return False  # "Response: Success / EventList: start"; the items follow
        elif (event.get("EventList") or "").lower() == "complete" or event.name.endswith(
            "Complete"
        ):
            self.future.set_result(self.items)
        else:
            self.items.append(event)
        return self.future.done()


class _AmiProtocol(asyncio.Protocol):
    """One TCP connection: decodes the stream, matches responses, hands events on."""

    def __init__(self, peer: str, on_event: Callable[[AmiEvent], None]) -> None:
        self.peer = peer
        self._on_event = on_event
        self.decoder = AmiStreamDecoder()
        self._pending: dict[str, _Pending] = {}
        self._transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.fully_booted = asyncio.Event()
        """Asterisk said FullyBooted on this connection (at login if it already was)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        for event in self.decoder.feed(data):
            try:
                self._route(event)
            except Exception:
                log.exception("AMI %s: failed to handle %s message", self.peer, event.name)

    def _route(self, event: AmiEvent) -> None:
        pending = self._pending.get(event.action_id or "")
        if pending is not None:
            if pending.add(event):
                self._pending.pop(event.action_id or "", None)
            return
        if event.is_response:
            log.debug("AMI %s: response to unknown action %s ignored", self.peer, event.action_id)
            return
        if event.name == "FullyBooted":
            self.fully_booted.set()
        self._on_event(event)
        if event.name == "Shutdown":
            log.warning(
                "AMI %s: Asterisk is shutting down (%s, restart %s)",
                self.peer,
                event.get("Shutdown"),
                event.get("Restart"),
            )
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail_pending(f"connection lost{f': {exc}' if exc else ''}")
        if not self.lost.done():
            self.lost.set_result(None)

    def fail_pending(self, why: str) -> None:
        pending, self._pending = list(self._pending.values()), {}
        for item in pending:
            if not item.future.done():
                item.future.set_exception(
                    AmiNotConnected(f"AMI {self.peer}: {why} before {item.name} was answered")
                )

    def send(self, action: Action, *, list_mode: bool) -> asyncio.Future[AmiEvent | list[AmiEvent]]:
        if self._transport is None or self._transport.is_closing():
            name = action["Action"]
            raise AmiNotConnected(f"AMI {self.peer}: connection closing, {name} not sent")
        pending = _Pending(action, list_mode=list_mode)
        action_id = str(action.id)
        self._pending[action_id] = pending

        def forget(_: object) -> None:
            if self._pending.get(action_id) is pending:
                del self._pending[action_id]

        pending.future.add_done_callback(forget)
        self._transport.write(encode_action(action))
        return pending.future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class _Subscription:
    """A handler with its own queue and worker task: events in order, failures contained."""

    max_queued = 10_000

    def __init__(self, pattern: str, handler: EventHandler) -> None:
        self.pattern = pattern
        self.handler = handler
        self.regex = re.compile(fnmatch.translate(pattern), re.IGNORECASE)
        self.queue: asyncio.Queue[AmiEvent] = asyncio.Queue(self.max_queued)
        self.worker: asyncio.Task[None] | None = None
        self.dropped = 0

    def offer(self, event: AmiEvent) -> None:
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._work(), name=f"ami-subscriber-{self.pattern}")
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "AMI subscriber %r for %r is stuck: %d events dropped (latest %s)",
                    self.handler,
                    self.pattern,
                    self.dropped,
                    event.name,
                )

    async def _work(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                result = self.handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception(
                    "AMI subscriber %r for %r failed on %s event (call %s, uniqueid %s)",
                    self.handler,
                    self.pattern,
                    event.name,
                    event.chan_variables().get("CALL_ID") or event.get("CallId"),
                    event.get("Uniqueid"),
                )


async def _cancel_all(tasks: Iterable[asyncio.Task[object] | None]) -> None:
    """Cancel and wait for tasks; a cancellation of the caller itself still propagates."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    for task, result in zip(live, await asyncio.gather(*live, return_exceptions=True), strict=True):
        if isinstance(result, Exception):
            log.error("AMI task %s had failed", task.get_name(), exc_info=result)


class AmiClient:
    """Logged-in AMI connection that survives Asterisk restarts. No I/O until :meth:`start`."""

    connect_timeout = 10.0
    login_timeout = 10.0
    """Asterisk sleeps about a second before rejecting bad credentials: keep this above 1 s."""
    boot_timeout = 60.0
    """How long ``on_ready`` handlers wait for FullyBooted after a login before running."""

    def __init__(self, settings: AmiSettings, *, name: str = "hotline",
                 events: bool = True) -> None:
        """``events=False``: a link for actions only (an IVR worker's): Asterisk sends it no
        events, and ``on_ready`` handlers run without waiting for FullyBooted."""
        self._settings = settings
        self._name = name
        self._events = events
        self._peer = f"{settings.host}:{settings.port}"
        self._state: State = "disconnected"
        self._state_changed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._protocol: _AmiProtocol | None = None
        self._session_tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: list[_Subscription] = []
        self._retired: set[asyncio.Task[None]] = set()
        self._ready_handlers: list[ReadyHandler] = []
        self._login_error: AmiLoginError | None = None
        self._last_error: str | None = None
        self._retry_now = asyncio.Event()
        self.logins = 0
        """Successful logins so far: every one after the first is a reconnect."""

    @property
    def state(self) -> State:
        return self._state

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed (None once logged in); for health reports."""
        return self._last_error

    def _set_state(self, state: State) -> None:
        if self._state in (state, "closed"):
            return
        log.info("AMI %s (%s): %s -> %s", self._peer, self._name, self._state, state)
        self._state = state
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background; returns at once (see :meth:`wait_ready`)."""
        if self._state == "closed":
            raise AmiError(f"AMI client {self._name} is closed")
        if self._runner is not None and not self._runner.done():
            return
        self._login_error = None
        self._set_state("disconnected")
        self._runner = asyncio.create_task(self._run(), name=f"ami-{self._name}")

    def reconnect_now(self) -> None:
        """Cut short the pause before the next connection attempt (when the cause of the
        outage is known to be fixed); no effect while connected."""
        if self._state == "disconnected" and self._runner is not None:
            self._retry_now.set()

    async def wait_ready(self, timeout: float) -> None:
        """Return once logged in. AmiLoginError at once if the credentials were rejected."""
        try:
            async with asyncio.timeout(timeout):
                while self._state != "logged_in":
                    if self._state == "login_failed" and self._login_error is not None:
                        raise self._login_error
                    if self._state == "closed" or self._runner is None:
                        raise AmiNotConnected(f"AMI client {self._name} is {self._describe()}")
                    await self._state_changed.wait()
        except TimeoutError:
            raise AmiNotConnected(
                f"AMI at {self._peer} not ready within {timeout:g}s "
                f"({self._state}; last error: {self._last_error or 'none'})"
            ) from None

    def _describe(self) -> str:
        return "not started" if self._runner is None else self._state

    async def close(self) -> None:
        """Disconnect for good: no reconnect, every task this client started is finished."""
        self._set_state("closed")
        workers = [sub.worker for sub in self._subscriptions]
        await _cancel_all([self._runner, *workers, *self._retired])

    async def _run(self) -> None:
        delay = self._settings.reconnect_min
        while True:
            logged_in = False
            try:
                logged_in = await self._session()
            except AmiLoginError as exc:
                self._login_error = exc
                self._last_error = str(exc)
                self._set_state("login_failed")
                log.error(
                    "%s; not retrying until start() is called again "
                    "(check ami.username/ami.secret against manager.conf)",
                    exc,
                )
                return
            except (OSError, AmiError) as exc:  # TimeoutError is an OSError
                self._last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                log.warning("AMI %s: cannot connect and log in: %s", self._peer, self._last_error)
            except Exception:
                self._last_error = "internal error (see log)"
                log.exception("AMI %s: unexpected error in connection handling", self._peer)
            self._set_state("disconnected")
            if logged_in:
                delay = self._settings.reconnect_min
            pause = random.uniform(delay / 2, delay)
            log.info("AMI %s: reconnecting in %.2fs", self._peer, pause)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._retry_now.wait()
            self._retry_now.clear()
            delay = min(delay * 2, self._settings.reconnect_max)

    async def _session(self) -> bool:
        """Connect, log in, serve until the connection goes; True if login had succeeded."""
        settings = self._settings
        self._set_state("connecting")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _AmiProtocol(self._peer, self._dispatch), settings.host, settings.port
                )
        except TimeoutError:
            raise AmiTimeout(f"no TCP connection within {self.connect_timeout:g}s") from None
        login = build_action(
            "Login", {"Username": settings.username, "Secret": settings.secret,
                      "Events": "on" if self._events else "off"}
        )
        try:
            try:
                async with asyncio.timeout(self.login_timeout):
                    await protocol.send(login, list_mode=False)
            except AmiActionError as exc:
                raise AmiLoginError(
                    f"AMI at {self._peer} rejected login as {settings.username!r}: {exc.message}"
                ) from None
            except TimeoutError:
                raise AmiTimeout(f"no answer to Login within {self.login_timeout:g}s") from None
            log.info(
                "AMI %s: logged in as %s (protocol %s)",
                self._peer,
                settings.username,
                protocol.decoder.version,
            )
            self._protocol = protocol
            self._last_error = None
            self.logins += 1
            self._set_state("logged_in")
            for coro, role in ((self._watch_pings(protocol), "ping"),
                               (self._ready(protocol), "ready")):
                self._session_tasks.add(asyncio.create_task(coro, name=f"ami-{self._name}-{role}"))
            await protocol.lost
            self._last_error = "connection lost"
            log.warning("AMI %s: connection lost", self._peer)
            return True
        finally:
            self._protocol = None
            protocol.abort()
            protocol.fail_pending("disconnected")
            tasks, self._session_tasks = self._session_tasks, set()
            await _cancel_all(tasks)

    async def _watch_pings(self, protocol: _AmiProtocol) -> None:
        """Ping periodically; no Pong within ping_timeout means half-open: drop the socket."""
        interval, timeout = self._settings.ping_interval, self._settings.ping_timeout
        while True:
            await asyncio.sleep(interval)
            try:
                async with asyncio.timeout(timeout):
                    await protocol.send(build_action("Ping", {}), list_mode=False)
            except TimeoutError:
                log.warning(
                    "AMI %s: no answer to Ping within %gs; connection is half-open, reconnecting",
                    self._peer,
                    timeout,
                )
                protocol.abort()
                return
            except AmiActionError:
                pass  # any answer proves the connection is alive
            except AmiNotConnected:
                return

    async def _ready(self, protocol: _AmiProtocol) -> None:
        # Asterisk accepts logins while it still loads modules after a restart (QueueStatus
        # is an unknown command until app_queue is loaded), and says FullyBooted when done --
        # at once to a user who logs in later. Resynchronise only then.
        try:
            if self._events:
                async with asyncio.timeout(self.boot_timeout):
                    await protocol.fully_booted.wait()
        except TimeoutError:
            log.warning("AMI %s: no FullyBooted within %gs (is read=system granted to %s?); "
                        "resynchronising anyway", self._peer, self.boot_timeout,
                        self._settings.username)
        for handler in list(self._ready_handlers):
            try:
                result = handler()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("AMI %s: on_ready handler %r failed", self._peer, handler)

    # -- events ---------------------------------------------------------------------------

    def subscribe(self, pattern: str, handler: EventHandler) -> Callable[[], None]:
        """Call ``handler(event)`` (sync or async) for events whose name matches ``pattern``.

        Shell-style pattern, case-insensitive (``"*"``, ``"Agent*"``). Each subscription
        gets its events in arrival order; an exception is logged and the next event follows.
        Returns a function that unsubscribes (cancelling a handler still running).
        """
        subscription = _Subscription(pattern, handler)
        self._subscriptions.append(subscription)

        def unsubscribe() -> None:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
            worker = subscription.worker
            if worker is not None and not worker.done():
                worker.cancel()
                self._retired.add(worker)
                worker.add_done_callback(self._retired.discard)

        return unsubscribe

    def on_ready(self, handler: ReadyHandler) -> Callable[[], None]:
        """Call ``handler()`` (sync or async) after every successful login, reconnects included.

        Register before :meth:`start`: a handler added while logged in waits for the next
        login. Exceptions are logged; they never affect the connection.
        """
        self._ready_handlers.append(handler)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._ready_handlers.remove(handler)

        return remove

    def _dispatch(self, event: AmiEvent) -> None:
        for subscription in list(self._subscriptions):
            if subscription.regex.match(event.name):
                subscription.offer(event)

    # -- actions --------------------------------------------------------------------------

    async def action(self, name: str, *, timeout: float = 5.0, **fields: str) -> AmiEvent:
        """Send an action and return its response; AmiActionError on ``Response: Error``."""
        result = await self._request(name, fields, timeout, list_mode=False)
        return cast(AmiEvent, result)

    async def action_list(
        self, name: str, *, timeout: float = 10.0, **fields: str
    ) -> list[AmiEvent]:
        """Send a list action (CoreShowChannels, QueueStatus, Status...) and return the
        events it produced, without the opening response and the closing *Complete event."""
        result = await self._request(name, fields, timeout, list_mode=True)
        return cast(list[AmiEvent], result)

    async def _request(
        self, name: str, fields: dict[str, str], limit: float, *, list_mode: bool
    ) -> AmiEvent | list[AmiEvent]:
        protocol = self._protocol
        if protocol is None or self._state != "logged_in":
            raise AmiNotConnected(f"AMI {self._peer} is {self._describe()}; {name} not sent")
        future = protocol.send(build_action(name, fields), list_mode=list_mode)
        try:
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            raise AmiTimeout(
                f"AMI {self._peer}: no {'complete ' if list_mode else ''}answer to {name} "
                f"within {limit:g}s"
            ) from None

    async def setvar(self, channel: str, variable: str, value: str) -> None:
        """Set a channel variable; an empty ``channel`` sets a global variable."""
        fields = {"Variable": variable, "Value": value}
        if channel:
            fields["Channel"] = channel
        await self.action("Setvar", **fields)

    async def getvar(self, channel: str, variable: str) -> str | None:
        """A channel (or, with ``channel=""``, global) variable; None if unset or empty.

        AMI cannot tell an unset variable from an empty one. A missing channel raises
        AmiActionError.
        """
        fields = {"Variable": variable}
        if channel:
            fields["Channel"] = channel
        response = await self.action("Getvar", **fields)
        return response.get("Value") or None
