"""Intake benchmark: seconds from the answer to the queue join and to the status being read,
for silent callers, keyed lookups and spoken requests, at 1, 20 and 60 concurrent calls.

    .venv/bin/python -m bench.intake                      # the menu-less flow of issue 13
    .venv/bin/python -m bench.intake --flow menu          # the menu flow it replaces
    .venv/bin/python -m bench.intake --calls 1,20 --kinds silent,keyed --json out.json

The machinery is bench.load's: its own Asterisk from the root in
HOTLINE_ASTERISK__ROOT_DIR (private state dir, free loopback ports; it refuses to run while
another Asterisk runs from that root), ``hotline serve`` as a subprocess (SQLite in the state
dir unless --database-url), the demo data, ``--agents`` SIPp agent phones in the queue with
their desks signed in, and SIPp callers. The callers of each kind follow a script per flow
(bench/intake_scenarios.py); their consultations are read back at the end.

Each concurrency level places at least ``--per-kind`` calls of every kind, kinds in turn, at
most that many calls in flight (arrivals spread over the first ~10 s), and at least as many
calls as the level. Measured per call, on the host's wall clock: the answer is the caller
channel's Newstate Up on the bench's own AMI login (as bench.load); the queue join is the
consultation's ``queued`` step, the status the start of its status prompt (the prompt step
is published as its audio starts). A call whose moment never came (before the caller hung
up at the scenario's end) is lost; one that got there another way (the queue after no
input instead of the spoken request) is diverted; neither counts in the percentiles.

Printed: per flow, kind and level, calls ok / diverted / lost, p50 / p95 / max of answer ->
moment and of the caller's last input -> moment (the system's part of it), the load average
before and after each level and the CPU of the host (it is shared: say so with the figures).
Everything is bounded in count and time (--max-seconds) and torn down on exit, error, Ctrl-C
or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.intake_calls import (
    IntakePlanner,
    Measured,
    PreparedCall,
    clear_lookup_failures,
    demo_cases,
    measure,
    prepare,
    trace,
)
from bench.intake_scenarios import FLOWS, KINDS, Flow, flow, parse_kinds
from bench.load import guarded, wait_for_free_asterisk, watch_asterisk
from bench.load_calls import DriveLimits, attach, drive, load_consultations
from bench.load_procs import ProcSampler, Usage
from bench.load_stack import BenchError, Stack, Teardown, bench_settings, running_stack
from bench.metrics import machine_description, percentile
from speech.tts import PromptSynthesizer

log = logging.getLogger("bench.intake")

DEFAULT_LEVELS = "1,20,60"
DEFAULT_BUDGET_S = 1200.0
SETUP_ALLOWANCE_S = 60.0
QUIET_WAIT_S = 15.0
MEASURES = {"queue": "queue join", "status": "status read"}


@dataclass
class LevelResult:
    level: int
    planned: int
    offered: int = 0
    in_flight_peak: int = 0
    offered_for: float = 0.0
    drained_in: float = 0.0
    consultations: int = 0
    expected_consultations: int = 0
    strays: int = 0
    channels_left: int = 0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    usage: Usage | None = None
    failures_cleared: int = 0
    """Failed lookups the IVR had counted before the level (its guard), forgotten."""
    calls: list[Measured] = field(default_factory=list)

    def of(self, kind: str, outcome: str | None = None) -> list[Measured]:
        return [m for m in self.calls
                if m.kind == kind and (outcome is None or m.outcome == outcome)]

    @property
    def lost(self) -> int:
        return sum(1 for m in self.calls if m.outcome != "ok") + self.strays


# --- one level --------------------------------------------------------------------------------


def level_limits(level: int, calls: int, prepared: dict[str, PreparedCall],
                 kinds: tuple[str, ...], left: float) -> DriveLimits:
    """Arrivals spread over ~10 s (or one call a second), at most ``level`` in flight; the
    offering window long enough for every round of calls, within what is left of the
    budget."""
    rate = max(1.0, level / 10)
    longest = max(prepared[k].scenario.hang_up_s for k in kinds)
    drain = longest + 20
    rounds = math.ceil(calls / level)
    window = rounds * (longest + 5) + calls / rate
    return DriveLimits(rate, level, max(1.0, min(window, left - drain)), calls, drain)


def level_calls(level: int, per_kind: int, kinds: tuple[str, ...]) -> int:
    """At least ``per_kind`` of each kind and at least ``level``, a whole number of turns."""
    return len(kinds) * max(per_kind, math.ceil(level / len(kinds)))


async def run_level(stack: Stack, the_flow: Flow, prepared: dict[str, PreparedCall],
                    kinds: tuple[str, ...], limits: DriveLimits, sampler: ProcSampler,
                    tag: str, show_trace: bool) -> LevelResult:
    print(f"\n[{tag}] {limits.concurrency} concurrent, {limits.max_calls} calls "
          f"({', '.join(kinds)} in turn), {limits.rate:g} arrivals/s, offering for at most "
          f"{limits.duration:.0f} s", flush=True)
    result = LevelResult(limits.concurrency, limits.max_calls, load_before=os.getloadavg())
    result.failures_cleared = await clear_lookup_failures(stack.settings)
    mark = sampler.mark()
    run = await drive(stack.settings, IntakePlanner(prepared, kinds), limits, tag,
                      progress=lambda line: print(line, flush=True))
    result.usage = sampler.usage(mark)
    result.load_after = os.getloadavg()
    result.offered, result.in_flight_peak = len(run.records), run.in_flight_peak
    result.offered_for, result.drained_in = run.offered_for, run.drained_in
    result.channels_left = await stack.watcher.wait_quiet(QUIET_WAIT_S)
    if result.channels_left:
        with contextlib.suppress(Exception):
            await stack.watcher.ami.action("Hangup", Channel="/.*/")
        await stack.watcher.wait_quiet(QUIET_WAIT_S)
    unanswered = sum(1 for r in run.records if r.result is not None and not r.answered)
    result.expected_consultations = result.offered - unanswered
    consultations = await load_consultations(stack.settings, tag,
                                             result.expected_consultations)
    result.consultations = len(consultations)
    result.strays = attach(run.records, consultations, tag)
    for record in run.records:
        c = record.consultation
        answered_at = stack.times.answered_at(c.call_id) if c is not None else None
        result.calls.append(measure(record, prepared[record.plan.kind], the_flow,
                                    answered_at))
        if show_trace:
            print(trace(record, answered_at))
    return result


# --- reporting --------------------------------------------------------------------------------


def _s(values: list[float], q: float) -> str:
    return "-" if not values else f"{percentile(values, q):.1f}"


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in avg)


def print_level(r: LevelResult, kinds: tuple[str, ...]) -> None:
    u = r.usage
    ours = sum(g.cpu_mean for g in u.groups.values()) if u else 0.0
    print(f"level {r.level}: offered {r.offered}/{r.planned} (peak {r.in_flight_peak} in "
          f"flight; offered for {r.offered_for:.0f} s, drained in {r.drained_in:.0f} s); "
          f"consultations {r.consultations}/{r.expected_consultations}"
          f"{f', {r.strays} strays' if r.strays else ''}; load average (1/5/15 min) "
          f"{_load(r.load_before)} before, {_load(r.load_after)} after; failed lookups "
          f"forgotten before it {r.failures_cleared}"
          + (f"; host CPU {u.host_mean:.0f} % (other processes "
             f"{max(0.0, u.host_mean - ours):.0f} %; 100 = one core)" if u else ""))
    for kind in kinds:
        for m in r.of(kind):
            if m.outcome != "ok":
                print(f"  ! {kind} #{m.seq} {m.outcome}: {m.why}")


def print_table(the_flow: Flow, kinds: tuple[str, ...], results: list[LevelResult]) -> None:
    print(f"\nflow {the_flow.name}: {the_flow.description}")
    print("seconds from the answer (caller channel Up on AMI) to the moment; 'after input': "
          "from the end of the caller's last key or word before it")
    print(f"{'kind':14} {'moment':11} {'conc':>4} {'calls':>5} {'ok':>3} {'div':>3} "
          f"{'lost':>4} {'p50':>6} {'p95':>6} {'max':>6}   {'after input p50/p95':>19}"
          f"   {'load avg 1 min':>14}")
    for kind in kinds:
        scenario = the_flow.scenarios[kind]
        for r in results:
            ms = r.of(kind)
            ok = [m.seconds for m in r.of(kind, "ok") if m.seconds is not None]
            after = [m.after_input for m in r.of(kind, "ok") if m.after_input is not None]
            div = len(r.of(kind, "diverted"))
            lost = len(r.of(kind, "lost"))
            after_text = f"{_s(after, 50)}/{_s(after, 95)}" if after else "-"
            print(f"{kind:14} {MEASURES[scenario.measure]:11} {r.level:4} {len(ms):5} "
                  f"{len(ok):3} {div:3} {lost:4} {_s(ok, 50):>6} {_s(ok, 95):>6} "
                  f"{_s(ok, 100):>6}   {after_text:>19}   "
                  f"{r.load_before[0]:6.1f} -> {r.load_after[0]:4.1f}")
    print("scripts:")
    for kind in kinds:
        s = the_flow.scenarios[kind]
        print(f"  {kind:14} {s.caller.name} <{s.caller.number}>: {s.script}; hangs up at "
              f"{s.hang_up_s:g} s")


# --- the run ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.intake",
                                description=__doc__.split("\n")[0])
    p.add_argument("--flow", choices=FLOWS, default="intake",
                   help="whose caller scripts: the menu-less intake of issue 13 (default) or "
                        "the menu flow it replaces")
    p.add_argument("--calls", default=DEFAULT_LEVELS,
                   help=f"concurrency levels, calls in flight at once ({DEFAULT_LEVELS})")
    p.add_argument("--kinds", default=",".join(KINDS),
                   help=f"caller kinds, in turn ({','.join(KINDS)})")
    p.add_argument("--per-kind", type=int, default=2,
                   help="calls of each kind at least, per level (2)")
    p.add_argument("--agents", type=int, default=12, help="SIPp agent phones 2001.. (12)")
    p.add_argument("--talk", type=float, default=3.0,
                   help="seconds an agent talks before hanging up (3)")
    p.add_argument("--max-seconds", type=float, default=DEFAULT_BUDGET_S,
                   help=f"bound of the whole run ({DEFAULT_BUDGET_S:.0f})")
    p.add_argument("--database-url", default="",
                   help="SQLAlchemy URL for the service (default: SQLite in the state dir)")
    p.add_argument("--wait-asterisk", type=float, default=0.0,
                   help="wait up to this many seconds for another run's Asterisk to stop")
    p.add_argument("--trace", action="store_true",
                   help="print every call's steps on its time line (to check the scripts)")
    p.add_argument("--keep-state", action="store_true",
                   help="keep the private state dir (logs, database) after the run")
    p.add_argument("--json", type=Path, help="also write every call's figures as JSON here")
    args = p.parse_args(argv)
    try:
        args.levels = [int(x) for x in args.calls.split(",") if x.strip()]
        args.kind_list = parse_kinds(args.kinds)
    except ValueError as exc:
        p.error(str(exc))
    if not args.levels or min(args.levels) < 1 or args.per_kind < 1 or args.agents < 1:
        p.error("--calls, --per-kind and --agents must be positive")
    return args


async def prepare_all(stack: Stack, the_flow: Flow, kinds: tuple[str, ...],
                      workdir: Path) -> dict[str, PreparedCall]:
    cases = await demo_cases(stack.settings)
    synth = PromptSynthesizer(workdir / "bench-audio")
    try:
        return {k: await prepare(the_flow.scenarios[k], cases, workdir, synth) for k in kinds}
    finally:
        await synth.close()


async def run(args: argparse.Namespace, teardown: Teardown,
              state_dir: Path) -> list[LevelResult]:
    started = time.monotonic()
    the_flow = flow(args.flow)
    kinds: tuple[str, ...] = args.kind_list
    print(f"machine: {machine_description()}; load average {_load(os.getloadavg())}")
    print(f"flow {the_flow.name}; kinds {', '.join(kinds)}; levels "
          f"{', '.join(map(str, args.levels))}; {args.agents} agent phones (talk "
          f"{args.talk:g} s); state dir {state_dir}", flush=True)
    if args.wait_asterisk:
        await wait_for_free_asterisk(teardown.settings, args.wait_asterisk)
    results: list[LevelResult] = []
    async with running_stack(teardown.settings, teardown, ring_ms=300,
                             talk_ms=int(args.talk * 1000),
                             progress=lambda line: print(line, flush=True)) as stack:
        prepared = await prepare_all(stack, the_flow, kinds, state_dir)
        sampler = ProcSampler(lambda: {"asterisk": stack.asterisk_pid,
                                       "hotline serve": stack.service.pid})
        sampler.start()
        guard = asyncio.create_task(watch_asterisk(stack), name="asterisk-guard")
        try:
            for index, level in enumerate(args.levels, start=1):
                left = args.max_seconds - (time.monotonic() - started) - SETUP_ALLOWANCE_S
                calls = level_calls(level, args.per_kind, kinds)
                limits = level_limits(level, calls, prepared, kinds, left)
                if left < limits.drain + QUIET_WAIT_S + 30:
                    print(f"\nstopping before level {level}: {left:.0f} s left of the "
                          f"{args.max_seconds:.0f} s budget", flush=True)
                    break
                step = asyncio.create_task(run_level(stack, the_flow, prepared, kinds, limits,
                                                     sampler, f"I{index}", args.trace))
                result = await guarded(step, guard)
                print_level(result, kinds)
                results.append(result)
        finally:
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard
            await sampler.stop()
    print_table(the_flow, kinds, results)
    print(f"\nrun took {time.monotonic() - started:.0f} s; load average now "
          f"{_load(os.getloadavg())}; command: "
          f"{shlex.join([Path(sys.executable).name, '-m', 'bench.intake', *sys.argv[1:]])}")
    return results


def write_json(path: Path, args: argparse.Namespace, results: list[LevelResult]) -> None:
    the_flow = flow(args.flow)
    path.write_text(json.dumps({
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": machine_description(),
        "flow": {"name": the_flow.name, "description": the_flow.description,
                 "scenarios": {k: asdict(the_flow.scenarios[k]) for k in args.kind_list}},
        "levels": [asdict(r) | {"lost": r.lost} for r in results],
    }, indent=1, ensure_ascii=False, default=str))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    state_dir = Path(tempfile.mkdtemp(prefix="hotline-intake-"))
    teardown = Teardown(bench_settings(state_dir, agents_count=args.agents,
                                       database_url=args.database_url))
    status = 0
    signalled: list[int] = []
    try:
        with asyncio.Runner() as runner:  # Ctrl-C cancels the run, whose finally tears down

            async def main_task() -> list[LevelResult]:
                task = asyncio.current_task()
                assert task is not None

                def on_sigterm() -> None:  # once: a second one must not cut the teardown
                    if not signalled:
                        signalled.append(signal.SIGTERM)
                        task.cancel()

                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
                return await run(args, teardown, state_dir)

            results = runner.run(main_task())
        if args.json:
            write_json(args.json, args, results)
        complete = len(results) == len(args.levels)
        status = 0 if complete and not any(r.lost for r in results) else 1
    except BenchError as exc:
        print(f"bench.intake: {exc}", file=sys.stderr)
        status = 2
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError) and not signalled:
            traceback.print_exc()  # a cancellation nobody asked for is a bug: show it
        print("bench.intake: interrupted; everything it started is stopped", file=sys.stderr)
        status = 130
    finally:
        teardown.run()  # a no-op unless the event loop could not finish the teardown
        if args.keep_state:
            print(f"state kept in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
