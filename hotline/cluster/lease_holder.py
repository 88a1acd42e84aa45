"""Which control process of the plan holds the control lease (hotline/roles/control_lease.py),
for ``hotline cluster status``: the lease key ``<stream>:control-lease`` read from the
cluster's Redis; its value is the holder's ``host:pid:random``, matched to the plan's
control processes by pid."""

from __future__ import annotations

import socket
from typing import Any

import redis

from hotline.cluster.plan import Plan, RoleProcess
from hotline.cluster.processes import live_pid

HOLDS = "holds the control lease"
STANDBY = "standby, lease held by {holder}"


def lease_holder(plan: Plan, stream: str) -> str | None:
    """The lease's value (``host:pid:random``), None when nobody holds it; raises
    :class:`redis.RedisError` when Redis does not answer."""
    client = redis.Redis.from_url(plan.redis_url, socket_timeout=1.0,
                                  socket_connect_timeout=1.0)
    try:
        value = client.get(f"{stream}:control-lease")
    finally:
        client.close()
    return None if value is None else bytes(value).decode(errors="replace")


def holder_pid(holder: str) -> int | None:
    """The pid in a lease value on this host (None: another host, or not ours)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def name_holder(parts: list[dict[str, Any]], plan: Plan, stream: str) -> str:
    """Mark, in the status ``parts`` of the plan's control processes, which holds the lease
    and which stand by; the status line for the lease."""
    controls = [p for p in parts if p.get("role") == "control"]
    if not controls:
        return "no control process in the plan"
    try:
        holder = lease_holder(plan, stream)
    except redis.RedisError as exc:
        return f"unknown (Redis: {exc})"
    if holder is None:
        return "nobody holds the control lease"
    pid = holder_pid(holder)
    held_by = next((p for p in controls if pid is not None and p.get("pid") == pid), None)
    name = held_by["name"] if held_by else holder
    for part in controls:
        if part.get("pid") is None:
            continue
        part["health"] = (f"ok ({HOLDS})" if part is held_by
                          else f"ok ({STANDBY.format(holder=name)})")
        part["lease"] = part is held_by
    return f"held by {name}" + ("" if held_by else " (not a process of this plan)")


def stop_order(plan: Plan, stream: str) -> list[RoleProcess]:
    """The plan's processes in reverse order, the control that holds the lease moved after
    the other controls: a standby stopped first takes no lease from it (after a takeover
    and a restart, the holder may be the plan's second control)."""
    order = list(reversed(plan.processes))
    try:
        holder = lease_holder(plan, stream)
    except redis.RedisError:
        return order
    pid = holder_pid(holder) if holder is not None else None
    held = next((p for p in order if p.role == "control" and pid is not None
                 and live_pid(plan, p)[0] == pid), None)
    if held is None:
        return order
    order.remove(held)
    last = max((n for n, p in enumerate(order) if p.role == "control"), default=-1)
    order.insert(last + 1, held)
    return order
