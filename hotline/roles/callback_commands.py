"""Callback actions taken on a web node of a cluster, where the callback scheduler does not
run: the database part is done on the web node at once (cancel, reassign, an agent's
outcome: audited as on one box), and what the scheduler must do about a callback waiting in
the queue (withdraw it; move it to the newly assigned agent) is sent to the core process on
a Redis list (``<stream>:callback-commands``), which the core takes commands from one by one.

A command sent while no core runs waits in the list; the request's status in the database
is right at once either way (a cancelled request is never dialled again)."""

from __future__ import annotations

import asyncio
import json
import logging

from redis.asyncio import Redis

from crm.callbacks import service
from crm.callbacks.dialing import CallbackScheduler
from crm.callbacks.service import CallbackView, RetryRules
from crm.settings import CallbackSettings
from crm.storage.db import SessionFactory
from crm.storage.models import utcnow
from crm.telephony.events import CallStep, EventBus
from crm.telephony.steps import CallbackOutcome
from hotline.bus.stream_entries import REDIS_BACKOFF, REDIS_DOWN

log = logging.getLogger(__name__)

COMMANDS = ("withdraw", "move")
BLOCK_S = 2


def commands_key(stream: str) -> str:
    return f"{stream}:callback-commands"


class RemoteCallbacks:
    """The web node's :class:`crm.callbacks.dialing.CallbackActions`."""

    def __init__(self, client: Redis, key: str, sessions: SessionFactory, bus: EventBus,
                 settings: CallbackSettings) -> None:
        self._client = client
        self._key = key
        self.sessions = sessions
        self.bus = bus
        self.rules = RetryRules.from_settings(settings)

    async def cancel(self, request_id: int, *, actor: str, note: str | None = None,
                     source: str | None = None, web_session: str | None = None) -> CallbackView:
        view = await service.cancel_callback(self.sessions, request_id, actor=actor, note=note,
                                             source=source, web_session=web_session)
        await self.send("withdraw", request_id)
        return view

    async def reassign(self, request_id: int, agent_login: str | None, *, actor: str,
                       source: str | None = None,
                       web_session: str | None = None) -> CallbackView:
        before = await service.get_callback(self.sessions, request_id)
        view = await service.reassign_callback(self.sessions, request_id, agent_login,
                                               actor=actor, source=source,
                                               web_session=web_session)
        if view.assigned_agent_id != before.assigned_agent_id and view.status == "dialling":
            await self.send("move", request_id)
        return view

    async def record_outcome(self, request_id: int, outcome: str, *, actor: str,
                             call_id: str | None = None, note: str | None = None) -> CallbackView:
        view = await service.record_outcome(self.sessions, request_id, outcome, actor=actor,
                                            rules=self.rules, note=note, now=utcnow())
        if call_id:
            await self.bus.publish(CallStep(call_id, CallbackOutcome(request_id, outcome,
                                                                     by=actor)))
        return view

    async def send(self, command: str, request_id: int) -> None:
        """Hand the command to the core (raises when Redis cannot take it: the web request
        fails with the database part done, and the supervisor sees an error)."""
        await self._client.rpush(self._key, json.dumps({"command": command,
                                                        "request_id": request_id}))
        log.info("callback %d: %s sent to the core", request_id, command)


async def take_commands(client: Redis, key: str, scheduler: CallbackScheduler) -> None:
    """The core's loop: carry out each command from the web nodes, in order, until
    cancelled; a command that cannot be read is logged and dropped."""
    attempt = 0
    while True:
        try:
            popped = await client.blpop([key], timeout=BLOCK_S)
        except REDIS_DOWN as exc:
            attempt += 1
            if attempt == 1:
                log.warning("callback commands: Redis unreachable (%s)", exc)
            await asyncio.sleep(REDIS_BACKOFF.delay(attempt))  # backoff while Redis is down
            continue
        attempt = 0
        if popped is None:
            continue
        carry_out(popped[1], scheduler)


def carry_out(raw: bytes | str, scheduler: CallbackScheduler) -> None:
    try:
        command = json.loads(raw)
        name, request_id = command["command"], int(command["request_id"])
        if name not in COMMANDS:
            raise ValueError(f"unknown command {name!r}")
    except (ValueError, KeyError, TypeError) as exc:
        log.error("callback commands: dropped %r: %s", raw, exc)
        return
    log.info("callback %d: %s, asked by a web node", request_id, name)
    if name == "withdraw":
        scheduler.withdraw([request_id])
    else:
        scheduler.move(request_id)
