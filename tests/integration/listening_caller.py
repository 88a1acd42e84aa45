"""A caller that records what it hears: the RTP Asterisk sends it, with arrival times.

Built on :class:`tests.integration.raw_sip.RawSipCall` (which writes the INVITE itself and
offers PCMU only): every RTP packet is kept as (arrival time in UTC, payload). Asterisk plays
a µ-law sound file to a µ-law caller without transcoding, so a prompt's file bytes appear in
the payloads exactly as they are on disk; :meth:`ListeningCall.heard` finds where.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime

from tests.integration.raw_sip import RawSipCall

RTP_HEADER = 12


def ulaw_rms(payload: bytes) -> float:
    """RMS level of µ-law audio as 16-bit linear samples."""
    if not payload:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    linear = audioop.ulaw2lin(payload, 2)
    samples = struct.unpack(f"<{len(linear) // 2}h", linear)
    return math.sqrt(sum(s * s for s in samples) / len(samples))


@dataclass(frozen=True)
class Packet:
    at: datetime
    payload: bytes


class ListeningCall(RawSipCall):
    """RawSipCall that keeps the audio it receives."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.packets: list[Packet] = []
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ListeningCall:
        await super().__aenter__()
        self._reader = asyncio.create_task(self._read_rtp())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await super().__aexit__(*exc)

    async def _read_rtp(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self._rtp, 2048)
            if len(data) > RTP_HEADER and data[1] & 0x7F == 0:  # PCMU
                async with self._arrived:
                    self.packets.append(Packet(datetime.now(UTC), data[RTP_HEADER:]))
                    self._arrived.notify_all()

    async def wait_audio_until(self, moment: datetime, within: float) -> None:
        """Wait until audio sent at ``moment`` or later has arrived."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(
                lambda: bool(self.packets) and self.packets[-1].at >= moment)

    def heard(self, sound: bytes, *, after: datetime | None = None,
              chunk: int = 160) -> datetime | None:
        """When the caller began to hear ``sound`` (a µ-law file), at or after ``after``: the
        arrival time of the packet holding its first voiced 20 ms chunk, or None."""
        start = next((i for i in range(0, len(sound) - chunk, chunk)
                      if ulaw_rms(sound[i:i + chunk]) > 300), None)
        if start is None:
            return None
        needle = sound[start:start + chunk]
        packets = [p for p in self.packets if after is None or p.at >= after]
        stream = b"".join(p.payload for p in packets)
        found = stream.find(needle)
        if found < 0:
            return None
        offset = 0
        for packet in packets:
            offset += len(packet.payload)
            if offset > found:
                return packet.at
        return None

    def rms_between(self, start: datetime, end: datetime) -> float:
        """The level of what arrived between ``start`` and ``end``."""
        return ulaw_rms(b"".join(p.payload for p in self.packets if start <= p.at <= end))
