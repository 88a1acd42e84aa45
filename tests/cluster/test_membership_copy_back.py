"""Which way control copies queue membership when the queue node's AMI link logs in (a narrow
unit test with two fake links; the real restart is in test_city_queue): to the standby on a
link blip, back from the standby when the queue node's Asterisk restarted, and, the first
time control sees it, back only if it has no members."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hotline.roles.queue_standby import MembershipMirror
from ivr.ami.codec import AmiEvent, Headers


def member(interface: str, paused: str = "0") -> AmiEvent:
    return event("QueueMember", Queue="hotline", Location=interface, Name=interface,
                 Paused=paused, Penalty="0")


def event(name: str, **fields: str) -> AmiEvent:
    return AmiEvent(name, Headers(list(fields.items())))


class Link:
    def __init__(self, members: list[AmiEvent], started: str = "2026-12-06 10:00:00") -> None:
        self.state = "logged_in"
        self.members = members
        self.started = started
        self.ready: list[Callable[[], Awaitable[None]]] = []
        self.done: list[tuple[str, str]] = []

    def subscribe(self, pattern: str, handler: Any) -> Callable[[], None]:
        return lambda: None

    def on_ready(self, handler: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        self.ready.append(handler)
        return lambda: None

    async def action_list(self, name: str, **fields: str) -> list[AmiEvent]:
        assert name == "QueueStatus"
        return list(self.members)

    async def action(self, name: str, *, timeout: float = 5.0, **fields: str) -> AmiEvent:
        if name == "CoreStatus":
            date, _, time = self.started.partition(" ")
            return event("Response", Response="Success", CoreStartupDate=date,
                         CoreStartupTime=time)
        if name == "QueueAdd" and fields["Interface"] not in interfaces(self):
            self.members.append(member(fields["Interface"]))
        self.done.append((name, fields["Interface"]))
        return event("Response", Response="Success")


async def logged_in(primary: Link) -> None:
    for handler in primary.ready:
        await handler()


def interfaces(link: Link) -> set[str]:
    return {m.get("Location") or "" for m in link.members}


async def test_a_queue_node_that_restarted_gets_the_standbys_members_back() -> None:
    primary, standby = Link([member("PJSIP/2001")]), Link([])
    mirror = MembershipMirror(primary, standby, ("hotline",))  # type: ignore[arg-type]
    await logged_in(primary)  # first sight, with members: copied to the standby
    assert interfaces(standby) == {"PJSIP/2001"} and mirror.copied_back == 0
    await logged_in(primary)  # a blip: same Asterisk, copied to the standby again
    assert mirror.copied_back == 0 and not any(a == "QueueAdd" for a, _ in primary.done)

    primary.members, primary.started = [], "2026-12-06 10:05:00"  # killed and started again
    standby.members.append(member("PJSIP/2002", paused="1"))
    await logged_in(primary)
    assert interfaces(primary) == {"PJSIP/2001", "PJSIP/2002"} and mirror.copied_back == 2
    assert ("QueuePause", "PJSIP/2002") in primary.done


async def test_first_sight_copies_back_only_to_an_empty_queue_node() -> None:
    empty, standby = Link([]), Link([member("PJSIP/2001")])
    mirror = MembershipMirror(empty, standby, ("hotline",))  # type: ignore[arg-type]
    await logged_in(empty)  # control (re)started while the queue node came back empty
    assert interfaces(empty) == {"PJSIP/2001"} and mirror.copied_back == 1

    full, other = Link([member("PJSIP/2003")]), Link([member("PJSIP/2001")])
    mirror = MembershipMirror(full, other, ("hotline",))  # type: ignore[arg-type]
    await logged_in(full)
    assert interfaces(full) == {"PJSIP/2003"} and mirror.copied_back == 0
    assert interfaces(other) == {"PJSIP/2001", "PJSIP/2003"}
