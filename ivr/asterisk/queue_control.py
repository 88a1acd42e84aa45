"""Agents joining, leaving and pausing the hotline's queues, and blind transfers, over AMI.

The hotline has a main queue and one queue per other language (the language desks,
``crm.telephony.queue.language_queues``). A signed-in agent is a member of every one of
them: with penalty 0 in the queues of the languages they speak, 1 in the others, so a caller
is offered first to agents who speak their language (queuerules.conf lets anyone answer once
the caller waited ``[intake] language_fallback_after``).

Callbacks a supervisor assigned to one agent wait in one more queue, the assigned-callbacks
queue (``crm.telephony.queue.assigned_queue``): every signed-in agent is a member of it with
their agent id as penalty, and an assigned callback asks for exactly that penalty, so only
its agent is offered it. Leaving and pausing include it.

This is the agent desk's crm.telephony.queue.AgentQueue: the composition root builds it on
any object with ``action`` and ``action_list`` coroutines (ivr.ami.client.AmiClient has them)
and hands it to the desk. Errors Asterisk answers become the CRM's telephony errors
(TelephonyRefused, TelephonyUnavailable); "already a member" and "not a member" are not errors
here, so joining and leaving are idempotent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from crm.errors import InvalidInput
from crm.i18n.phrases import Phrase
from crm.telephony.queue import (
    TelephonyRefused,
    TelephonyUnavailable,
    member_penalties,
)

log = logging.getLogger(__name__)

_INTERFACE = re.compile(r"[A-Za-z]+/[0-9A-Za-z_.@/-]{1,80}")
_EXTEN = re.compile(r"[0-9]{2,16}")
"""A number a blind transfer may dial (a department's phone)."""
TRANSFER_CONTEXT = "hotline-transfer"


class AmiActions(Protocol):
    """What queue control needs of an AMI client."""

    async def action(self, name: str, *, timeout: float = ..., **fields: str) -> Any: ...

    async def action_list(self, name: str, *, timeout: float = ...,
                          **fields: str) -> list[Any]: ...


@dataclass(frozen=True)
class QueueMember:
    queue: str
    interface: str
    name: str | None
    paused: bool
    in_call: bool
    status: int | None


def _message(exc: Exception) -> str:
    return str(getattr(exc, "message", "") or exc)


class QueueControl:
    def __init__(self, ami: AmiActions, queue: str = "hotline", *,
                 queues: Mapping[str, str] | None = None, default_language: str = "cmn",
                 transfer_context: str = TRANSFER_CONTEXT, timeout: float = 5.0,
                 assigned: str | None = None) -> None:
        """``queue``: the main queue; ``queues``: language -> queue, every queue of the
        hotline (None: the main queue alone, for ``default_language``); ``assigned``: the
        assigned-callbacks queue (None: none)."""
        self._ami = ami
        self.queue = queue
        self.queues: dict[str, str] = dict(queues or {default_language: queue})
        self.default_language = default_language
        self.transfer_context = transfer_context
        self._timeout = timeout
        self.assigned = assigned

    async def _action(self, name: str, *, tolerate: tuple[str, ...] = (), **fields: str) -> bool:
        """True when Asterisk did it, False when it answered a tolerated refusal."""
        try:
            await self._ami.action(name, timeout=self._timeout, **fields)
        except Exception as exc:
            message = _message(exc)
            if any(t.lower() in message.lower() for t in tolerate):
                log.debug("AMI %s: %s (fine)", name, message)
                return False
            if getattr(exc, "response", None) is not None:  # Asterisk answered with an error
                raise TelephonyRefused(Phrase("Asterisk refused {action}: {message}",
                                              {"action": name, "message": message})) from exc
            raise TelephonyUnavailable(Phrase("cannot reach Asterisk for {action}: {message}",
                                              {"action": name, "message": message})) from exc
        return True

    async def join(self, interface: str, member_name: str,
                   languages: Sequence[str] = (), *, agent_id: int | None = None) -> None:
        """Add the desk phone to every hotline queue, unpaused (already a member: its
        penalty is set again and it is unpaused). Penalty 0 in the queues of ``languages``
        (none given: the default language), 1 elsewhere; ``agent_id`` in the
        assigned-callbacks queue (the agent's own callbacks)."""
        self._check(interface)
        speaks = list(languages) or [self.default_language]
        penalties = member_penalties(self.queues, speaks)
        if self.assigned and agent_id is not None:
            if agent_id < 1:
                raise InvalidInput(f"agent id {agent_id} cannot be a queue penalty")
            penalties[self.assigned] = agent_id
        for queue, penalty in penalties.items():
            added = await self._action(
                "QueueAdd", tolerate=("already there",), Queue=queue, Interface=interface,
                MemberName=_one_line(member_name), Penalty=str(penalty), Paused="false")
            if not added:  # a member already: its languages may have changed
                await self._action("QueuePenalty", Queue=queue, Interface=interface,
                                   Penalty=str(penalty))
            await self._pause_in(queue, interface, False)
            log.info("queue %s: %s (%s) joined, penalty %d", queue, interface, member_name,
                     penalty)

    async def leave(self, interface: str) -> None:
        self._check(interface)
        for queue in self._all():
            await self._action("QueueRemove", tolerate=("not there",), Queue=queue,
                               Interface=interface)
            log.info("queue %s: %s left", queue, interface)

    async def pause(self, interface: str, paused: bool, reason: str = "") -> None:
        self._check(interface)
        for queue in self.queues.values():
            await self._pause_in(queue, interface, paused, reason)
        if self.assigned:  # a phone that joined without an agent id is not a member there
            await self._pause_in(self.assigned, interface, paused, reason,
                                 tolerate=("not found",))

    def _all(self) -> list[str]:
        return [*self.queues.values(), *([self.assigned] if self.assigned else [])]

    async def _pause_in(self, queue: str, interface: str, paused: bool,
                        reason: str = "", tolerate: tuple[str, ...] = ()) -> None:
        fields = {"Queue": queue, "Interface": interface,
                  "Paused": "true" if paused else "false"}
        if reason:
            fields["Reason"] = _one_line(reason)
        await self._action("QueuePause", tolerate=tolerate, **fields)

    async def members(self) -> list[QueueMember]:
        try:
            items = await self._ami.action_list("QueueStatus", timeout=self._timeout,
                                                Queue=self.queue)
        except Exception as exc:
            raise TelephonyUnavailable(Phrase("cannot reach Asterisk for {action}: {message}",
                                              {"action": "QueueStatus",
                                               "message": _message(exc)})) from exc
        return [QueueMember(i.get("Queue") or self.queue, i.get("Location") or "",
                            i.get("Name"), i.get("Paused") == "1", i.get("InCall") == "1",
                            int(i.get("Status")) if (i.get("Status") or "").isdigit() else None)
                for i in items if i.name.lower() == "queuemember"]

    async def blind_transfer(self, caller_channel: str, number: str) -> None:
        """Send the caller to ``number`` (a department's phone) in the transfer context; the
        agent's leg is released."""
        if not _EXTEN.fullmatch(number or ""):
            raise InvalidInput(f"transfer number {number!r} must be 2-16 digits")
        self._check(caller_channel)
        await self._action("Redirect", Channel=caller_channel, Context=self.transfer_context,
                           Exten=number, Priority="1")
        log.info("transfer: %s -> %s@%s", caller_channel, number, self.transfer_context)

    @staticmethod
    def _check(channel_or_interface: str) -> None:
        if not _INTERFACE.fullmatch(channel_or_interface or ""):
            raise InvalidInput(f"not a channel or interface: {channel_or_interface!r}")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:80]
