"""Screen pop delay: AgentCalled reaching the service -> the pop shown in a real browser.

    .venv/bin/python -m bench.pop_delay --calls 200 [--concurrency 5] [--max-seconds 480]

Everything is real and on this machine: a private Asterisk 22 from the shared Debian root
(free loopback ports), the hotline service in this process (``running_service``, SQLite,
demo data), one agent with a password signed in at ``/desk`` in headless Chromium
(Playwright), and a SIPp desk phone for that agent (extension 2004) that rings and never
answers. SIPp callers dial the hotline as the demo resident 13800138000 (Mandarin on file)
and press # at the greeting (no case number: an agent); ``--concurrency`` of them are in
flight at a time.
Each caller is hung up as soon as its pop was shown, which lets the queue ring the agent for
the next one.

Timing, all on the host's wall clock (time.time() in the service, epoch ms in the browser):

- start: the service's AMI reader hands AgentCalled to a subscriber of its own (registered
  next to the queue tracker's, same dispatch), which records time.time();
- end: a MutationObserver on the desk's ``#pop`` element sees it visible with a new
  ``data-call-id`` and reads ``performance.timeOrigin + performance.now()``. That is when
  the DOM shows the pop (desk.js fills the whole pop in the same task). The next animation
  frame is reported too, as a bound on when it was painted.

In between, the desk hub's log line "pop on X's desk" (written just before it sends) and a
timer around building the pop (the call's events in the hub's memory, history from the
database; ``HubProbe`` wraps the builder this hub instance was given) split the delay.

The browser's clock is checked against time.time() through Playwright before and after the
run (offset at the shortest round trip); the figures are not corrected by it. A pop is
missed when AgentCalled arrived for a call and its pop never became visible.

The parts: bench/pop_timing.py (what is measured and when), bench/pop_bed.py (the shared
Asterisk root, the service, the ringing desk phone), bench/pop_desk.py (the desk in
Chromium); this module places the calls and reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from bench.metrics import LoopLagMonitor, machine_description, percentile
from bench.pop_bed import AGENT_LOGIN, EXTENSION, BedLost, RingingPhone, SharedAsterisk, test_bed
from bench.pop_desk import SETUP_TIMEOUT_MS, clock_offset_ms, desk_page
from bench.pop_timing import HubProbe, PopBuiltLog, Tally
from hotline.service import HotlineService
from hotline.tools.sipp import place_call

log = logging.getLogger("bench.pop_delay")
T = TypeVar("T")

CALLER = "13800138000"
"""张三 in the demo data: Mandarin on file; '#' at the greeting (no case number) sends him
to an agent at once."""
KEYS = "#"
TARGET_P95_MS = 100.0


# --- the calls -------------------------------------------------------------------------


class CallRun:
    def __init__(self, service: HotlineService, tally: Tally, args: argparse.Namespace) -> None:
        self.service = service
        self.tally = tally
        self.args = args
        self._next = 0

    async def run(self) -> bool:
        """Place ``--calls`` callers, ``--concurrency`` at a time; False if the time limit
        stopped it."""
        try:
            async with asyncio.timeout(self.args.max_seconds), asyncio.TaskGroup() as group:
                for _ in range(self.args.concurrency):
                    group.create_task(self._worker())
        except TimeoutError:
            return False
        return True

    async def _worker(self) -> None:
        while self._next < self.args.calls:
            index, self._next = self._next, self._next + 1
            await self._one_call(index)

    async def _one_call(self, index: int) -> None:
        name = f"bench-{index:03d}"
        shown = self.tally.waiting.setdefault(name, asyncio.Event())
        self.tally.placed += 1
        call = asyncio.ensure_future(place_call(
            self.service.settings, caller_number=CALLER, caller_name=name, keys=KEYS,
            pause_before_keys_ms=300, hold_ms=int(self.args.call_timeout * 1000),
            max_seconds=self.args.call_timeout + 5))
        popped = asyncio.ensure_future(shown.wait())
        try:
            await asyncio.wait({call, popped}, timeout=self.args.call_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            if not popped.done():
                rang = any(p.caller == name for p in self.tally.pops.values())
                if not rang:
                    self.tally.unrung_callers.append(name)
                if not call.done():
                    log.warning("%s: no pop within %.0f s (rang the agent: %s)", name,
                                self.args.call_timeout, rang)
                elif call.cancelled() or call.exception() is not None:
                    log.warning("%s: the caller failed: %r", name,
                                None if call.cancelled() else call.exception())
                else:
                    result = call.result()
                    log.warning("%s ended without a pop: sipp exit %s, answered %s, %s", name,
                                result.exit_code, result.answered, result.events)
        finally:
            for task in (popped, call):  # hang up: the queue can ring the agent again
                task.cancel()
            for task in (popped, call):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if (index + 1) % 20 == 0:
            shown_so_far = sum(p.shown_ms is not None for p in self.tally.pops.values())
            print(f"  {index + 1} callers done, {shown_so_far} pops shown", flush=True)


# --- report ----------------------------------------------------------------------------


def _stats(values: list[float]) -> str:
    if not values:
        return "      -       -       -      0"
    return (f"{percentile(values, 50):7.1f} {percentile(values, 95):7.1f} "
            f"{max(values):7.1f} {len(values):6d}")


def report(tally: Tally, extra: dict[str, Any], command: str) -> dict[str, Any]:
    pops = list(tally.pops.values())
    shown = [p for p in pops if p.shown_ms is not None]
    missed = [p for p in pops if p.shown_ms is None]
    delays = [p.delay_ms() or 0.0 for p in shown]
    built = [(p.built_at - p.called_at) * 1000 for p in shown if p.built_at is not None]
    queued = [(p.build[0] - p.called_at) * 1000 for p in shown if p.build is not None]
    building = [(p.build[1] - p.build[0]) * 1000 for p in shown if p.build is not None]
    pushed = [p.shown_ms - p.built_at * 1000 for p in shown
              if p.built_at is not None and p.shown_ms is not None]
    painted = [p.painted_ms - p.shown_ms for p in shown
               if p.painted_ms is not None and p.shown_ms is not None]
    ami = [(p.called_at - p.asterisk_at) * 1000 for p in pops if p.asterisk_at is not None]
    p95 = percentile(delays, 95)
    print()
    print("Screen pop delay: AgentCalled received by the service -> pop shown in the browser")
    print(f"machine: {machine_description()}; load average {extra['loadavg']}")
    print(f"callers placed {tally.placed}, rang the agent {len(pops)} "
          f"(rung again after the ring timeout: {sum(p.rings > 1 for p in pops)}), "
          f"pops shown {len(shown)}, missed {len(missed)}")
    if tally.unrung_callers:
        print(f"callers that never rang the agent (IVR or queue, not the pop): "
              f"{len(tally.unrung_callers)}")
    print(f"{'ms':40s}     p50     p95     max      n")
    print(f"{'AgentCalled -> pop shown (DOM)':40s} {_stats(delays)}")
    print(f"{'  AgentCalled -> pop built by the hub':40s} {_stats(built)}")
    print(f"{'    until the hub takes the event':40s} {_stats(queued)}")
    print(f"{'    hub builds the pop':40s} {_stats(building)}")
    print(f"{'  pop built -> pop shown (push + render)':40s} {_stats(pushed)}")
    print(f"{'pop shown -> next animation frame':40s} {_stats(painted)}")
    print(f"{'Asterisk event time -> service receipt':40s} {_stats(ami)}")
    print(f"service event loop lag ms: p95 {extra['loop_lag_p95_ms']:.1f}, "
          f"max {extra['loop_lag_max_ms']:.1f}")
    for when, (offset, half) in (("before", extra["clock_before"]),
                                 ("after", extra["clock_after"])):
        print(f"browser clock - service clock {when}: {offset:+.2f} ms (+/- {half:.2f})")
    if missed:
        print("missed pops: " + ", ".join(f"{p.caller} ({p.call_id})" for p in missed[:10]))
    if tally.shown_unmatched:
        print(f"pops shown without an AgentCalled seen: {len(tally.shown_unmatched)}")
    if not extra["completed"]:
        print(f"stopped by --max-seconds after {extra['seconds']:.0f} s")
    verdict = "meets" if delays and p95 < TARGET_P95_MS and not missed else "misses"
    print(f"target p95 < {TARGET_P95_MS:.0f} ms with no pop missed: {verdict} it "
          f"(p95 {p95:.1f} ms, {len(missed)} missed)")
    print(f"calls took {extra['calls_seconds']:.0f} s, the whole run {extra['seconds']:.0f} s "
          f"(not counting {extra['waited_for_asterisk_seconds']:.0f} s waiting for the shared "
          f"Asterisk root); command: {command}")
    return {"machine": machine_description(), "command": command, **extra,
            "missed": len(missed), "p50_ms": percentile(delays, 50), "p95_ms": p95,
            "max_ms": max(delays) if delays else None, "pops": [asdict(p) for p in pops]}


async def guarded(work: Coroutine[Any, Any, T], asterisk: SharedAsterisk) -> T:
    """``work``, cancelled with BedLost if another run takes our Asterisk over meanwhile."""
    async with asyncio.TaskGroup() as group:
        task = group.create_task(work)
        watch = group.create_task(asterisk.watch())
        await asyncio.wait({task}, return_when=asyncio.FIRST_COMPLETED)
        watch.cancel()
    return task.result()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    tally = Tally()
    hub_log = logging.getLogger("crm.live.desk_hub")
    handler = PopBuiltLog(tally)
    hub_log.addHandler(handler)
    hub_log.setLevel(logging.INFO)
    try:
        async with test_bed(args) as (service, asterisk):
            waited = asterisk.waited
            interface = f"PJSIP/{EXTENSION}"
            assert service.desk_hub is not None
            HubProbe(service.desk_hub, tally)
            unsubscribe = service.ami.subscribe(
                "AgentCalled", lambda event: tally.on_agent_called(event, interface))
            async with RingingPhone(service.settings, EXTENSION,
                                    max_calls=args.calls * 4 + 10), \
                    desk_page(service, tally) as page:
                from playwright.async_api import expect

                await expect(page.locator("#agent-status")).to_have_attribute(
                    "data-status", "available", timeout=SETUP_TIMEOUT_MS)
                clock_before = await clock_offset_ms(page)
                print(f"agent {AGENT_LOGIN} signed in, phone {EXTENSION} ringing-only; placing "
                      f"{args.calls} calls, {args.concurrency} at a time", flush=True)
                lag = LoopLagMonitor()
                lag.start()
                calls_started = time.monotonic()
                completed = await guarded(CallRun(service, tally, args).run(), asterisk)
                calls_seconds = time.monotonic() - calls_started
                lags = await lag.stop()
                await guarded(asyncio.sleep(args.grace), asterisk)  # late pops count too
                clock_after = await clock_offset_ms(page)
                if page.js_errors or page.navigations:
                    print(f"desk page: {len(page.js_errors)} JS error(s) {page.js_errors[:3]}, "
                          f"{page.navigations} navigation(s)")
            unsubscribe()
    finally:
        hub_log.removeHandler(handler)
    extra = {"completed": completed, "seconds": time.monotonic() - started - waited,
             "waited_for_asterisk_seconds": waited,
             "calls_seconds": calls_seconds, "clock_before": clock_before,
             "clock_after": clock_after,
             "loop_lag_p95_ms": percentile(lags, 95) * 1000 if lags else float("nan"),
             "loop_lag_max_ms": max(lags) * 1000 if lags else float("nan"),
             "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
             "args": vars(args)}
    command = " ".join([".venv/bin/python -m bench.pop_delay",
                        *[shlex.quote(a) for a in sys.argv[1:]]])
    return report(tally, extra, command)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="callers to place (200)")
    parser.add_argument("--concurrency", type=int, default=5,
                        help="callers in flight at a time (5)")
    parser.add_argument("--max-seconds", type=float, default=480.0,
                        help="stop placing and hang everyone up after this (480)")
    parser.add_argument("--call-timeout", type=float, default=90.0,
                        help="hang a caller up if its pop is not shown by then (90 s)")
    parser.add_argument("--grace", type=float, default=3.0,
                        help="wait this long after the last caller for late pops (3 s)")
    parser.add_argument("--wait-asterisk", type=float, default=300.0,
                        help="wait up to this long for another run's Asterisk to stop (300 s)")
    parser.add_argument("--asterisk-free-for", type=float, default=20.0,
                        help="start only once no Asterisk ran from the shared root for this "
                             "long: a test session restarts its own within seconds (20 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the raw figures here")
    parser.add_argument("-v", "--verbose", action="store_true", help="service logs (INFO)")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.concurrency < 1:
        parser.error("--calls and --concurrency must be positive")
    return args


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = logging.StreamHandler()
    console.setLevel(logging.INFO if args.verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        handlers=[console])
    try:
        result = asyncio.run(run(args))
    except (BedLost, ExceptionGroup) as exc:
        lost = exc.subgroup(BedLost) if isinstance(exc, ExceptionGroup) else exc
        if lost is None:
            raise
        print(f"run abandoned, figures not valid: {_first(lost)}; run it again",
              file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=1))
    return 0 if result["missed"] == 0 and result["pops"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
