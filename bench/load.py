"""Load benchmark of the whole hotline: real Asterisk, ``hotline serve``, SIPp callers and
SIPp agent phones, all on loopback.

    .venv/bin/python -m bench.load --rate 2 --concurrency 10 --duration 120
    .venv/bin/python -m bench.load --find-max     # concurrency 10,20,40,60,80; under 10 min
    .venv/bin/python -m bench.load --cost-per-kind --concurrency 10   # CPU, memory per call

It starts its own Asterisk from the shared Debian root (private state dir, free ports; it
refuses to run while another Asterisk runs from that root), ``hotline serve`` as a
subprocess (HOTLINE_* overrides, SQLite in the state dir unless --database-url), seeds the
demo data, registers ``--agents`` SIPp agent phones, adds them to the queue over AMI and
signs their desks in (websockets, for the pop delay). Then SIPp callers arrive at ``--rate``
per second, at most ``--concurrency`` at a time, for ``--duration`` seconds (at most
``--max-calls``), mixing keyed case lookups, spoken requests (Korean), hand-offs to the agents
(who hang up after ``--talk`` seconds) and surveys (see bench/load_calls.py). The callers
of each kind are placed by one SIPp process (``--callers pooled``, bench/load_pool.py: the
load generator's own wake-ups off the two cores); ``--callers per-call`` starts one SIPp per
call as before session 28.

Printed per run: calls offered / completed / diverted / dropped (Asterisk hung up before the
scenario's end and the IVR's flow did not end it) / stuck / unanswered; consultations in the
database vs calls; turn latency on the caller's time line (end of the key press or of the
words -> the IVR's next prompt step) and inside the service (input step -> next prompt step);
pop delay (AgentCalled on the bench's AMI login -> the pop on the agent's desk websocket,
both on the bench's clock); CPU and RSS of asterisk, hotline serve, sipp and the bench
(/proc, 1 s). ``--find-max`` steps the concurrency up and reports the highest step where every
call completed as scripted and the caller-side p95 of key and of speech turns is under 1 s.
Everything is bounded in count and time and torn down on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench import call_costs
from bench.load_calls import (
    KINDS,
    CallRecord,
    DriveLimits,
    Mix,
    Planner,
    attach,
    caller_turns,
    classify,
    demo_case_number,
    drive,
    heard_right,
    load_consultations,
    service_turns,
    speech_audio,
    survey_rated,
)
from bench.load_pool import drive_pooled
from bench.load_procs import GROUPS, ProcSampler, Usage
from bench.load_stack import (
    BenchError,
    Stack,
    Teardown,
    bench_settings,
    running_stack,
    shared_asterisk_pid,
)
from bench.metrics import machine_description, percentile
from bench.service_metrics import (
    bucket_delta,
    count_delta,
    histogram_buckets,
    labelled_counts,
    quantile_bound,
)
from hotline.settings import Settings

log = logging.getLogger("bench.load")

TURN_TARGET_S = 1.0
FIND_MAX_STEPS = "10,20,40,60,80"
FIND_MAX_BUDGET_S = 570.0
"""The whole --find-max run, start-up and teardown included, stays under 10 minutes."""
SETUP_ALLOWANCE_S = 45.0
QUIET_WAIT_S = 15.0


@dataclass
class StepResult:
    concurrency: int
    rate: float
    offered: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    expected_consultations: int = 0
    """Calls that reached Asterisk: offered minus unanswered."""
    consultations: int = 0
    strays: int = 0
    in_flight_peak: int = 0
    offered_for: float = 0.0
    drained_in: float = 0.0
    turns_s: list[float] = field(default_factory=list)
    """Caller side: end of the caller's input -> the IVR's next prompt (all turns)."""
    turns_by_input: dict[str, list[float]] = field(default_factory=dict)
    service_turns_s: list[float] = field(default_factory=list)
    """Inside the service: input step -> next prompt step."""
    call_seconds: dict[str, list[float]] = field(default_factory=dict)
    pop_delays_s: list[float] = field(default_factory=list)
    pops_missing: int = 0
    speech_heard: tuple[int, int] = (0, 0)
    surveys_rated: tuple[int, int] = (0, 0)
    channels_left: int = 0
    refused_overload: int | None = None
    """Calls the IVR handed back to the dialplan in this step (audiosocket.max_calls)."""
    usage: Usage | None = None
    final_decodes: dict[float, float] = field(default_factory=dict)
    """The service's final decodes in this step (/metrics, cumulative count by upper bound
    in seconds): what callers waited for beyond the end-of-speech quiet."""
    turn_endings: dict[str, float] = field(default_factory=dict)
    """The service's listening turns in this step by how they ended (/metrics): ``request``
    after the shorter quiet, ``request_missed`` tries, ``silence``..."""
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Dropped, stuck, unanswered and failed calls, plus missing or extra consultations."""
        bad = sum(n for k, n in self.outcomes.items() if k not in ("completed", "diverted"))
        return bad + abs(self.expected_consultations - self.consultations) + self.strays

    @property
    def turn_p95(self) -> float:
        """The worst p95 over the kinds of input (keys, speech), caller side."""
        return max((percentile(v, 95) for v in self.turns_by_input.values()),
                   default=float("nan"))

    @property
    def passed(self) -> bool:
        return (self.offered > 0 and self.lost == 0 and not self.outcomes.get("diverted")
                and self.turn_p95 < TURN_TARGET_S)


