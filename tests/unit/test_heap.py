"""The start-up heap is frozen out of the collector's full passes (hotline/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from hotline.heap import freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_what_lives_is_frozen_and_garbage_is_not(unfrozen: None) -> None:
    kept = [Node() for _ in range(1000)]
    a, b = Node(), Node()  # a cycle with no other reference: start-up's garbage
    a.other, b.other = b, a
    del a, b
    frozen = freeze_startup_heap()
    assert frozen == gc.get_freeze_count() >= 1000
    # Full passes no longer walk them; the cycle was collected, not frozen.
    assert sum(isinstance(o, Node) for o in gc.get_objects()) == 0
    gc.unfreeze()
    assert sum(isinstance(o, Node) for o in gc.get_objects()) == len(kept) == 1000
