"""What one call of each kind costs the host: CPU seconds per call of every process group and
the service's memory per call in flight, for ``python -m bench.load --cost-per-kind``.

First the service finishes its prompt prewarm and runs a warm-up step of every kind (not
counted: the first recognizer, the first dynamic prompts, database connections). Then the
stack idles for ``IDLE_S`` seconds (the service's timers, Asterisk's housekeeping, the agent
phones' keep-alives), and again after the last step: the lower of the two rates is taken off
every step. Then one step per kind,
calls of that kind only, at a fixed concurrency: CPU per call = (the group's CPU seconds over
the step - its idle rate x the step's wall time) / calls that ended as scripted. Memory per
call = the service's peak RSS during the step minus its RSS as the step began, divided by the
step's peak of calls in flight: an upper bound for the first kind run and a lower bound for the
next ones (Python reuses memory a call before it freed), so ``--cost-kinds`` sets the order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bench.load_calls import KINDS, DriveLimits
from bench.load_procs import GROUPS, ProcSampler, Usage
from bench.metrics import percentile

IDLE_S = 15.0
CALL_S = 45.0
"""The longest a scripted call of any kind takes (the lookup's three prompts)."""
WARM_UP_TAG = "K0"
"""The warm-up step's tag (a letter and digits, as the callers' names carry it)."""
SERVICE = "hotline serve"


class StepOutcome(Protocol):
    offered: int
    outcomes: dict[str, int]
    in_flight_peak: int
    turns_by_input: dict[str, list[float]]
    pop_delays_s: list[float]
    usage: Usage | None

    @property
    def lost(self) -> int: ...


@dataclass
class KindCost:
    kind: str
    offered: int
    ended: int
    """Calls that ended as scripted (completed or diverted)."""
    lost: int
    in_flight_peak: int
    seconds: float
    cpu_ms_per_call: dict[str, float] = field(default_factory=dict)
    service_rss_start_mb: float = 0.0
    service_rss_peak_mb: float = 0.0
    turn_p95_ms: dict[str, float] = field(default_factory=dict)
    pop_p95_ms: float | None = None

    @property
    def service_mb_per_call(self) -> float:
        rise = self.service_rss_peak_mb - self.service_rss_start_mb
        return max(0.0, rise) / max(1, self.in_flight_peak)


def parse_kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown or len(set(kinds)) != len(kinds):
        raise ValueError(f"--cost-kinds: each of {', '.join(KINDS)} at most once "
                         f"(got {text!r})")
    return kinds


async def idle_rates(sampler: ProcSampler, seconds: float = IDLE_S) -> dict[str, float]:
    """CPU seconds per second of each group while no call runs."""
    mark = sampler.mark()
    await asyncio.sleep(seconds)  # the measuring window itself, not a wait for an event
    usage = sampler.usage(mark)
    return {name: g.cpu_mean / 100 for name, g in usage.groups.items()}


def kind_cost(kind: str, step: StepOutcome, idle: dict[str, float],
              rss_start: float) -> KindCost:
    usage = step.usage
    ended = step.outcomes.get("completed", 0) + step.outcomes.get("diverted", 0)
    cost = KindCost(kind, step.offered, ended, step.lost, step.in_flight_peak,
                    usage.seconds if usage else 0.0, service_rss_start_mb=rss_start)
    if usage is not None:
        for name, g in usage.groups.items():
            used = g.cpu_mean / 100 * usage.seconds - idle.get(name, 0.0) * usage.seconds
            cost.cpu_ms_per_call[name] = 1000 * max(0.0, used) / max(1, ended)
        if SERVICE in usage.groups:
            cost.service_rss_peak_mb = usage.groups[SERVICE].rss_peak
    cost.turn_p95_ms = {k: 1000 * percentile(v, 95) for k, v in step.turns_by_input.items()
                        if v}
    if step.pop_delays_s:
        cost.pop_p95_ms = 1000 * percentile(step.pop_delays_s, 95)
    return cost


async def wait_prewarmed(prewarmed: Callable[[], Awaitable[bool]], within: float,
                         progress: Callable[[str], None]) -> None:
    """Until the service says its prompts are prewarmed (its health report), at most
    ``within`` seconds: the prewarm's synthesis would count as idle CPU."""
    deadline = asyncio.get_running_loop().time() + within
    while not await prewarmed():
        if asyncio.get_running_loop().time() > deadline:
            progress(f"the prompt prewarm did not finish within {within:.0f} s: measuring "
                     "anyway (the idle rate includes it)")
            return
        await asyncio.sleep(1.0)  # polling the health report for the condition, bounded


async def measure(kinds: list[str], calls: int, concurrency: int, sampler: ProcSampler,
                  run_kinds: Callable[[list[str], DriveLimits, str], Awaitable[StepOutcome]],
                  prewarmed: Callable[[], Awaitable[bool]],
                  progress: Callable[[str], None]) -> tuple[dict[str, float], list[KindCost]]:
    """Prewarm, a warm-up step, the idle rate, then one step of ``calls`` calls per kind
    (``run_kinds(kinds, limits, tag)`` runs a step of those kinds), offered at
    ``concurrency`` / 10 s per second, at most ``concurrency`` at a time; the idle rate
    again."""
    await wait_prewarmed(prewarmed, 300.0, progress)
    warm = 2 * len(kinds)
    progress(f"warm-up: {warm} calls of {', '.join(kinds)} (not counted)")
    await run_kinds(kinds, DriveLimits(1.0, warm, warm, warm, 75.0), WARM_UP_TAG)
    progress(f"idle for {IDLE_S:.0f} s (before the steps and again after)")
    before = await idle_rates(sampler)
    rate = max(1.0, concurrency / 10)
    # Offering lasts until all ``calls`` are placed: a call takes up to ~45 s, so at most
    # ``concurrency`` at a time need about calls / concurrency x 45 s.
    offering = max(calls / rate, CALL_S * calls / concurrency)
    limits = DriveLimits(rate, concurrency, offering, calls, 75.0)
    steps = []
    for index, kind in enumerate(kinds, start=1):
        rss_start = sampler.sample().rss.get(SERVICE, 0.0)
        steps.append((kind, await run_kinds([kind], limits, f"K{index}"), rss_start))
    after = await idle_rates(sampler)
    idle = {g: min(before.get(g, 0.0), after.get(g, 0.0)) for g in before.keys() | after}
    return idle, [kind_cost(kind, step, idle, rss) for kind, step, rss in steps]


def print_costs(idle: dict[str, float], costs: list[KindCost]) -> None:
    groups = [g for g in GROUPS if any(g in c.cpu_ms_per_call for c in costs)]
    print("\ncost per call, by kind (CPU ms per call with the idle rate taken off; memory: "
          "the service's RSS rise while the step's calls were in flight / its peak in flight)")
    print("idle CPU %: " + ", ".join(f"{g} {100 * idle.get(g, 0.0):.1f}" for g in groups))
    head = " ".join(f"{g + ' ms':>16}" for g in groups)
    print(f"{'kind':7} {'ended':>5} {'lost':>4} {'peak':>4} {head} {'serve MB/call':>13} "
          f"{'serve RSS start/peak':>20} {'turn p95 ms':>16} {'pop p95':>7}")
    for c in costs:
        cpu = " ".join(f"{c.cpu_ms_per_call.get(g, float('nan')):16.0f}" for g in groups)
        turns = ",".join(f"{k} {v:.0f}" for k, v in sorted(c.turn_p95_ms.items())) or "-"
        pop = "-" if c.pop_p95_ms is None else f"{c.pop_p95_ms:.0f}"
        rss = f"{c.service_rss_start_mb:.0f}/{c.service_rss_peak_mb:.0f}"
        print(f"{c.kind:7} {c.ended:5} {c.lost:4} {c.in_flight_peak:4} {cpu} "
              f"{c.service_mb_per_call:13.2f} {rss:>20} {turns:>16} {pop:>7}")
