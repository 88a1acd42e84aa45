"""``hotline cluster status`` names the control that holds the lease (hotline/cluster/
lease_holder.py), read from a real redis-server: the holder by its pid among the plan's
control processes, the others as standing by; nobody, and a holder from elsewhere."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import redis

from hotline.bus.redis_server import RedisServer
from hotline.cluster import lease_holder
from hotline.cluster.lease_holder import holder_pid, name_holder, stop_order
from hotline.cluster.plan import Plan, default_processes

STREAM = "hotline:call-events"


def parts(pids: dict[str, int | None]) -> list[dict[str, Any]]:
    return [{"name": name, "role": "control", "pid": pid, "health": "ok (runs)"}
            for name, pid in pids.items()] + [{"name": "web-1", "role": "web", "pid": 1,
                                              "health": "ok"}]


def test_status_names_the_holder_and_the_standby(redis_server: RedisServer,
                                                 tmp_path: Path) -> None:
    plan = Plan(tmp_path, redis_server.host, redis_server.port, "postgresql://x",
                default_processes())
    client = redis.Redis.from_url(plan.redis_url)
    try:
        found = parts({"control": os.getpid() + 1, "control-2": os.getpid()})
        assert name_holder(found, plan, STREAM) == "nobody holds the control lease"
        client.set(f"{STREAM}:control-lease", f"{socket.gethostname()}:{os.getpid()}:ab12")
        assert name_holder(found, plan, STREAM) == "held by control-2"
        health = {p["name"]: p["health"] for p in found}
        assert health == {"control": "ok (standby, lease held by control-2)",
                          "control-2": "ok (holds the control lease)", "web-1": "ok"}
        client.set(f"{STREAM}:control-lease", "elsewhere:1:x")
        assert name_holder(parts({"control": 5}), plan, STREAM) == (
            "held by elsewhere:1:x (not a process of this plan)")
    finally:
        client.close()
    redis_server.stop()
    assert name_holder(parts({"control": 5}), plan, STREAM).startswith("unknown (Redis:")


def test_a_lease_value_gives_the_pid_on_this_host_only() -> None:
    assert holder_pid(f"{socket.gethostname()}:4242:ab") == 4242
    assert holder_pid("another-host:4242:ab") is None
    assert holder_pid("garbage") is None


def test_down_stops_the_holder_after_the_standbys(redis_server: RedisServer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """After a takeover the holder may be control-2: ``cluster down`` stops control first,
    so it does not take the lease while control-2 stops."""
    plan = Plan(tmp_path, redis_server.host, redis_server.port, "postgresql://x",
                default_processes())
    running = {"control": os.getpid() + 1, "control-2": os.getpid()}
    monkeypatch.setattr(lease_holder, "live_pid",
                        lambda plan, process: (running.get(process.name), None))
    reverse = [p.name for p in reversed(plan.processes)]
    assert [p.name for p in stop_order(plan, STREAM)] == reverse  # nobody holds it
    client = redis.Redis.from_url(plan.redis_url)
    try:
        client.set(f"{STREAM}:control-lease", f"{socket.gethostname()}:{os.getpid()}:ab12")
        assert [p.name for p in stop_order(plan, STREAM)][-2:] == ["control", "control-2"]
        client.set(f"{STREAM}:control-lease",
                   f"{socket.gethostname()}:{os.getpid() + 1}:ab12")
        assert [p.name for p in stop_order(plan, STREAM)] == reverse
    finally:
        client.close()
