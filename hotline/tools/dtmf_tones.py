"""Key presses as in-band DTMF tones: what a caller sends through a gateway that carries
no RFC 4733 events, only the tones in the audio. Written as an 8 kHz mono wav that
``hotline.tools.sipp.place_call`` streams as the caller's audio."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

RATE = 8000
TONE_MS = 120
"""Each key's tone; Asterisk's detector needs about 40 ms."""
GAP_MS = 200
"""Silence after each key, so repeated keys are two presses."""
PAUSE_MS = 1000
"""A ',' in the keys: this much more silence (as in a dial string)."""
LEVEL = 0.25
"""Amplitude of each of the two frequencies (about -12 dBFS): a normal telephone level."""

FREQUENCIES: dict[str, tuple[int, int]] = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}


def _samples(ms: int) -> int:
    return RATE * ms // 1000


def tone_samples(keys: str, lead_ms: int = 500) -> list[int]:
    """16-bit samples: ``lead_ms`` of silence, then each key's tone and a gap."""
    samples = [0] * _samples(lead_ms)
    for key in keys:
        if key == ",":
            samples += [0] * _samples(PAUSE_MS)
            continue
        if key not in FREQUENCIES:
            raise ValueError(f"key {key!r} has no DTMF tone; use 0-9, * # A-D (',' pauses)")
        low, high = FREQUENCIES[key]
        for n in range(_samples(TONE_MS)):
            t = n / RATE
            value = LEVEL * (math.sin(2 * math.pi * low * t) + math.sin(2 * math.pi * high * t))
            samples.append(round(value * 32767))
        samples += [0] * _samples(GAP_MS)
    return samples


def write_tones(keys: str, path: Path, *, lead_ms: int = 500, tail_ms: int = 0) -> Path:
    """Write ``keys`` as in-band DTMF tones to the wav ``path``; return it."""
    samples = tone_samples(keys, lead_ms) + [0] * _samples(tail_ms)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return path
