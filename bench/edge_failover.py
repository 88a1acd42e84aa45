"""How long the SIP edge keeps sending to a dead media node, and takes a restarted one back.

    .venv/bin/python -m bench.edge_failover [--rounds 5] [--probe-interval 2] [--reply-timeout 2]

Real parts on this machine: Kamailio (the edge, 127.0.17.1) and two Asterisk media nodes from
the one cached root (``asterisk.root_dir``; 127.0.17.2 and .3), free ports, a private state
directory. Each round kills node-b with SIGKILL and times, on the monotonic clock, until the
dispatcher shows it inactive (``dispatcher.list``, read every 50 ms), then restarts it and
times its boot and until the edge has it active again. Prints each round and min/median/max.
Needs root (chroot, mount).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hotline.edge import cluster, kamailio, nodes
from hotline.edge.settings import MediaNode
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings, free_tcp_port
from hotline.tools.sipp import free_udp_port

EDGE = "127.0.17.1"
MEDIA = {"node-a": "127.0.17.2", "node-b": "127.0.17.3"}
POLL = 0.05
BOUND = 60.0


def bench_settings(state_dir: Path, probe_interval: int, reply_timeout: float) -> Settings:
    base = asterisk_test_settings(state_dir)
    pool = [MediaNode(name=name, address=address, sip_port=free_udp_port(host=address),
                      ami_port=free_tcp_port(address))
            for name, address in MEDIA.items()]
    edge = base.edge.model_copy(update={
        "address": EDGE, "port": free_udp_port(host=EDGE), "nodes": pool,
        "queue_nodes": [],  # the media nodes' failover alone
        "probe_interval": probe_interval, "reply_timeout": reply_timeout})
    return base.model_copy(update={"edge": edge})


def seconds_until(condition: Callable[[], bool], what: str, settings: Settings) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > BOUND:
            flags = {d.name: d.flags for d in kamailio.destinations(settings)}
            raise SystemExit(f"{what} did not happen within {BOUND:.0f} s (dispatcher: "
                             f"{flags}; node statuses: "
                             f"{[nodes.status(settings, name)['running'] for name in MEDIA]})")
        time.sleep(POLL)
    return time.monotonic() - started


def active(settings: Settings, name: str) -> bool:
    return any(d.name == name and d.active for d in kamailio.destinations(settings))


def one_round(settings: Settings, victim: str) -> tuple[float, float, float]:
    pid = nodes.pid(settings, victim)
    assert pid is not None, f"{victim} is not running"
    os.kill(pid, signal.SIGKILL)
    print(f"killed {victim} (pid {pid})", flush=True)
    out = seconds_until(lambda: not active(settings, victim), f"{victim} out", settings)
    started = time.monotonic()
    nodes.up(settings, victim, progress=lambda message: None)
    boot = time.monotonic() - started
    print(f"{victim} out after {out:.2f} s, restarted", flush=True)
    back = seconds_until(lambda: active(settings, victim), f"{victim} back", settings)
    return out, boot, back


def summary(label: str, values: list[float]) -> str:
    return (f"{label}: min {min(values):.2f} s, median {statistics.median(values):.2f} s, "
            f"max {max(values):.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--probe-interval", type=int, default=2)
    parser.add_argument("--reply-timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hotline-bench-edge-") as tmp:
        settings = bench_settings(Path(tmp), args.probe_interval, args.reply_timeout)
        cluster.up(settings)
        try:
            seconds_until(lambda: all(active(settings, name) for name in MEDIA),
                          "every node active", settings)
            rounds = [one_round(settings, "node-b") for _ in range(args.rounds)]
        finally:
            cluster.down(settings)
    print(f"probe every {args.probe_interval} s, reply timeout {args.reply_timeout} s, "
          f"{args.rounds} rounds")
    for index, (out, boot, back) in enumerate(rounds, 1):
        print(f"  round {index}: out after {out:.2f} s; restarted in {boot:.2f} s, "
              f"back after {back:.2f} s")
    print(summary("killed -> out of the dispatcher", [r[0] for r in rounds]))
    print(summary("node boot", [r[1] for r in rounds]))
    print(summary("booted -> back in the dispatcher", [r[2] for r in rounds]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
