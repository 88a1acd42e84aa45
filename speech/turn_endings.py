"""How the process's listening turns ended, counted for /metrics (hotline.metrics).

Reasons are the recognizer's (``speech.recognizer.EndReason``): ``request`` (a whole request
after ``end_silence_complete``), ``silence``, ``endpoint``, ``max_utterance``, ``no_speech``,
``flush``; ``request_missed`` counts the early ends tried whose words were no whole request
(each cost one more decode of the utterance). Their ratio is what tells whether
``[speech] end_silence_complete`` fits the callers: many misses, little gained.
"""

from __future__ import annotations

import threading
from collections import Counter


class TurnEndings:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()  # recognizers count from the pool's threads too

    def count(self, reason: str) -> None:
        with self._lock:
            self._counts[reason] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


TURN_ENDINGS = TurnEndings()
"""The process's counts (every recognizer of the process adds to them)."""