# --- one step ---------------------------------------------------------------------------------


async def run_step(stack: Stack, planner: Planner, sampler: ProcSampler, limits: DriveLimits,
                   tag: str, *, callers: str = "pooled") -> StepResult:
    print(f"\n[{tag}] concurrency {limits.concurrency}, rate {limits.rate:g}/s, offering for "
          f"{limits.duration:.0f} s (at most {limits.max_calls} calls)", flush=True)
    mark = sampler.mark()
    refused_before = (await stack.service.health()).get("calls_refused_overload")
    metrics_before = await stack.service.metrics_text()
    place = drive_pooled if callers == "pooled" else drive
    run = await place(stack.settings, planner, limits, tag,
                      progress=lambda line: print(line, flush=True))
    usage = sampler.usage(mark)
    result = StepResult(limits.concurrency, limits.rate, offered=len(run.records),
                        in_flight_peak=run.in_flight_peak, offered_for=run.offered_for,
                        drained_in=run.drained_in, usage=usage)
    result.channels_left = await stack.watcher.wait_quiet(QUIET_WAIT_S)
    if result.channels_left:
        result.problems.append(f"{result.channels_left} Asterisk channels left after the "
                               "drain; hung up")
        with contextlib.suppress(Exception):
            await stack.watcher.ami.action("Hangup", Channel="/.*/")
        await stack.watcher.wait_quiet(QUIET_WAIT_S)
    unanswered = sum(1 for r in run.records if r.result is not None and not r.answered)
    result.expected_consultations = result.offered - unanswered
    consultations = await load_consultations(stack.settings, tag,
                                             result.expected_consultations)
    result.consultations = len(consultations)
    result.strays = attach(run.records, consultations, tag)
    refused_after = (await stack.service.health()).get("calls_refused_overload")
    if isinstance(refused_before, int) and isinstance(refused_after, int):
        result.refused_overload = refused_after - refused_before
    metrics_after = await stack.service.metrics_text()
    result.final_decodes = bucket_delta(histogram_buckets(metrics_before, FINAL_DECODES),
                                        histogram_buckets(metrics_after, FINAL_DECODES))
    result.turn_endings = count_delta(labelled_counts(metrics_before, TURN_ENDINGS, "reason"),
                                      labelled_counts(metrics_after, TURN_ENDINGS, "reason"))
    summarise(result, run.records, stack)
    return result


FINAL_DECODES = "hotline_recognizer_final_decode_seconds"
TURN_ENDINGS = "hotline_speech_turns_ended_total"


def _bound_ms(bound: float | None) -> str:
    if bound is None:
        return "-"
    return "inf" if math.isinf(bound) else f"{bound * 1000:.0f} ms"


