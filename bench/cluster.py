"""Calls through the cluster's SIP edge on this machine (``make bench-cluster``).

    .venv/bin/python -m bench.cluster [--calls 40] [--concurrency 8] [--hold-ms 3000]
                                      [--keyed-every 4] [--max-seconds 300] [--pop-calls 5]
                                      [--database-url URL] [--json PATH]

Starts the whole test bed with ``hotline cluster up`` in a private state directory (Redis,
Kamailio on 127.0.19.1, media nodes on 127.0.19.2 and .3 and the queue node and its standby
on 127.0.19.12 and .13 from the one Asterisk root, the
default plan's role processes of hotline/cluster/plan.py -- control, a standby control, two
IVR workers, two web nodes -- each moved to its own 127.0.19.x with free ports, a PostgreSQL
database of its own made from HOTLINE_TEST_PG_URL's server or ``--database-url``), places
``--calls`` SIPp calls through the edge, ``--concurrency`` at a time, each holding
``--hold-ms`` after the answer;
every ``--keyed-every``-th caller is a demo resident keying his case number at the greeting.
Prints: answered and lost calls, calls per media node, the SIPp call time, the delay from the
call's start on Asterisk to the IVR's AudioSocket connect, the keyed turn (the case number's
``keys`` step -> the IVR's next prompt step, bench.load_calls.service_turns), Redis commands
per call (INFO commandstats before/after), PostgreSQL writes per call (bench/pg_writes.py:
commits and rows of the cluster's database, rows per table, transactions that wrote and WAL
bytes; read before the calls and once every call's consultation has ended, each time once
the counters stand still), and per process group the CPU
seconds (per call) and the resident memory before the calls, its peak during them and the
growth per call (bench/cluster_usage.py); with ``--pop-calls``, then the delay from an
agent's phone ringing to the pop on the last web node's desk (bench/cluster_pops.py).
Bounded in count (``--calls`` <= 500) and time (``--max-seconds`` for the calls).
Stops everything after. ``--json PATH`` also writes the figures there.

Every part shares this machine's cores with the SIPp load generator: the figures are costs
per call, not the throughput of separate machines. Needs root (chroot, mount).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.cluster_pops import pop_delays
from bench.cluster_usage import (
    MemoryWatch,
    difference,
    group_cpu,
    pgrp,
    redis_commands,
)
from bench.load_calls import Turn, demo_case_number, load_consultations, service_turns
from bench.pg_writes import settled_reading, wait_recorded, writes_between
from crm.consultations.service import find_consultations
from crm.storage.db import make_engine, make_session_factory
from hotline.asterisk import process
from hotline.cluster.plan import Plan, default_processes
from hotline.edge import nodes
from hotline.edge.settings import EdgeSettings, MediaNode
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings, free_tcp_port
from hotline.tools.sipp import CallResult, free_udp_port, place_call

NET = "127.0.19"
TAG = "C1"
DATABASE = "hotline_bench_cluster"


def _run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hotline.cli", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


async def _admin(base_url: str, statement: str) -> None:
    engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def calls_processed(settings: Settings, media: MediaNode) -> int:
    out = process.cli(nodes.node_settings(settings, media), "core show calls")
    found = re.search(r"(\d+) calls? processed", out)
    return int(found.group(1)) if found else 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def figures(name: str, values: list[float]) -> str:
    if not values:
        return f"  {name}: none"
    return (f"  {name}: n={len(values)} median {statistics.median(values):.3f} s, "
            f"p95 {pct(values, 0.95):.3f} s, max {max(values):.3f} s")


async def place_all(settings: Settings, args: argparse.Namespace, case_number: str,
                    watch: MemoryWatch) -> tuple[list[CallResult], list[float]]:
    """The calls, ``--concurrency`` at a time; every ``--keyed-every``-th caller is 张三 (a
    demo resident) keying his case number at the greeting (as bench/load's lookup callers),
    then hanging up ``--hold-ms`` after the keys; the others are silent unknown callers.
    Every caller's name carries TAG and its number (bench.load_calls finds them by it).
    ``watch`` samples memory while the calls run."""
    at_edge = settings.model_copy(update={"asterisk": settings.asterisk.model_copy(
        update={"bind_host": settings.edge.address, "sip_port": settings.edge.port})})
    gate = asyncio.Semaphore(args.concurrency)
    results: list[CallResult] = []
    seconds: list[float] = []

    async def one(i: int) -> None:
        keyed = args.keyed_every > 0 and i % args.keyed_every == 0
        async with gate:
            started = time.monotonic()
            if keyed:
                result = await place_call(at_edge, caller_number="13800138000",
                                          caller_name=f"张三 {TAG}-{i:04d}", keys=case_number,
                                          pause_before_keys_ms=4000, hold_ms=args.hold_ms)
            else:
                result = await place_call(at_edge, caller_number=f"1370000{i:04d}",
                                          caller_name=f"Bench {TAG}-{i:04d}",
                                          hold_ms=args.hold_ms)
            seconds.append(time.monotonic() - started)
            results.append(result)

    sampler = asyncio.create_task(watch.run())
    tasks = [asyncio.create_task(one(i)) for i in range(args.calls)]
    try:
        async with asyncio.timeout(args.max_seconds):
            await asyncio.gather(*tasks)
    except TimeoutError:
        print(f"stopped at --max-seconds {args.max_seconds:.0f}: {len(results)} calls done")
    finally:
        for task in [*tasks, sampler]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    watch.sample()
    return results, seconds


async def keyed_turns(settings: Settings, keyed: int) -> list[Turn]:
    """The keyed case number (its ``keys`` step) -> the IVR's next prompt step, inside the
    service, per keyed call (bench.load_calls.service_turns)."""
    found = await load_consultations(settings, TAG, expected=keyed, within=30)
    return [t for c in found for t in service_turns(c) if t.kind == "keys"]


async def ivr_delays(database_url: str, calls: int, within: float) -> list[float]:
    """Seconds from each recorded call's start to its IVR connect, once the core wrote them
    (waited for up to ``within`` s)."""
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    delays: list[float] = []
    deadline = time.monotonic() + within
    try:
        while True:
            found = await find_consultations(sessions, limit=min(500, max(calls, 1)))
            ended = [c for c in found if c.ended_at is not None]
            if (len(ended) == len(found) and found) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)  # polling the database, bounded by the deadline
        for c in found:
            connect = next((s["at"] for s in c.steps if s["kind"] == "ivr_connected"), None)
            if connect is not None and c.started_at is not None:
                delays.append((datetime.fromisoformat(connect) - c.started_at)
                              .total_seconds())
    finally:
        await engine.dispose()
    return delays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--hold-ms", type=int, default=3000)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--keyed-every", type=int, default=4,
                        help="every Nth caller keys a case number (0: none)")
    parser.add_argument("--pop-calls", type=int, default=0,
                        help="then this many pops, one at a time, on the last web node")
    parser.add_argument("--database-url", default=os.environ.get("HOTLINE_TEST_PG_URL"),
                        help="a PostgreSQL server's URL (a database of the bench's own is "
                             "made there); default HOTLINE_TEST_PG_URL (var/pg-test.env)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 500 or not 1 <= args.concurrency <= 100:
        parser.error("--calls must be 1-500 and --concurrency 1-100")
    if not args.database_url:
        parser.error("no PostgreSQL: pass --database-url or source var/pg-test.env")
    base_url = args.database_url
    database_url = make_url(base_url).set(database=DATABASE).render_as_string(
        hide_password=False)
    asyncio.run(_admin(base_url, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
    asyncio.run(_admin(base_url, f"CREATE DATABASE {DATABASE}"))
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        try:
            return run(Path(tmp), args, database_url)
        finally:
            asyncio.run(_admin(base_url, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))


def run(state: Path, args: argparse.Namespace, database_url: str) -> int:
    media = [MediaNode(name=name, address=f"{NET}.{n}",
                       sip_port=free_udp_port(host=f"{NET}.{n}"),
                       ami_port=free_tcp_port(f"{NET}.{n}"))
             for name, n in (("media-1", 2), ("media-2", 3))]
    # The default [edge]'s queue node and its standby (hotline/edge/settings.py), moved too.
    queue = [MediaNode(name=q.name, address=f"{NET}.{q.address.rsplit('.', 1)[1]}",
                       sip_port=free_udp_port(host=f"{NET}.{q.address.rsplit('.', 1)[1]}"),
                       ami_port=free_tcp_port(f"{NET}.{q.address.rsplit('.', 1)[1]}"))
             for q in EdgeSettings().queue_nodes]
    edge: dict[str, Any] = {"address": f"{NET}.1", "port": free_udp_port(host=f"{NET}.1"),
                            "sources": ["127.0.0.1"], "nodes": [m.model_dump() for m in media],
                            "queue_nodes": [q.model_dump() for q in queue],
                            "phone_port": free_udp_port(host=f"{NET}.1"),
                            "phone_sources": ["127.0.0.1"]}
    env = {**os.environ, "HOTLINE_STATE_DIR": str(state), "HOTLINE_DATABASE__URL": database_url,
           "HOTLINE_EDGE__ADDRESS": edge["address"], "HOTLINE_EDGE__PORT": str(edge["port"]),
           "HOTLINE_EDGE__SOURCES": json.dumps(edge["sources"]),
           "HOTLINE_EDGE__NODES": json.dumps(edge["nodes"]),
           "HOTLINE_EDGE__QUEUE_NODES": json.dumps(edge["queue_nodes"]),
           "HOTLINE_EDGE__PHONE_PORT": str(edge["phone_port"]),
           "HOTLINE_EDGE__PHONE_SOURCES": json.dumps(edge["phone_sources"])}
    settings = asterisk_test_settings(state)
    settings = settings.model_copy(update={"edge": settings.edge.model_validate(edge)})
    # The default plan (hotline/cluster/plan.py: control, a standby control, two IVR workers,
    # two web nodes),
    # each moved to its own 127.0.19.x with free ports (other test beds use the defaults).
    plan = Plan(state / "cluster", f"{NET}.4", free_tcp_port(f"{NET}.4"), database_url, [
        dataclasses.replace(
            p, address=f"{NET}.{5 + i}",
            web_port=free_tcp_port(f"{NET}.{5 + i}") if p.web_port else None,
            audiosocket_port=free_tcp_port(f"{NET}.{5 + i}") if p.audiosocket_port else None)
        for i, p in enumerate(default_processes())])
    plan.save()
    with_db = settings.model_copy(update={"database": settings.database.model_copy(
        update={"url": database_url})})
    started = time.monotonic()
    up = _run(env, "cluster", "up", "--seed-demo")
    if up.returncode != 0:
        print(up.stdout + up.stderr)
        _run(env, "cluster", "down")
        return 1
    up_s = time.monotonic() - started
    try:
        report = json.loads(_run(env, "cluster", "status", "--json").stdout)
        groups = {p["name"]: g for p in report["parts"]
                  if p.get("pid") and (g := pgrp(p["pid"])) is not None}
        case_number = asyncio.run(demo_case_number(with_db))
        watch = MemoryWatch(groups)
        before_calls = {m.name: calls_processed(settings, m) for m in settings.edge.nodes}
        before_redis = asyncio.run(redis_commands(plan.redis_url))
        before_pg, settled = asyncio.run(settled_reading(database_url))
        before_cpu = group_cpu()
        t0 = time.monotonic()
        results, seconds = asyncio.run(place_all(settings, args, case_number, watch))
        wall = time.monotonic() - t0
        after_cpu = group_cpu()
        answered = sum(r.answered and r.ok for r in results)
        # Every answered call's consultation ended (the recorder wrote its end), then the
        # counters once they stand still; before the bench's own reads below (SQLAlchemy
        # engines commit a few statements of their own on connecting).
        recorded = asyncio.run(wait_recorded(database_url, f"% {TAG}-%", answered, 60))
        after_pg, settled_after = asyncio.run(settled_reading(database_url))
        pg = writes_between(before_pg, after_pg, len(results),
                            settled=settled and settled_after)
        per_node = {m.name: calls_processed(settings, m) - before_calls[m.name]
                    for m in settings.edge.nodes}
        delays = asyncio.run(ivr_delays(database_url, len(results), 30))
        keyed = sum(1 for i in range(len(results))
                    if args.keyed_every > 0 and i % args.keyed_every == 0)
        turns = asyncio.run(keyed_turns(with_db, keyed)) if keyed else []
        redis_ops = difference(before_redis, asyncio.run(redis_commands(plan.redis_url)))
        pops = asyncio.run(pop_delays(settings, plan, settings.web.demo_password,
                                      args.pop_calls, args.max_seconds)) \
            if args.pop_calls else []
    finally:
        _run(env, "cluster", "down")
    calls = max(len(results), 1)
    print(f"plan: {', '.join(f'{p.name} ({p.role})' for p in plan.processes)}")
    print(f"cluster up in {up_s:.1f} s; {len(results)} calls through the edge, "
          f"{args.concurrency} at a time, {args.hold_ms} ms each after the answer (or the "
          f"keys), {keyed} keying a case number, in {wall:.1f} s on {os.cpu_count()} cores "
          "(shared with SIPp and other work)")
    print(f"  answered {answered}, lost {len(results) - answered}")
    print("  calls per media node: " + ", ".join(f"{k} {v}" for k, v in per_node.items()))
    print(figures("SIPp call time (INVITE to BYE done, hold included)", seconds))
    print(figures("call start on Asterisk -> IVR connected", delays))
    prompts = sorted({t.prompt for t in turns})
    print(figures("keyed turn, case number keyed -> next prompt step (inside the service; "
                  f"prompts {', '.join(prompts) or '-'})", [t.seconds for t in turns]))
    if args.pop_calls:
        print(figures(f"pop delay, agent's phone rings -> pop on {plan.processes[-1].name}'s "
                      "desk websocket", pops))
    total_redis = sum(redis_ops.values())
    top = sorted(redis_ops.items(), key=lambda kv: -kv[1])[:6]
    print(f"  Redis: {total_redis} commands, {total_redis / calls:.1f} per call ("
          + ", ".join(f"{k} {v / calls:.1f}" for k, v in top) + ")")
    if recorded < answered:
        print(f"  only {recorded} of {answered} answered calls' consultations ended within 60 s")
    for line in pg.lines(DATABASE):
        print(line)
    print("  per part (process group): CPU during the calls, per call of the part (a media "
          "node: its own calls; the rest: every call); resident memory before the calls, "
          "peak during them, and (peak - before) / calls:")
    print(f"    {'part':12} {'CPU s':>7} {'ms/call':>8} {'RSS MB':>7} {'peak MB':>8} "
          f"{'kB/call':>8}")
    parts: dict[str, dict[str, float]] = {}
    for name, group in groups.items():
        used = after_cpu.get(group, 0.0) - before_cpu.get(group, 0.0)
        count = max(per_node.get(name, len(results)), 1)
        base, peak = watch.baseline.get(name, 0), watch.peak.get(name, 0)
        parts[name] = {"cpu_s": used, "cpu_ms_per_call": used / count * 1000,
                       "rss_before_kb": base, "rss_peak_kb": peak,
                       "growth_kb_per_call": (peak - base) / calls}
        print(f"    {name:12} {used:7.2f} {used / count * 1000:8.1f} {base / 1024:7.1f} "
              f"{peak / 1024:8.1f} {(peak - base) / calls:8.1f}")
    if args.json:
        write_json(args.json, {
            "args": {k: str(v) for k, v in vars(args).items() if k != "database_url"},
            "at": datetime.now().astimezone().isoformat(timespec="seconds"),
            "cores": os.cpu_count(), "calls": len(results), "answered": answered,
            "lost": len(results) - answered, "keyed": keyed, "calls_per_node": per_node,
            "consultations_ended": recorded,
            "wall_s": wall, "sipp_call_s": seconds, "ivr_connect_s": delays,
            "keyed_turn_s": [t.seconds for t in turns], "pop_delay_s": pops,
            "redis": {"commands": total_redis, "per_call": total_redis / calls,
                      "by_command": redis_ops},
            "postgres": pg.as_json(), "parts": parts})
    return 0 if answered == len(results) == args.calls else 1


def write_json(path: Path, figures: dict[str, Any]) -> None:
    path.write_text(json.dumps(figures, indent=1, ensure_ascii=False, default=str))


if __name__ == "__main__":
    sys.exit(main())
