"""Live state of every signed-in agent desk, fed by call events, fanned out to websockets.

The hub subscribes to the call event bus. It knows, per agent: the queue member state of
their desk phone (available, ringing, on call, paused...), and their current call with its
screen pop, from the first ring to the end of wrap-up. Every open desk of that agent (a
browser may have several tabs) gets each change as a JSON message; a desk that reloads or
lost its websocket asks for :meth:`DeskHub.current` and is back where it was.

Pops follow the queue: AgentRinging pops the call on every desk whose phone rings (ring-all:
several), AgentAnswered turns it into the answering agent's call and closes it on the others,
AgentRingStopped / CallerAbandoned / CallEnded close what is still ringing. The hub remembers
which call each desk phone is connected to, desk signed in or not, so an agent who signs in
(or whose desk reloads) mid-call after ``hotline serve`` restarted gets that call's pop back:
the queue tracker re-announces live connections after every AMI login. It remembers as well
which call rings each desk phone, so a desk that signs in (or reconnects to another web node
of a cluster) while its phone rings gets the ringing pop. A web node of a cluster replays the
stream's recent events into a new hub (``replaying``: no pops are built ahead meanwhile, no
desk is signed in yet) so the calls under way are known with their steps. Events are handled
in arrival order by one worker task, so the bus (and the AMI reader behind it) never waits for
the database; pop views go to the audit log behind the pushes (both
:mod:`crm.storage.write_behind`).
The hub keeps each call's events (``crm.live.calls``): a pop's IVR transcript comes from
them, never waiting for the consultation recorder; the database is read for the caller's
history, and for the transcript only of calls whose start the hub did not see.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from crm.agents.view import AgentView
from crm.audit import log as audit
from crm.i18n.catalogs import translator
from crm.live.calls import LiveCalls
from crm.live.screen_pop import ScreenPop, build_screen_pop, summarise_steps
from crm.storage.db import SessionFactory
from crm.storage.journal import EventJournal
from crm.storage.models import utcnow
from crm.storage.write_behind import DATABASE_BACKOFF, Backoff, Queued, WriteBehind
from crm.telephony.events import (
    AgentAnswered,
    AgentCallEnded,
    AgentRinging,
    AgentRingStopped,
    AgentStatusChanged,
    BusEvent,
    CallEnded,
    CallerAbandoned,
    CallerQueued,
    CallStep,
)
from crm.telephony.steps import RecordingStarted, RouteChosen

log = logging.getLogger(__name__)

PopBuilder = Callable[..., Awaitable[ScreenPop]]
SEND_TIMEOUT = 5.0
AUDIT_CLOSE_TIMEOUT = 2.0
"""Seconds closing the hub waits for the pop views shown to reach the audit log."""


class DeskSocket(Protocol):
    """An open desk connection (aiohttp's WebSocketResponse is one)."""

    async def send_json(self, data: Any) -> None: ...

    async def close(self) -> Any: ...


@dataclass
class DeskCall:
    call_id: str
    phase: str
    """ringing, connected or ended (wrap-up: notes, disposition, cases)."""
    pop: ScreenPop
    queue: str = ""
    caller_channel: str | None = None
    rang_at: str = field(default_factory=lambda: utcnow().isoformat())
    answered_at: str | None = None
    ended_at: str | None = None

    def to_json(self, viewer_role: str, locale: str | None = None) -> dict[str, Any]:
        """The call as ``viewer_role`` may see it, its transcripts in ``locale`` (the
        hotline's default language for None)."""
        return {"call_id": self.call_id, "phase": self.phase, "queue": self.queue,
                "rang_at": self.rang_at, "answered_at": self.answered_at,
                "ended_at": self.ended_at, "can_transfer": self.phase == "connected",
                "pop": self.pop.to_json(viewer_role=viewer_role,
                                        reveal=self.phase == "connected",
                                        t=translator(locale))}


@dataclass
class AgentDesk:
    agent_id: int
    login: str
    display_name: str
    role: str
    extension: str | None
    status: str = "logged_out"
    paused: bool = False
    call: DeskCall | None = None
    sockets: set[DeskSocket] = field(default_factory=set)
    version: int = 0
    """Grows with every change pushed; a desk ignores a snapshot older than what it has."""
    locale: str | None = None
    """The language the agent chose for the desk (None: the hotline's default): pushes
    carry text in it."""
    expires_at: float = float("inf")
    """time.time() after which the desk is idle-expired (see DeskHub.expired)."""
    languages: tuple[str, ...] = ("cmn",)
    """Languages the agent speaks: the queues of these offer the agent their calls first."""

    @property
    def actor(self) -> str:
        return f"agent:{self.login}"

    def agent_json(self) -> dict[str, Any]:
        return {"login": self.login, "name": self.display_name, "role": self.role,
                "extension": self.extension, "status": self.status, "paused": self.paused,
                "languages": list(self.languages)}

    def snapshot(self) -> dict[str, Any]:
        return {"seq": self.version, "agent": self.agent_json(),
                "call": self.call.to_json(self.role, self.locale) if self.call else None}


class DeskHub:
    def __init__(self, sessions: SessionFactory, *, pop_builder: PopBuilder = build_screen_pop,
                 audit_journal: EventJournal | None = None,
                 audit_backoff: Backoff = DATABASE_BACKOFF,
                 on_pop: Callable[[float], None] | None = None) -> None:
        """``pop_builder`` builds a call's pop; it stays a public attribute, so a benchmark may
        time it (bench/pop_delay.py). ``audit_journal`` keeps pop views not yet in the audit log
        across a crash or a database outage (a :func:`crm.storage.journal.json_journal`); those
        left from a previous run are written at start. ``audit_backoff``: between attempts
        while the database is down."""
        self._sessions = sessions
        self.pop_builder = pop_builder
        self._on_pop = on_pop
        """Told each pop's delay in seconds, from the ring (AgentCalled) to the desk."""
        self._live = LiveCalls()
        """The calls' events so far: pops are built from them, not read back from the
        consultation being written."""
        self._desks: dict[str, AgentDesk] = {}
        self._members: dict[str, AgentStatusChanged] = {}
        """Last known queue member state by extension, desk signed in or not."""
        self._pops: dict[str, ScreenPop] = {}
        self._building: dict[str, asyncio.Task[ScreenPop]] = {}
        """Pops being built ahead of the first ring (see :meth:`_prepare_pop`)."""
        self._connected: dict[str, AgentAnswered] = {}
        """The call each desk phone (by extension) is connected to, desk signed in or not."""
        self._ringing: dict[str, AgentRinging] = {}
        """The call ringing each desk phone (by extension), desk signed in or not."""
        self.replaying = False
        """Events of the past are being replayed (a web node starting): pops are built when
        a desk asks, not ahead for every call that was handed to the agents."""
        self._events: WriteBehind[BusEvent] = WriteBehind(
            "desk events", self._apply_one, batch_max=1, retry_on=(),
            describe=_describe_event, logger=log)
        """Events in arrival order; one that fails is logged and skipped."""
        self._audits: WriteBehind[dict[str, Any]] = WriteBehind(
            "pop views", self._write_audits, journal=audit_journal, backoff=audit_backoff,
            describe=_describe_view, logger=log)
        """Pop views pushed, for the audit log (written behind, many per transaction)."""
        self._changed = asyncio.Condition()

    @property
    def pending_audits(self) -> int:
        """Pop views shown but not yet in the audit log."""
        return self._audits.pending

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._events.start()
        self._audits.start()

    async def close(self) -> None:
        for task in self._building.values():
            task.cancel()
        self._building.clear()
        await self._events.close(timeout=0)
        # What was shown is audited before we go (bounded); what is not stays journaled.
        await self._audits.close(AUDIT_CLOSE_TIMEOUT)
        await self.close_sockets()

    async def close_sockets(self) -> None:
        """Close every open desk connection (the web server is shutting down); desks
        reconnect to whoever serves them next."""
        for desk in self._desks.values():
            for socket in list(desk.sockets):
                with contextlib.suppress(Exception):
                    await socket.close()
            desk.sockets.clear()

    async def handle(self, event: BusEvent) -> None:
        """Bus subscriber: never waits for the database or a browser."""
        self._events.put(event)

    async def drain(self) -> None:
        """Wait until every event received before this call is handled and its pop views
        are in the audit log (for tests and shutdown)."""
        await self._events.drain()
        await self._audits.drain()

    async def _apply_one(self, batch: Sequence[Queued[BusEvent]]) -> None:
        for queued in batch:
            await self._apply(queued.item)

    async def _write_audits(self, batch: Sequence[Queued[dict[str, Any]]]) -> None:
        """Pop views go to the audit log behind the pushes, many per transaction, so a busy
        queue's pops never wait for the database (the hub's one worker serves every desk)."""
        async with self._sessions() as session, session.begin():
            for queued in batch:
                entry = queued.item
                audit.record(session, **{**entry, "at": datetime.fromisoformat(entry["at"])})

    # -- desks ----------------------------------------------------------------------------------
    def sign_in(self, agent: AgentView, *, expires_at: float = float("inf")) -> AgentDesk:
        """Register (or refresh) the desk of a signed-in agent."""
        desk = self._desks.get(agent.login)
        if desk is None or desk.extension != agent.extension:
            old = desk
            desk = AgentDesk(agent.id, agent.login, agent.display_name, agent.role,
                             agent.extension)
            if old is not None:
                desk.sockets, desk.call = old.sockets, old.call
            self._desks[agent.login] = desk
        desk.display_name, desk.role = agent.display_name, agent.role
        desk.languages = agent.languages
        desk.locale = agent.locale
        desk.expires_at = expires_at
        member = self._members.get(agent.extension or "")
        if member is not None:
            desk.status, desk.paused = member.status, member.paused
        return desk

    def set_locale(self, login: str, locale: str | None) -> None:
        """The agent chose another language: what is pushed from now on is in it."""
        desk = self._desks.get(login)
        if desk is not None:
            desk.locale = locale

    async def sign_out(self, login: str) -> AgentDesk | None:
        desk = self._desks.pop(login, None)
        if desk is not None:
            for socket in list(desk.sockets):
                with contextlib.suppress(Exception):
                    await socket.close()
        return desk

    def desk(self, login: str) -> AgentDesk | None:
        return self._desks.get(login)

    def touch(self, login: str, expires_at: float) -> None:
        """The agent did something at a desk: idle expiry moves to ``expires_at``."""
        desk = self._desks.get(login)
        if desk is not None:
            desk.expires_at = expires_at

    def expired(self, now: float | None = None) -> list[AgentDesk]:
        now = time.time() if now is None else now
        return [d for d in self._desks.values() if d.expires_at <= now]

    def attach(self, login: str, socket: DeskSocket) -> AgentDesk | None:
        desk = self._desks.get(login)
        if desk is not None:
            desk.sockets.add(socket)
        return desk

    def detach(self, login: str, socket: DeskSocket) -> None:
        desk = self._desks.get(login)
        if desk is not None:
            desk.sockets.discard(socket)

    def call_of(self, login: str, call_id: str) -> DeskCall | None:
        desk = self._desks.get(login)
        if desk is None or desk.call is None or desk.call.call_id != call_id:
            return None
        return desk.call

    async def current(self, login: str, *,
                      origin: dict[str, str | None] | None = None) -> dict[str, Any] | None:
        """The desk's state and current call (what a reloaded desk shows); the pop view is
        audited, with ``origin`` (crm.audit.log's source and web_session) when a request asked."""
        desk = self._desks.get(login)
        if desk is None:
            return None
        answered = self._connected.get(desk.extension or "")
        ringing = self._ringing.get(desk.extension or "")
        if desk.call is None and answered is not None:
            # Signed in mid-call (e.g. after a restart): the call the phone is on.
            desk.call = self._connected_call(answered, await self._pop_for(answered))
            log.info("call %s: pop restored on %s's desk", answered.call_id, desk.login)
        elif desk.call is None and ringing is not None:
            # Signed in (or moved to this web node) while the phone rings.
            desk.call = DeskCall(ringing.call_id, "ringing", await self._pop_for(ringing),
                                 ringing.queue, ringing.channel, rang_at=ringing.at.isoformat())
            log.info("call %s: ringing pop restored on %s's desk", ringing.call_id, desk.login)
        if desk.call is not None:
            self._audit_view(desk, desk.call, via="current-call", origin=origin)
        return desk.snapshot()

    async def dismiss(self, login: str, call_id: str) -> bool:
        """The agent closes a call they finished (wrap-up done)."""
        desk = self._desks.get(login)
        if desk is None or desk.call is None or desk.call.call_id != call_id:
            return False
        if desk.call.phase == "connected":
            return False
        await self._close(desk, "dismissed")
        return True

    async def refresh_pop(self, call_id: str, *, linked_case: str | None = None) -> None:
        """Rebuild a call's pop after the desk changed its data; ``linked_case``: the case
        the agent just created or linked on the call, which the pop then keeps (its case card
        shows it when the caller asked about none, without a database query per rebuild)."""
        holders = [d for d in self._desks.values() if d.call and d.call.call_id == call_id]
        if not holders:
            return
        first = holders[0].call
        assert first is not None
        pop = await self.pop_builder(self._sessions, call_id, caller_number=first.pop.caller_number,
                                caller_name=first.pop.caller_name,
                                so_far=self._live.get(call_id),
                                linked_case=linked_case or first.pop.linked_case)
        self._pops[call_id] = pop
        for desk in holders:
            assert desk.call is not None
            desk.call.pop = pop
            shown = desk.call.to_json(desk.role, desk.locale)
            if await self._push(desk, {"type": "pop", "call": shown}):
                self._audit_view(desk, desk.call, via="refresh")

    async def wait_for(self, check: Callable[[], bool], within: float) -> None:
        """Wait until ``check()`` holds after some hub change (tests)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(check)

    # -- events -------------------------------------------------------------------------------
    def _desk_for(self, extension: str | None) -> AgentDesk | None:
        if not extension:
            return None
        return next((d for d in self._desks.values() if d.extension == extension), None)

    def _holding(self, call_id: str) -> list[AgentDesk]:
        return [d for d in self._desks.values() if d.call and d.call.call_id == call_id]

    def _track_connections(self, event: BusEvent) -> None:
        if isinstance(event, AgentRinging) and event.extension:
            self._ringing[event.extension] = event
        elif isinstance(event, AgentRingStopped | AgentAnswered | CallerAbandoned | CallEnded):
            for extension, rings in list(self._ringing.items()):
                if rings.call_id == event.call_id and (
                        not isinstance(event, AgentRingStopped) or extension == event.extension):
                    del self._ringing[extension]
        if isinstance(event, AgentAnswered) and event.extension:
            self._connected[event.extension] = event
        elif isinstance(event, AgentCallEnded | CallEnded):
            for extension, answered in list(self._connected.items()):
                if answered.call_id == event.call_id and (
                        isinstance(event, CallEnded) or extension == event.extension):
                    del self._connected[extension]

    async def _apply(self, event: BusEvent) -> None:
        self._live.record(event)
        self._track_connections(event)
        if isinstance(event, CallStep) and isinstance(event.step, RouteChosen) \
                and event.step.route == "agent":
            so_far = self._live.get(event.call_id)
            self._prepare_pop(event.call_id, so_far.caller_number if so_far else None,
                              so_far.caller_name if so_far else None)
        elif isinstance(event, CallerQueued):
            self._prepare_pop(event.call_id, event.caller_number, event.caller_name)
        if isinstance(event, AgentStatusChanged):
            await self._on_status(event)
        elif isinstance(event, AgentRinging):
            await self._on_ringing(event)
        elif isinstance(event, AgentAnswered):
            await self._on_answered(event)
        elif isinstance(event, AgentRingStopped):
            desk = self._desk_for(event.extension)
            if desk and desk.call and desk.call.call_id == event.call_id \
                    and desk.call.phase == "ringing":
                await self._close(desk, "not_answered")
        elif isinstance(event, AgentCallEnded):
            desk = self._desk_for(event.extension)
            if desk and desk.call and desk.call.call_id == event.call_id:
                await self._end(desk)
        elif isinstance(event, CallerAbandoned | CallEnded):
            reason = "abandoned" if isinstance(event, CallerAbandoned) else "caller_hung_up"
            for desk in self._holding(event.call_id):
                assert desk.call is not None
                if desk.call.phase == "ringing":
                    await self._close(desk, reason)
                elif desk.call.phase == "connected" and isinstance(event, CallEnded):
                    await self._end(desk)
            if isinstance(event, CallEnded) and not self._holding(event.call_id):
                self._pops.pop(event.call_id, None)
                if (building := self._building.pop(event.call_id, None)) is not None:
                    building.cancel()
        elif isinstance(event, CallStep) and isinstance(event.step, RecordingStarted):
            await self.refresh_pop(event.call_id)
        async with self._changed:
            self._changed.notify_all()

    async def _on_status(self, event: AgentStatusChanged) -> None:
        if event.extension:
            self._members[event.extension] = event
        desk = self._desk_for(event.extension)
        if desk is None:
            return
        desk.status, desk.paused = event.status, event.paused
        await self._push(desk, {"type": "status", "agent": desk.agent_json()})

    async def _pop_for(self, event: AgentRinging | AgentAnswered) -> ScreenPop:
        pop = self._pops.get(event.call_id)
        building = self._building.get(event.call_id)
        if pop is None and building is not None:
            with contextlib.suppress(Exception):  # it failed: build it here (errors shown)
                pop = await asyncio.shield(building)
        if pop is not None:
            pop = self._with_latest_steps(pop)
        else:
            pop = await self.pop_builder(self._sessions, event.call_id,
                                         caller_number=event.caller_number,
                                         caller_name=event.caller_name,
                                         so_far=self._live.get(event.call_id))
        self._pops[event.call_id] = pop
        return pop

    def _with_latest_steps(self, pop: ScreenPop) -> ScreenPop:
        """A pop built ahead, with the call's IVR summary brought up to date from the events
        held in memory (steps after the hand-over: the recording, the queue join)."""
        so_far = self._live.get(pop.call_id)
        if so_far is None or not so_far.complete:
            return pop
        ivr = summarise_steps((e.at.isoformat(), e.step) for e in so_far.steps)
        return pop if ivr == pop.ivr else dataclasses.replace(pop, ivr=ivr)

    def _prepare_pop(self, call_id: str, caller_number: str | None,
                     caller_name: str | None) -> None:
        """The IVR has handed the caller to the agents (or a callback joined the queue):
        build the pop now, beside the event worker, so the first ring only has to push it.
        With a ring-all queue that ring comes milliseconds after the queue join, and the
        database reads of a pop (resident, cases, earlier calls) took 100-200 ms at 80
        calls, while every desk event waited behind them."""
        if call_id in self._pops or call_id in self._building or self.replaying:
            return
        task = asyncio.get_running_loop().create_task(self.pop_builder(
            self._sessions, call_id, caller_number=caller_number, caller_name=caller_name,
            so_far=self._live.get(call_id)), name=f"pop-{call_id}")
        self._building[call_id] = task
        task.add_done_callback(functools.partial(self._built, call_id))

    def _built(self, call_id: str, task: asyncio.Task[ScreenPop]) -> None:
        current = self._building.get(call_id) is task
        if current:
            del self._building[call_id]
        if task.cancelled() or not current:  # the call ended meanwhile
            return
        if (error := task.exception()) is not None:
            log.warning("call %s: pop not prepared ahead (%s); built at the ring", call_id,
                        error)
            return
        self._pops.setdefault(call_id, task.result())

    async def _on_ringing(self, event: AgentRinging) -> None:
        desk = self._desk_for(event.extension)
        if desk is None:
            return
        if desk.call is not None and desk.call.call_id != event.call_id \
                and desk.call.phase == "connected":
            log.warning("call %s: %s rings while on call %s", event.call_id, desk.login,
                        desk.call.call_id)
            return
        if desk.call is not None and desk.call.call_id == event.call_id:
            return  # rung again (queue retry): the pop is already there
        pop = await self._pop_for(event)
        desk.call = DeskCall(event.call_id, "ringing", pop, event.queue, event.channel)
        log.info("call %s: pop on %s's desk (%d open)", event.call_id, desk.login,
                 len(desk.sockets))
        await self._show(desk)
        if self._on_pop is not None:
            self._on_pop((utcnow() - event.at).total_seconds())

    async def _on_answered(self, event: AgentAnswered) -> None:
        desk = self._desk_for(event.extension)
        for other in self._holding(event.call_id):
            if other is not desk and other.call and other.call.phase == "ringing":
                await self._close(other, "answered_elsewhere", answered_by=event.member_name)
        if desk is None:
            return
        if desk.call is not None and desk.call.call_id == event.call_id \
                and desk.call.phase == "connected":
            return  # re-announced after an AMI login: the desk already shows it
        if desk.call is None or desk.call.call_id != event.call_id:
            desk.call = DeskCall(event.call_id, "ringing", await self._pop_for(event),
                                 event.queue)
        desk.call.phase = "connected"
        desk.call.caller_channel = event.channel or desk.call.caller_channel
        desk.call.answered_at = event.at.isoformat()
        await self._show(desk)

    @staticmethod
    def _connected_call(event: AgentAnswered, pop: ScreenPop) -> DeskCall:
        at = event.at.isoformat()
        return DeskCall(event.call_id, "connected", pop, event.queue, event.channel,
                        rang_at=at, answered_at=at)

    async def _end(self, desk: AgentDesk) -> None:
        assert desk.call is not None
        if desk.call.phase == "ended":
            return
        desk.call.phase = "ended"
        desk.call.ended_at = utcnow().isoformat()
        await self._push(desk, {"type": "pop",
                                "call": desk.call.to_json(desk.role, desk.locale)})

    async def _close(self, desk: AgentDesk, reason: str, **extra: Any) -> None:
        call, desk.call = desk.call, None
        if call is None:
            return
        log.info("call %s: pop closed on %s's desk (%s)", call.call_id, desk.login, reason)
        await self._push(desk, {"type": "pop_closed", "call_id": call.call_id,
                                "reason": reason, **extra})

    async def _show(self, desk: AgentDesk) -> None:
        assert desk.call is not None
        call = desk.call
        delivered = await self._push(desk, {"type": "pop",
                                            "call": call.to_json(desk.role, desk.locale)})
        if delivered:
            self._audit_view(desk, call, via="push")

    def _audit_view(self, desk: AgentDesk, call: DeskCall, *, via: str,
                    origin: dict[str, str | None] | None = None) -> None:
        pop = call.pop
        entry = dict(
            at=utcnow().isoformat(), actor=desk.actor, action="pop.view",
            object_type="consultation", object_id=pop.consultation_id or call.call_id,
            detail={**pop.audit_detail, "phase": call.phase, "via": via,
                    "phone_revealed": call.phase == "connected"}, **(origin or {}))
        self._audits.put(entry)

    async def _push(self, desk: AgentDesk, message: dict[str, Any]) -> int:
        """Send to every open desk of the agent; a socket that fails is dropped."""
        desk.version += 1
        message = {**message, "seq": desk.version}
        delivered = 0
        for socket in list(desk.sockets):
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await socket.send_json(message)
                delivered += 1
            except Exception as exc:
                log.info("desk of %s: dropping a socket (%s)", desk.login,
                         type(exc).__name__)
                desk.sockets.discard(socket)
                with contextlib.suppress(Exception):
                    await socket.close()
        return delivered


def _describe_event(event: BusEvent) -> str:
    return f"call {event.call_id or '-'}: {type(event).__name__}"


def _describe_view(entry: dict[str, Any]) -> str:
    return f"pop view of {entry.get('object_id')} by {entry.get('actor')}"
