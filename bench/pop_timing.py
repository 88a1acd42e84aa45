"""What ``bench.pop_delay`` measures: when each queue call rang the agent (AgentCalled, as
the service received it), when the desk hub built its pop, and when the browser showed it.

``Tally`` collects the times from the service's AMI subscriber, the desk hub's log line
(``PopBuiltLog``), a timer around the hub's pop builder (``HubProbe``) and the browser's
observer of the desk's ``#pop`` element; callers wait on it for their pop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from crm.live.desk_hub import DeskHub
from crm.live.screen_pop import ScreenPop
from ivr.ami.client import AmiEvent
from ivr.asterisk.queue_tracker import call_id_of


@dataclass
class PopTiming:
    """One queue call that rang the agent's phone."""

    call_id: str
    caller: str
    """The SIPp caller (its caller-ID name, bench-NNN)."""
    called_at: float
    """time.time() when the service received the first AgentCalled for this call."""
    asterisk_at: float | None
    """AgentCalled's own Timestamp header (Asterisk's clock, manager timestampevents)."""
    rings: int = 1
    build: tuple[float, float] | None = None
    """time.time() when the desk hub started and finished building the pop."""
    built_at: float | None = None
    """The desk hub had the pop built and was about to push it (its log line)."""
    shown_ms: float | None = None
    """Epoch ms in the browser when #pop became visible with this call."""
    painted_ms: float | None = None

    def delay_ms(self) -> float | None:
        return None if self.shown_ms is None else self.shown_ms - self.called_at * 1000


@dataclass
class Tally:
    pops: dict[str, PopTiming] = field(default_factory=dict)
    shown_unmatched: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    """Pops the browser showed before (or without) an AgentCalled we saw."""
    waiting: dict[str, asyncio.Event] = field(default_factory=dict)
    """Caller name -> set when that caller's pop was shown."""
    placed: int = 0
    unrung_callers: list[str] = field(default_factory=list)

    def on_agent_called(self, event: AmiEvent, interface: str) -> None:
        now = time.time()
        if (event.get("Interface") or "") != interface:
            return
        call_id = call_id_of(event)
        if call_id is None:
            return
        known = self.pops.get(call_id)
        if known is not None:
            known.rings += 1
            return
        stamp = event.get("Timestamp")
        timing = PopTiming(call_id, event.get("CallerIDName") or "", now,
                           float(stamp) if stamp else None)
        self.pops[call_id] = timing
        if call_id in self.shown_unmatched:
            timing.shown_ms, timing.painted_ms = self.shown_unmatched.pop(call_id)
            self._release(timing)

    def on_pop_built(self, call_id: str, at: float) -> None:
        timing = self.pops.get(call_id)
        if timing is not None and timing.built_at is None:
            timing.built_at = at

    def on_pop_built_in(self, call_id: str, build: tuple[float, float]) -> None:
        timing = self.pops.get(call_id)
        if timing is not None and timing.build is None:
            timing.build = build

    def on_shown(self, call_id: str, dom_ms: float) -> None:
        timing = self.pops.get(call_id)
        if timing is None:
            self.shown_unmatched.setdefault(call_id, (dom_ms, None))
        elif timing.shown_ms is None:
            timing.shown_ms = dom_ms
            self._release(timing)

    def on_painted(self, call_id: str, frame_ms: float) -> None:
        timing = self.pops.get(call_id)
        if timing is not None and timing.painted_ms is None:
            timing.painted_ms = frame_ms
        elif call_id in self.shown_unmatched:
            dom, _ = self.shown_unmatched[call_id]
            self.shown_unmatched[call_id] = (dom, frame_ms)

    def _release(self, timing: PopTiming) -> None:
        event = self.waiting.get(timing.caller)
        if event is not None:
            event.set()


class HubProbe:
    """Times the desk hub's step before a pop is sent: building the pop (``pop_builder``).
    It wraps the builder the composition root handed to this DeskHub instance; the hub's
    code is unchanged. A call's first build is its pop's (later ones are refreshes)."""

    def __init__(self, hub: DeskHub, tally: Tally) -> None:
        self.tally = tally
        build = hub.pop_builder

        async def timed_build(*args: Any, **kwargs: Any) -> ScreenPop:
            started = time.time()
            pop = await build(*args, **kwargs)
            self.tally.on_pop_built_in(str(args[1]), (started, time.time()))
            return pop

        hub.pop_builder = timed_build


class PopBuiltLog(logging.Handler):
    """Timestamps the desk hub's "call X: pop on Y's desk" line (sent right after it)."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(logging.INFO)
        self.tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("call %s: pop on") and record.args:
            self.tally.on_pop_built(str(record.args[0]), record.created)  # type: ignore[index]
