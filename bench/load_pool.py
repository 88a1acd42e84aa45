"""Pooled callers for ``bench.load`` (``--callers pooled``): one SIPp process per call kind
places every call of that kind, instead of one SIPp process per call.

Why: the load generator shares the two cores with the system under test, and a SIPp process
wakes about a thousand times a second whatever it does (its event loop polls with a 1 ms
timeout: 3,356 epoll_wait calls in 4 s of one idle SIPp, strace -c). 80 callers as 80
processes are 80,000 wake-ups a second on two cores; three processes are 3,000.

What stays the same: the plans (``Planner``: the same kinds, numbers, keys, audio and
display names "张三 L1-0007", so consultations are matched as before), the scenario
(hotline/tools/sipp_scenarios/caller_until_bye.xml, rendered once per kind with the display
name and sequence number taken from an injection file), the records ``drive`` returns and
everything computed from them. What differs: each kind is offered at its share of the rate
and of the concurrency (SIPp's ``-r``/``-l``/``-m``: the shares of the first ``max_calls``
plans), not one random kind per slot; calls start when SIPp's rate allows (their start is
logged); offering stops after ``duration`` ("q" on SIPp's control port: no new calls, the
calls in flight go on), and what still runs after ``drain`` is killed (those calls count as
stuck, as in ``drive``).
"""

from __future__ import annotations

import asyncio
import math
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from bench.load_calls import CallPlan, CallRecord, Drive, DriveLimits, PlanSource
from hotline.assets import SIPP_SCENARIOS, asset_dir
from hotline.settings import Settings
from hotline.tools.sipp import (
    LOCAL_IP,
    CallResult,
    SippProcess,
    free_udp_port,
    key_steps,
)

SCENARIO = "caller_pool.xml"
SCENARIO_DIR = Path(__file__).parent / "sipp"
ANSWER_TIMEOUT_MS = 10_000
SIPP_STOP_S = 5.0
"""After "q", SIPp exits once its calls ended; killed after drain + this."""


class TimedSipp(SippProcess):
    """A SippProcess that also tells ``on_line`` when each ``<log>`` line arrived (bench
    clock)."""

    def __init__(self, name: str, workdir: Path) -> None:
        super().__init__(name, workdir)
        self.on_line: Callable[[float, str], None] | None = None

    async def _read_events(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        while raw := await reader.readline():
            line = raw.decode("utf-8", "replace").strip()
            at = loop.time()
            if self.on_line is not None:
                self.on_line(at, line)
            async with self._changed:
                self.events.append(line)
                self._changed.notify_all()


@dataclass
class KindPool:
    kind: str
    plans: list[CallPlan]
    rate: float
    limit: int
    control_port: int = 0
    process: TimedSipp | None = None
    started: dict[int, float] = field(default_factory=dict)
    """Sequence number -> when its start was logged (bench clock)."""
    lines: dict[int, list[str]] = field(default_factory=dict)
    ended: dict[int, float] = field(default_factory=dict)


def render(workdir: Path, **context: object) -> Path:
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(SCENARIO_DIR),
                                    jinja2.FileSystemLoader(asset_dir(SIPP_SCENARIOS))]),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        autoescape=False)
    path = workdir / f"{context['kind']}.xml"
    path.write_text(env.get_template(SCENARIO).render(context), encoding="utf-8")
    return path


def injection(plans: list[CallPlan], tag: str, path: Path) -> Path:
    """One line per call, in order: sequence number; display name (';' and '"' cannot occur
    in the planner's names, checked)."""
    lines = ["SEQUENTIAL"]
    for plan in plans:
        name = plan.caller_name(tag)
        if any(c in name for c in ';"\\<>\r\n'):
            raise ValueError(f"display name {name!r} cannot go through an injection file")
        lines.append(f"{plan.seq};{name};")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def split(planner: PlanSource, limits: DriveLimits) -> list[KindPool]:
    """The first ``max_calls`` plans by kind, each kind with its share of the rate and of the
    concurrency (at least one call at a time)."""
    plans = [planner.next() for _ in range(limits.max_calls)]
    pools = []
    for kind in dict.fromkeys(p.kind for p in plans):
        mine = [p for p in plans if p.kind == kind]
        share = len(mine) / len(plans)
        pools.append(KindPool(kind, mine, rate=limits.rate * share,
                              limit=max(1, math.ceil(limits.concurrency * share))))
    return pools