def summarise(result: StepResult, records: list[CallRecord], stack: Stack) -> None:
    heard = [h for r in records if (h := heard_right(r)) is not None]
    rated = [s for r in records if (s := survey_rated(r)) is not None]
    result.speech_heard = (sum(heard), len(heard))
    result.surveys_rated = (sum(rated), len(rated))
    call_ids: set[str] = set()
    for record in records:
        outcome = classify(record)
        result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
        kind = result.by_kind.setdefault(record.plan.kind, {})
        kind[outcome] = kind.get(outcome, 0) + 1
        if outcome != "completed" and len(result.problems) < 8:
            result.problems.append(describe_failure(record, outcome))
        if record.ended_at is not None and outcome == "completed":
            result.call_seconds.setdefault(record.plan.kind, []).append(
                record.ended_at - record.offered_at)
        c = record.consultation
        if c is None:
            continue
        call_ids.add(c.call_id)
        for turn in caller_turns(record, stack.times.answered_at(c.call_id)):
            result.turns_s.append(turn.seconds)
            result.turns_by_input.setdefault(turn.kind, []).append(turn.seconds)
        result.service_turns_s.extend(t.seconds for t in service_turns(c))
    result.pop_delays_s, result.pops_missing = stack.times.delays(call_ids)


def describe_failure(record: CallRecord, outcome: str) -> str:
    r, c = record.result, record.consultation
    where = f"call {record.plan.seq} ({record.plan.kind}) {outcome}"
    if r is None:
        return f"{where}: {record.error}"
    steps = [s.kind for s in c.steps][-6:] if c is not None else []
    return (f"{where}: sipp exit {r.exit_code}, hung up by {r.hung_up_by}, "
            f"consultation {c.outcome if c else 'missing'}, last steps {steps}")


# --- reporting --------------------------------------------------------------------------------


def _ms(values: list[float], q: float) -> str:
    return "-" if not values else f"{1000 * percentile(values, q):.0f}"


def print_step(result: StepResult) -> None:
    o = result.outcomes
    print(f"calls offered {result.offered}, completed {o.get('completed', 0)}, "
          f"diverted {o.get('diverted', 0)}, dropped {o.get('dropped', 0)}, stuck "
          f"{o.get('stuck', 0)}, unanswered {o.get('unanswered', 0)}, failed "
          f"{o.get('failed', 0)}  (peak {result.in_flight_peak} in flight; offered for "
          f"{result.offered_for:.0f} s, drained in {result.drained_in:.0f} s)")
    for kind in KINDS:
        if kind in result.by_kind:
            secs = result.call_seconds.get(kind, [])
            dur = f", completed call p50 {percentile(secs, 50):.0f} s" if secs else ""
            print(f"  {kind:7} {json.dumps(result.by_kind[kind])}{dur}")
    match = ("match" if result.consultations == result.expected_consultations
             and not result.strays else "MISMATCH")
    print(f"consultations written {result.consultations} for {result.expected_consultations}"
          f" calls that reached Asterisk ({match}"
          f"{f'; {result.strays} strays' if result.strays else ''})")
    print(f"speech understood {result.speech_heard[0]}/{result.speech_heard[1]}, surveys rated "
          f"{result.surveys_rated[0]}/{result.surveys_rated[1]}, calls the IVR handed to the "
          f"queue at its limit (audiosocket.max_calls) "
          f"{'?' if result.refused_overload is None else result.refused_overload}")
    t = result.turns_s
    print(f"turn latency, caller side (end of input -> next prompt) n={len(t)}: p50 "
          f"{_ms(t, 50)} ms, p95 {_ms(t, 95)} ms, max {_ms(t, 100)} ms; " + ", ".join(
              f"{k} p50 {_ms(v, 50)} / p95 {_ms(v, 95)} ms (n={len(v)})"
              for k, v in sorted(result.turns_by_input.items())))
    st = result.service_turns_s
    print(f"turn latency, inside the service (input step -> next prompt step) n={len(st)}: "
          f"p50 {_ms(st, 50)} ms, p95 {_ms(st, 95)} ms, max {_ms(st, 100)} ms")
    p = result.pop_delays_s
    print(f"pop delay (AgentCalled on AMI -> pop on the desk websocket) n={len(p)}: p50 "
          f"{_ms(p, 50)} ms, p95 {_ms(p, 95)} ms, max {_ms(p, 100)} ms; "
          f"missing {result.pops_missing}")
    if result.final_decodes:
        d = result.final_decodes
        print(f"final decode after the end-of-speech quiet (service /metrics, to its bucket) "
              f"n={d.get(math.inf, 0):.0f}: p50 <= {_bound_ms(quantile_bound(d, 0.5))}, "
              f"p95 <= {_bound_ms(quantile_bound(d, 0.95))}")
    if result.turn_endings:
        print("listening turns ended (service /metrics): " + ", ".join(
            f"{reason} {count:.0f}" for reason, count in result.turn_endings.items()))
    if result.usage is not None:
        print_usage(result.usage)
    for problem in result.problems:
        print(f"  ! {problem}")


