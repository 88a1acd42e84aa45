"""The service's start-up heap, kept out of the garbage collector's full passes.

A full (generation 2) collection walks every object the collector tracks, and the event
loop that paces every call's media waits meanwhile. Measured with ``bench.load`` at 60 and
80 calls (session 28): five full collections in 200 s, 96-198 ms each, one stall of the
loop each (key turns, spoken turns and pops of every call in flight behind it). Most of
what they walked was built at start-up (modules, settings, ORM mappers, language packs,
grammars, templates: about 160,000 objects after the imports alone) and lives as long as
the process. ``gc.freeze()`` moves it to the permanent generation, after one collection
that frees start-up's garbage, so later full passes walk only what calls created (the
freezing that CPython's documentation suggests for long-lived objects).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Collect once, then freeze what is left; the number of objects frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("start-up heap frozen: %d objects kept out of later full collections", frozen)
    return frozen
