"""Call events through the in-process bus and through Redis Streams, side by side.

``python -m bench.bus [--events N] [--appendfsync always|everysec]`` starts a redis-server of
its own (hotline/bus/redis_server.py, a temporary directory, a free loopback port) and
measures, for each bus:

- one at a time: publish an event, wait until the subscriber (or the group consumer) has it,
  then the next: the latency of one event through an idle bus (p50/p95);
- a burst: publish N events back to back: events/s until the last was handled, and each
  event's publish-to-handler delay (p50/p95), queueing included.

The Redis bus journals each event locally before sending it (journal fsync off, as by
default); Redis flushes its append-only file as ``--appendfsync`` says (``always``, the
project's default). Everything shares this machine's cores: the figures are costs, not the
capacity of a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.metrics import percentile
from crm.telephony.events import BusEvent, CallEnded, CallEventBus, CallStarted, CallStep
from crm.telephony.steps import KeysEntered, PromptPlayed, SpeechHeard
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.redis_server import RedisServer
from hotline.bus.settings import BusSettings

WAIT = 120.0


def call_events(n: int) -> list[BusEvent]:
    """``n`` events of calls as the IVR publishes them (start, steps, end)."""
    out: list[BusEvent] = []
    call = 0
    while len(out) < n:
        cid = f"bench-{call}"
        out += [CallStarted(cid, "13800000000", "张三"),
                CallStep(cid, PromptPlayed("greeting", "zh")),
                CallStep(cid, SpeechHeard("查询 工单", 0.82, "status", "12345678")),
                CallStep(cid, KeysEntered("1")),
                CallEnded(cid, "end", "16 Normal Clearing", party="caller")]
        call += 1
    return out[:n]


class Timing:
    """When each event was published and when a handler had it."""

    def __init__(self) -> None:
        self.sent: dict[int, float] = {}
        self.delays: list[float] = []
        self.count = 0
        self.arrived = asyncio.Event()
        self.expect = 0

    async def handle(self, event: Any) -> None:
        event = getattr(event, "event", event)  # a group consumer's Delivery
        key = id_of(event)
        self.delays.append(time.perf_counter() - self.sent[key])
        self.count += 1
        if self.count >= self.expect:
            self.arrived.set()

    def reset(self, expect: int) -> None:
        self.sent.clear()
        self.delays.clear()
        self.count = 0
        self.expect = expect
        self.arrived.clear()


def id_of(event: BusEvent) -> int:
    """The event's number in the run (its call id and kind stand for it)."""
    return hash((event.call_id, type(event).__name__, getattr(event, "kind", ""),
                 event.at.isoformat()))


async def measure(publish: Callable[[BusEvent], Awaitable[None]], timing: Timing,
                  events: list[BusEvent], one_by_one: int) -> dict[str, float]:
    singles: list[float] = []
    for event in events[:one_by_one]:
        timing.reset(1)
        timing.sent[id_of(event)] = time.perf_counter()
        await publish(event)
        await asyncio.wait_for(timing.arrived.wait(), WAIT)
        singles += timing.delays
    timing.reset(len(events))
    start = time.perf_counter()
    for event in events:
        timing.sent[id_of(event)] = time.perf_counter()
        await publish(event)
    await asyncio.wait_for(timing.arrived.wait(), WAIT)
    elapsed = time.perf_counter() - start
    return {"one_p50_ms": percentile(singles, 50) * 1000,
            "one_p95_ms": percentile(singles, 95) * 1000,
            "burst_p50_ms": percentile(timing.delays, 50) * 1000,
            "burst_p95_ms": percentile(timing.delays, 95) * 1000,
            "events_per_s": len(events) / elapsed}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    events = call_events(args.events)
    one_by_one = min(args.one_by_one, len(events))
    results: dict[str, dict[str, float]] = {}

    timing = Timing()
    memory = CallEventBus()
    memory.subscribe(timing.handle)
    results["memory"] = await measure(memory.publish, timing, events, one_by_one)

    with tempfile.TemporaryDirectory(prefix="bench-bus-") as tmp:
        server = RedisServer(Path(tmp) / "redis", port=free_port(),
                             appendfsync=args.appendfsync)
        await asyncio.to_thread(server.start)
        try:
            for mode in ("redis subscribe", "redis group"):
                settings = BusSettings(kind="redis", redis_url=server.url,
                                       stream=f"bench:{mode.split()[1]}")
                timing = Timing()
                bus = RedisStreamBus(settings, journal_dir=Path(tmp) / mode.replace(" ", "-"))
                if mode == "redis subscribe":
                    bus.subscribe(timing.handle)
                else:
                    bus.consume("bench", "c1", timing.handle)
                await bus.start()
                try:
                    results[mode] = await measure(bus.publish, timing, events, one_by_one)
                finally:
                    await bus.close()
        finally:
            await asyncio.to_thread(server.stop)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events in the burst")
    parser.add_argument("--one-by-one", type=int, default=1000,
                        help="events sent one at a time first")
    parser.add_argument("--appendfsync", choices=["always", "everysec"], default="always")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(run(args))
    print(f"bus bench: {args.events} events in a burst, {args.one_by_one} one at a time; "
          f"Redis appendfsync {args.appendfsync}")
    print(f"{'bus':<17}{'one p50 ms':>11}{'one p95 ms':>11}{'burst p50 ms':>13}"
          f"{'burst p95 ms':>13}{'events/s':>10}")
    for name, r in results.items():
        print(f"{name:<17}{r['one_p50_ms']:>11.3f}{r['one_p95_ms']:>11.3f}"
              f"{r['burst_p50_ms']:>13.1f}{r['burst_p95_ms']:>13.1f}{r['events_per_s']:>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