def print_usage(usage: Usage) -> None:
    print(f"{'process':14} {'CPU mean %':>10} {'CPU peak %':>10} {'RSS peak MB':>11}   "
          f"(1 s samples over {usage.seconds:.0f} s; 100 % = one core)")
    for group in GROUPS:
        g = usage.groups.get(group)
        if g is None:
            continue
        extra = f"   ({usage.sipp_processes_peak} processes at peak)" if group == "sipp" else ""
        print(f"{group:14} {g.cpu_mean:10.0f} {g.cpu_peak:10.0f} {g.rss_peak:11.0f}{extra}")
    ours = sum(g.cpu_mean for g in usage.groups.values())
    print(f"{'host (all)':14} {usage.host_mean:10.0f} {usage.host_peak:10.0f}   (other "
          f"processes on the host: {max(0.0, usage.host_mean - ours):.0f} % mean)")


def print_find_max(results: list[StepResult]) -> None:
    print(f"\nfind-max: highest concurrency where every call completed as scripted (nothing "
          f"lost or diverted) and the caller-side turn p95 of keys and of speech is under "
          f"{TURN_TARGET_S:g} s (CPU: mean %, 100 = one core)")
    print(f"{'conc':>4} {'rate/s':>6} {'offered':>7} {'done':>4} {'divert':>6} {'drop':>4} "
          f"{'lost':>4} {'consult':>7} {'keys p50/p95':>12} {'speech p50/p95':>14} "
          f"{'svc p95':>7} {'pop p50/p95':>12} {'ast':>4} {'serve':>5} {'sipp':>4} "
          f"{'bench':>5} {'other':>5} {'host':>4} {'serve MB':>8}  ok")
    for r in results:
        u = r.usage
        g = u.groups if u else {}

        def cpu(name: str, groups: dict = g) -> str:
            return f"{groups[name].cpu_mean:.0f}" if name in groups else "-"

        def p50_95(values: list[float]) -> str:
            return f"{_ms(values, 50)}/{_ms(values, 95)}"

        ours = sum(x.cpu_mean for x in g.values())
        other = f"{max(0.0, u.host_mean - ours):.0f}" if u else "-"
        host = f"{u.host_mean:.0f}" if u else "-"
        serve_mb = f"{g['hotline serve'].rss_peak:.0f}" if "hotline serve" in g else "-"
        consult = f"{r.consultations}/{r.expected_consultations}"
        keys = p50_95(r.turns_by_input.get("keys", []))
        speech = p50_95(r.turns_by_input.get("speech", []))
        print(f"{r.concurrency:4} {r.rate:6.2g} {r.offered:7} "
              f"{r.outcomes.get('completed', 0):4} {r.outcomes.get('diverted', 0):6} "
              f"{r.outcomes.get('dropped', 0):4} {r.lost:4} {consult:>7} {keys:>12} "
              f"{speech:>14} {_ms(r.service_turns_s, 95):>7} {p50_95(r.pop_delays_s):>12} "
              f"{cpu('asterisk'):>4} {cpu('hotline serve'):>5} {cpu('sipp'):>4} "
              f"{cpu('bench'):>5} {other:>5} {host:>4} {serve_mb:>8}  "
              f"{'yes' if r.passed else 'no'}")
    passing = [r.concurrency for r in results if r.passed]
    best = max(passing, default=None)
    print(f"highest passing concurrency: {best if best is not None else 'none'}"
          + (" (the highest step run: the limit is above it)"
             if best is not None and best == max(r.concurrency for r in results) else ""))


