"""On a hang, say where every asyncio task waits.

pytest-timeout prints the threads' stacks, which for an asyncio test only shows the event loop
idling in ``select``. Shortly before it fires, this plugin prints every task of every running
event loop with the line it is suspended at, so a test that hangs in CI names its culprit.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
from collections.abc import Iterator

import pytest

LEAD_S = 15.0
"""Seconds before pytest-timeout's limit at which the tasks are printed."""


def running_loops() -> list[asyncio.AbstractEventLoop]:
    return [o for o in gc.get_objects()
            if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]


def describe_tasks() -> str:
    out = io.StringIO()
    for loop in running_loops():
        try:
            tasks = list(asyncio.all_tasks(loop))
        except RuntimeError:  # the set changed while read from this thread: try once more
            tasks = list(asyncio.all_tasks(loop))
        out.write(f"--- {len(tasks)} asyncio tasks of {loop!r}\n")
        for task in tasks:
            out.write(f"* {task.get_name()}\n")
            for where in await_chain(task.get_coro()):
                out.write(f"    {where}\n")
    return out.getvalue()


def await_chain(coro: object) -> list[str]:
    """Where a suspended coroutine waits: its frame, then each coroutine or generator it
    awaits, down to the innermost (a task's own stack shows only the outermost frame)."""
    found: list[str] = []
    while coro is not None and len(found) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            found.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in "
                         f"{frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return found


def _timeout_of(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    value = item.config.getoption("timeout", None) or item.config.getini("timeout")
    try:
        return float(value) if value else None
    except (TypeError, ValueError):
        return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    timeout = _timeout_of(item)
    timer = None
    if timeout and timeout > 2 * LEAD_S:
        def dump() -> None:
            sys.stderr.write(f"\n+++ {item.nodeid}: still running after "
                             f"{timeout - LEAD_S:.0f} s; asyncio tasks:\n{describe_tasks()}")
            sys.stderr.flush()
        timer = threading.Timer(timeout - LEAD_S, dump)
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