async def start(pool: KindPool, settings: Settings, tag: str, workdir: Path,
                on_line: Callable[[KindPool, float, str], None]) -> None:
    first = pool.plans[0]
    if any((p.number, p.keys, p.pause_before_keys_ms, p.audio, p.hold_ms)
           != (first.number, first.keys, first.pause_before_keys_ms, first.audio, first.hold_ms)
           for p in pool.plans):
        raise ValueError(f"the {pool.kind} calls differ in more than their names")
    scenario = render(
        workdir, kind=pool.kind, caller_number=first.number, caller_name="[field1]",
        audio=str(first.audio.resolve()) if first.audio else None,
        steps=key_steps(first.keys, first.pause_before_keys_ms, workdir),
        hold_ms=max(1, first.hold_ms), answer_timeout_ms=ANSWER_TIMEOUT_MS,
        authenticate=False, headers=[], telephone_event=True, codecs=["PCMU"],
        log_suffix=" [field0]")
    calls = injection(pool.plans, tag, workdir / f"{pool.kind}.csv")
    pool.control_port = free_udp_port(host=LOCAL_IP)
    remote = f"{settings.asterisk.bind_host}:{settings.asterisk.sip_port}"
    args = [remote, "-sf", str(scenario), "-inf", str(calls),
            "-s", settings.asterisk.hotline_number, "-i", LOCAL_IP,
            "-p", str(free_udp_port(host=LOCAL_IP)), "-mp", str(free_udp_port(4, host=LOCAL_IP)),
            "-cp", str(pool.control_port),
            "-r", f"{pool.rate:.4f}", "-rp", "1000", "-l", str(pool.limit),
            "-m", str(len(pool.plans))]
    process = await TimedSipp.start(pool.kind, workdir, args)
    assert isinstance(process, TimedSipp)
    process.on_line = lambda at, line: on_line(pool, at, line)
    pool.process = process


def stop_offering(pool: KindPool) -> None:
    """"q" on SIPp's control port: no new calls; it exits when the calls in flight end."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"q", (LOCAL_IP, pool.control_port))


def result_of(lines: list[str], timed_out: bool) -> CallResult:
    by_word = {line.split(" ", 1)[0]: line for line in lines}
    answered = by_word.get("answered")
    hung_up = ("remote" if "remote_bye" in by_word else "local" if "local_bye" in by_word
               else None)
    return CallResult(exit_code=None if timed_out else 0,
                      call_id=answered.split()[1] if answered else None,
                      answered=answered is not None, hung_up_by=hung_up,
                      timed_out=timed_out, events=list(lines))


async def drive_pooled(settings: Settings, planner: PlanSource, limits: DriveLimits, tag: str,
                       progress: Callable[[str], None] = print) -> Drive:
    """``drive`` with one SIPp process per call kind (see the module's docstring)."""
    loop = asyncio.get_running_loop()
    run = Drive(tag)
    pools = split(planner, limits)
    origin = loop.time()
    in_flight = 0
    waits: list[asyncio.Future[int]] = []

    def on_line(pool: KindPool, at: float, line: str) -> None:
        nonlocal in_flight
        words = line.split()
        if len(words) < 2 or not words[-1].isdigit():
            return
        seq = int(words[-1])
        if words[0] == "start":
            pool.started[seq] = at
            in_flight += 1
            run.in_flight_peak = max(run.in_flight_peak, in_flight)
            return
        pool.lines.setdefault(seq, []).append(line)
        if words[0] in ("remote_bye", "local_bye") and seq not in pool.ended:
            pool.ended[seq] = at
            in_flight -= 1

    with tempfile.TemporaryDirectory(prefix="bench-load-pool-") as tmp:
        workdir = Path(tmp)
        try:
            for pool in pools:
                await start(pool, settings, tag, workdir, on_line)
            progress(f"  {len(pools)} SIPp processes: " + ", ".join(
                f"{p.kind} {len(p.plans)} calls at {p.rate:.2f}/s, {p.limit} at a time"
                for p in pools))
            bound = limits.duration + limits.drain + SIPP_STOP_S
            waits = [asyncio.ensure_future(p.process.wait(bound)) for p in pools
                     if p.process is not None]
            await asyncio.wait(waits, timeout=limits.duration)
            run.offered_for = loop.time() - origin
            for pool in pools:
                if pool.process is not None and not pool.process.exited:
                    stop_offering(pool)
            offered = sum(len(p.started) for p in pools)
            progress(f"  offering stopped after {run.offered_for:.0f} s ({offered} calls);"
                     f" waiting up to {limits.drain:.0f} s for {in_flight} calls in flight")
            await asyncio.wait(waits, timeout=limits.drain)
        finally:
            for pool in pools:
                if pool.process is not None:
                    await pool.process.stop()
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        run.drained_in = loop.time() - origin - run.offered_for
    for pool in pools:
        by_seq = {p.seq: p for p in pool.plans}
        for seq, started_at in pool.started.items():
            record = CallRecord(by_seq[seq], offered_at=started_at - origin)
            ended = pool.ended.get(seq)
            record.ended_at = None if ended is None else ended - origin
            record.result = result_of(pool.lines.get(seq, []), timed_out=ended is None)
            if ended is None and record.result.answered:
                record.result = None
                record.error = "cancelled after the drain time"
                run.cancelled += 1
            run.records.append(record)
    run.records.sort(key=lambda r: r.offered_at)
    return run