# --- the run ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=2.0, help="calls offered per second (2)")
    p.add_argument("--concurrency", type=int, default=10, help="calls in flight at most (10)")
    p.add_argument("--duration", type=float, default=120.0,
                   help="seconds during which calls are offered (120)")
    p.add_argument("--max-calls", type=int, default=None,
                   help="calls offered at most (default: rate x duration)")
    p.add_argument("--ivr-max-calls", type=int, default=None,
                   help="the service's audiosocket.max_calls (default: its own, 40 per core)")
    p.add_argument("--drain", type=float, default=75.0,
                   help="seconds to wait for calls in flight after offering stops (75)")
    p.add_argument("--agents", type=int, default=12, help="SIPp agent phones 2001.. (12)")
    p.add_argument("--talk", type=float, default=3.0,
                   help="seconds an agent talks before hanging up (3)")
    p.add_argument("--mix", default="lookup=40,agent=30,speech=30",
                   help="call kinds and weights (lookup=40,agent=30,speech=30)")
    p.add_argument("--find-max", action="store_true",
                   help=f"step the concurrency up ({FIND_MAX_STEPS}), a short run each")
    p.add_argument("--steps", default=FIND_MAX_STEPS, help="--find-max concurrency steps")
    p.add_argument("--cost-per-kind", action="store_true",
                   help="instead of the mix: an idle window, then --cost-calls calls of each "
                        "kind alone at --concurrency; prints CPU ms and memory per call")
    p.add_argument("--cost-kinds", default=",".join(KINDS),
                   help=f"--cost-per-kind: kinds, in the order run ({','.join(KINDS)})")
    p.add_argument("--cost-calls", type=int, default=30,
                   help="--cost-per-kind: calls per kind (30)")
    p.add_argument("--step-duration", type=float, default=45.0,
                   help="--find-max: seconds of offering per step (45)")
    p.add_argument("--step-drain", type=float, default=70.0,
                   help="--find-max: seconds to wait for calls in flight per step (70: an "
                        "agent call takes about 50 s, more when it waits for an agent)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help=f"bound of the whole run (find-max: {FIND_MAX_BUDGET_S:.0f})")
    p.add_argument("--database-url", default="",
                   help="SQLAlchemy URL for the service (default: SQLite in the state dir)")
    p.add_argument("--roles", choices=["all", "split"], default="all",
                   help="all: one `hotline serve` (default); split: `--role core` (AMI, "
                        "recorder, IVR; 'hotline serve' in the figures) and `--role web` "
                        "('serve web') over a redis-server of the bench's own ('redis'); "
                        "needs a PostgreSQL --database-url")
    p.add_argument("--wait-asterisk", type=float, default=0.0,
                   help="wait up to this many seconds for another run's Asterisk to stop "
                        "(default: refuse at once)")
    p.add_argument("--keep-state", action="store_true",
                   help="keep the private state dir (logs, database) after the run")
    p.add_argument("--callers", choices=["pooled", "per-call"], default="pooled",
                   help="SIPp processes for the callers: one per call kind (pooled, the "
                        "default) or one per call (per-call, before session 28); see "
                        "bench/load_pool.py")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.concurrency < 1 or args.duration <= 0 or args.agents < 1:
        p.error("--rate, --concurrency, --duration and --agents must be positive")
    if args.roles == "split" and not args.database_url.startswith("postgresql"):
        p.error("--roles split: two processes share the database: give a PostgreSQL "
                "--database-url (postgresql+asyncpg://...)")
    Mix.parse(args.mix)
    try:
        args.cost_kinds = call_costs.parse_kinds(args.cost_kinds)
    except ValueError as exc:
        p.error(str(exc))
    if args.cost_per_kind and (args.find_max or args.cost_calls < 1):
        p.error("--cost-per-kind: not with --find-max, and --cost-calls must be positive")
    return args


async def wait_for_free_asterisk(settings: Settings, within: float) -> None:
    """Wait (bounded) for another run's Asterisk to stop; never reload or stop it."""
    deadline = time.monotonic() + within
    while (pid := shared_asterisk_pid(settings)) is not None:
        if time.monotonic() + 10 > deadline:
            return  # running_stack refuses with the reason
        print(f"an Asterisk from the shared root runs (pid {pid}), another run's; waiting "
              "10 s", flush=True)
        await asyncio.sleep(10)  # waiting for another run to finish, bounded


async def watch_asterisk(stack: Stack) -> None:
    """Raise BenchError as soon as the Asterisk running from the shared root is no longer the
    bench's own (another run's ``down`` stopped it, or replaced it): the figures would be
    about a broken system, so the run is abandoned."""
    while True:
        await asyncio.sleep(1.0)  # a cheap check of a pid file and /proc, once a second
        pid = await asyncio.to_thread(shared_asterisk_pid, stack.settings)
        if pid != stack.asterisk_pid:
            raise BenchError(f"the bench's Asterisk (pid {stack.asterisk_pid}) was stopped or "
                             f"replaced by another run (now: {pid}); run abandoned, no "
                             "figures")


def plan_steps(args: argparse.Namespace) -> list[tuple[int, DriveLimits]]:
    if not args.find_max:
        max_calls = args.max_calls or math.ceil(args.rate * args.duration)
        return [(args.concurrency, DriveLimits(args.rate, args.concurrency, args.duration,
                                               max_calls, args.drain))]
    steps = []
    for text in args.steps.split(","):
        conc = int(text)
        # Fill the concurrency within ~10 s; the concurrency, not the rate, is the limit.
        rate = max(args.rate, conc / 10)
        max_calls = args.max_calls or math.ceil(rate * args.step_duration)
        steps.append((conc, DriveLimits(rate, conc, args.step_duration, max_calls,
                                        args.step_drain)))
    return steps


async def prompts_prewarmed(stack: Stack) -> bool:
    speech = (await stack.service.health()).get("speech") or {}
    return isinstance(speech, dict) and speech.get("prompts_prewarmed") is True


StepT = TypeVar("StepT")


async def guarded(step: asyncio.Task[StepT], guard: asyncio.Task[None]) -> StepT:
    """The step's result, or the guard's BenchError as soon as our Asterisk is gone."""
    await asyncio.wait({step, guard}, return_when=asyncio.FIRST_COMPLETED)
    if not step.done():  # the guard ended: our Asterisk is gone
        step.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await step
        guard.result()
    return step.result()


async def run(args: argparse.Namespace, teardown: Teardown, state_dir: Path) -> list[StepResult]:
    started = time.monotonic()
    budget = args.max_seconds or (FIND_MAX_BUDGET_S if args.find_max else math.inf)
    steps = plan_steps(args)
    settings = teardown.settings
    mix = Mix.parse(args.mix)
    print(f"machine: {machine_description()}")
    print(f"mix: {mix.describe()}; {args.agents} agent phones (talk {args.talk:g} s); "
          f"state dir {state_dir}", flush=True)
    if args.wait_asterisk:
        await wait_for_free_asterisk(settings, args.wait_asterisk)
    results: list[StepResult] = []
    async with running_stack(settings, teardown, ring_ms=300, talk_ms=int(args.talk * 1000),
                             progress=lambda line: print(line, flush=True),
                             split=args.roles == "split") as stack:
        planner = Planner(mix, await demo_case_number(settings), await speech_audio(state_dir))
        sampler = ProcSampler(lambda: {"asterisk": stack.asterisk_pid,
                                       "hotline serve": stack.service.pid,
                                       "serve web": stack.web.pid if stack.web else None,
                                       "redis": stack.redis_pid})
        sampler.start()
        guard = asyncio.create_task(watch_asterisk(stack), name="asterisk-guard")
        try:
            if args.cost_per_kind:
                steps = []  # the cost steps replace the mix's

                async def run_kinds(kinds: list[str], limits: DriveLimits,
                                    tag: str) -> StepResult:
                    one = Planner(Mix(dict.fromkeys(kinds, 1.0)), planner.case_number,
                                  planner.speech_audio)
                    step = asyncio.create_task(run_step(stack, one, sampler, limits, tag,
                                                        callers=args.callers))
                    result = await guarded(step, guard)
                    print_step(result)
                    if tag != call_costs.WARM_UP_TAG:
                        results.append(result)
                    return result

                idle, costs = await call_costs.measure(
                    args.cost_kinds, args.cost_calls, args.concurrency, sampler, run_kinds,
                    prewarmed=lambda: prompts_prewarmed(stack),
                    progress=lambda line: print(line, flush=True))
                call_costs.print_costs(idle, costs)
            for index, (conc, limits) in enumerate(steps, start=1):
                left = budget - (time.monotonic() - started) - SETUP_ALLOWANCE_S
                if left < limits.duration + limits.drain + QUIET_WAIT_S:
                    print(f"\nstopping before concurrency {conc}: {left:.0f} s left of the "
                          f"{budget:.0f} s budget", flush=True)
                    break
                step = asyncio.create_task(
                    run_step(stack, planner, sampler, limits, f"L{index}",
                             callers=args.callers))
                result = await guarded(step, guard)
                print_step(result)
                results.append(result)
        finally:
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard
            await sampler.stop()
        answered = sum(p.answered() for p in stack.phones)
        print(f"\nagent phones answered {answered} calls; desks got "
              f"{sum(d.pops for d in stack.desks)} pops", flush=True)
    if args.find_max:
        print_find_max(results)
    print(f"\nrun took {time.monotonic() - started:.0f} s; command: "
          f"{shlex.join([Path(sys.executable).name, '-m', 'bench.load', *shown_args()])}")
    return results


def shown_args(argv: list[str] | None = None) -> list[str]:
    """The command line as printed: a database URL's password hidden (a report is pasted
    into BENCHMARKS.md)."""
    from sqlalchemy.engine import make_url

    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        flag, equals, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if "://" in value and "@" in value:
            with contextlib.suppress(Exception):
                args[i] = flag + equals + make_url(value).render_as_string(hide_password=True)
    return args


def write_json(path: Path, args: argparse.Namespace, results: list[StepResult]) -> None:
    def plain(r: StepResult) -> dict[str, Any]:
        data = asdict(r)
        data.update(lost=r.lost, passed=r.passed, turn_p95_s=r.turn_p95)
        return data

    path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                "machine": machine_description(),
                                "steps": [plain(r) for r in results]}, indent=1,
                               ensure_ascii=False, default=str))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    state_dir = Path(tempfile.mkdtemp(prefix="hotline-load-"))
    teardown = Teardown(bench_settings(state_dir, agents_count=args.agents,
                                       database_url=args.database_url,
                                       ivr_max_calls=args.ivr_max_calls))
    status = 0
    signalled: list[int] = []
    try:
        with asyncio.Runner() as runner:  # Ctrl-C cancels the run, whose finally tears down

            async def main_task() -> list[StepResult]:
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
        if args.find_max:
            status = 0 if any(r.passed for r in results) else 1
        else:
            status = 0 if results and all(r.lost == 0 for r in results) else 1  # lost: 1
    except BenchError as exc:
        print(f"bench.load: {exc}", file=sys.stderr)
        status = 2
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError) and not signalled:
            traceback.print_exc()  # a cancellation nobody asked for is a bug: show it
        print("bench.load: interrupted; everything it started is stopped", file=sys.stderr)
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
