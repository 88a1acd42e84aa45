"""Prompt audio: operator recordings when present, else espeak-ng, cached on disk and in memory.

Every prompt becomes 8 kHz mono signed 16-bit little-endian PCM, the AudioSocket format.
Sources, first match wins:

1. an operator recording ``<override_dir>/<lang>/<prompt_id>.wav`` (any rate or channel
   count; ``<prompt_id>.keys.wav`` for the keypad-only wording), used only when the text is
   exactly that static prompt's text, never for a prompt with call data in it;
2. espeak-ng with the language pack's voice and rate, low-pass filtered and resampled with
   pydub, cached on disk as ``<cache_dir>/<lang>/<sha256(lang, voice, rate, text)>.pcm``.

A bounded LRU keeps recent audio in memory. espeak-ng runs as an asyncio subprocess and the
pydub conversion in a separate converter process (:func:`converter`): pydub's low-pass
filter is a Python loop over the samples, 84 ms of the GIL for a 10 s prompt, which in a
worker thread stalled the event loop that paces every call's audio. Concurrent requests for
the same text share one synthesis, and a call's request goes ahead of the start-up prewarm
(:class:`Lanes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import hashlib
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from speech.languages import check_language
from speech.prompts import STAGES, LanguagePack

log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 8000
SAMPLE_WIDTH: Final = 2
TELEPHONE_BAND_HZ: Final = 3400
CACHE_FORMAT: Final = "pcm-s16le-8k-v1"
ESPEAK_TIMEOUT: Final = 60.0
_converter: ProcessPoolExecutor | None = None
_converter_lock = threading.Lock()


def converter() -> ProcessPoolExecutor:
    """The process that turns WAV files into telephone PCM (one per service, started on
    first use with ``spawn``: a fresh interpreter, not a fork of a threaded service)."""
    global _converter
    with _converter_lock:
        if _converter is None:
            _converter = ProcessPoolExecutor(max_workers=1,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_die_with_parent,
                                             initargs=(os.getpid(),))
        return _converter


PR_SET_PDEATHSIG: Final = 1


def _die_with_parent(parent: int) -> None:
    """The converter's initializer: it is killed when the service that started it dies, even
    by ``kill -9`` (Linux's parent-death signal), instead of living on as an orphan that
    holds the service's output open. The signal follows the thread that started the worker:
    :func:`convert` submits from the event loop's thread, which lives as long as the service
    (and a worker lost early is started again)."""
    with contextlib.suppress(OSError, AttributeError):  # no prctl (not Linux): as before
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the service died before the signal was asked for
        os._exit(0)


async def convert(wav_path: Path) -> bytes:
    """:func:`to_telephone_pcm` in the converter process (started again if it died)."""
    global _converter
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(converter(), to_telephone_pcm, wav_path)
    except BrokenProcessPool:
        with _converter_lock:
            _converter = None
        return await loop.run_in_executor(converter(), to_telephone_pcm, wav_path)


class SynthesisError(RuntimeError):
    """espeak-ng or sox failed, or a recording could not be read."""


@dataclass(slots=True)
class SynthesisStats:
    memory_hits: int = 0
    disk_hits: int = 0
    synthesized: int = 0
    recordings: int = 0


def _audio_segment() -> Any:
    with warnings.catch_warnings():
        # pydub imports audioop (deprecated since 3.11) and warns that ffmpeg is missing,
        # which only matters for compressed formats; WAV and raw PCM need neither.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        from pydub import AudioSegment
    return AudioSegment


def to_telephone_pcm(wav_path: Path) -> bytes:
    """Any PCM WAV file -> 8 kHz mono s16le, band-limited first so resampling does not alias."""
    segment = _audio_segment().from_wav(str(wav_path)).set_channels(1)
    if segment.frame_rate > SAMPLE_RATE:
        segment = segment.low_pass_filter(TELEPHONE_BAND_HZ)
    segment = segment.set_sample_width(SAMPLE_WIDTH).set_frame_rate(SAMPLE_RATE)
    return bytes(segment.raw_data)


def pcm_seconds(pcm: bytes) -> float:
    return len(pcm) / (SAMPLE_RATE * SAMPLE_WIDTH)


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write_file_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _MemoryCache:
    def __init__(self, max_bytes: int) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self.max_bytes = max_bytes

    def get(self, key: str) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._items[key] = value
        self._bytes += len(value)
        while self._bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= len(evicted)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(eq=False, slots=True)
class Ticket:
    """One synthesis waiting for a slot; ``background`` until a caller asks for it too."""

    background: bool
    order: int
    ready: asyncio.Future[None] | None = None


class Lanes:
    """At most ``slots`` syntheses at once, callers' requests served before the prewarm's.

    A semaphore is first come, first served: at start-up the prewarm queues a hundred static
    prompts, and a caller whose status read-back needs espeak-ng would wait behind all of
    them. Here a background ticket gets a slot only while no caller's ticket waits; a caller
    who asks for a text the prewarm has queued promotes that ticket (``Ticket.background``).
    """

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: list[Ticket] = []
        self._order = 0

    def ticket(self, *, background: bool) -> Ticket:
        self._order += 1
        return Ticket(background, self._order)

    @contextlib.asynccontextmanager
    async def slot(self, ticket: Ticket) -> AsyncIterator[None]:
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            ticket.ready = asyncio.get_running_loop().create_future()
            self._waiting.append(ticket)
            try:
                await ticket.ready
            except BaseException:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                elif ticket.ready.done() and not ticket.ready.cancelled():
                    self._release()  # handed a slot just as we were cancelled: pass it on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            ticket = min(self._waiting, key=lambda t: (t.background, t.order))
            self._waiting.remove(ticket)
            if ticket.ready is not None and not ticket.ready.done():  # not cancelled
                ticket.ready.set_result(None)
                return
        self._free += 1

    @property
    def waiting(self) -> int:
        return len(self._waiting)


class PromptSynthesizer:
    """Prompt text -> telephone PCM, with recordings, disk cache, memory LRU and single flight."""

    def __init__(
        self,
        cache_dir: Path,
        override_dir: Path | None = None,
        *,
        packs: Mapping[str, LanguagePack] | None = None,
        memory_bytes: int = 64 * 1024 * 1024,
        max_concurrent: int = 2,
        espeak: str = "espeak-ng",
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.override_dir = Path(override_dir) if override_dir else None
        self._packs: dict[str, LanguagePack] = dict(packs or {})
        self._memory = _MemoryCache(memory_bytes)
        self._inflight: dict[str, asyncio.Task[bytes]] = {}
        self._tickets: dict[str, Ticket] = {}
        """Key -> the slot ticket of its synthesis in flight (a caller promotes it)."""
        self._lanes = Lanes(max_concurrent)
        self._espeak = espeak
        self.stats = SynthesisStats()

    def _pack(self, lang: str) -> LanguagePack:
        pack = self._packs.get(lang)
        if pack is None:
            pack = self._packs[lang] = LanguagePack.load(lang)
        return pack

    def cache_key(self, lang: str, text: str, rate: int | None = None) -> str:
        pack = self._pack(lang)
        material = "\0".join((CACHE_FORMAT, lang, f"{pack.voice}@{rate or pack.rate}", text))
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def recording_path(self, lang: str, prompt_id: str | None, text: str) -> Path | None:
        """The operator recording that replaces this text, if one exists."""
        if self.override_dir is None or prompt_id is None:
            return None
        stem = self._pack(lang).recording_name(prompt_id, text)
        if stem is None:
            return None
        path = self.override_dir / lang / f"{stem}.wav"
        return path if path.is_file() else None

    async def audio(self, lang: str, prompt_id: str | None, text: str, *,
                    background: bool = False) -> bytes:
        """8 kHz mono s16le PCM for ``text``; ``prompt_id`` lets a recording replace it.
        ``background``: no caller waits for it (prewarm), calls' requests go first."""
        lang = check_language(lang)
        recording = self.recording_path(lang, prompt_id, text)
        if recording is not None:
            stat = recording.stat()
            key = f"rec:{recording}:{stat.st_mtime_ns}:{stat.st_size}"
            return await self._cached(key, lambda: self._load_recording(recording), None)
        rate = self._pack(lang).rate_for(prompt_id)
        key = self.cache_key(lang, text, rate)
        disk = self.cache_dir / lang / f"{key}.pcm"
        ticket = self._tickets.get(key)
        if ticket is not None and not background:
            ticket.background = False  # a caller waits for what the prewarm queued
        elif ticket is None:
            ticket = self._lanes.ticket(background=background)
        return await self._cached(
            key, lambda: self._synthesize(lang, text, disk, rate, ticket=ticket), disk, ticket)

    async def _cached(self, key: str, produce: Any, disk: Path | None,
                      ticket: Ticket | None = None) -> bytes:
        pcm = self._memory.get(key)
        if pcm is not None:
            self.stats.memory_hits += 1
            return pcm
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._produce(key, produce, disk))
            self._inflight[key] = task
            if ticket is not None:
                self._tickets[key] = ticket
            task.add_done_callback(functools.partial(self._forget, key))
        return await asyncio.shield(task)

    def _forget(self, key: str, _task: object) -> None:
        self._inflight.pop(key, None)
        self._tickets.pop(key, None)

    async def _produce(self, key: str, produce: Any, disk: Path | None) -> bytes:
        if disk is not None:
            pcm = await asyncio.to_thread(_read_file, disk)
            if pcm is not None:
                self.stats.disk_hits += 1
                self._memory.put(key, pcm)
                return pcm
        pcm = await produce()
        self._memory.put(key, pcm)
        return pcm

    async def _load_recording(self, path: Path) -> bytes:
        try:
            pcm = await convert(path)
        except Exception as exc:
            raise SynthesisError(f"cannot read recording {path}: {exc}") from exc
        self.stats.recordings += 1
        log.info("prompt recording %s: %.1f s", path, pcm_seconds(pcm))
        return pcm

    async def _synthesize(self, lang: str, text: str, disk: Path,
                          rate: int | None = None, *, ticket: Ticket) -> bytes:
        pack = self._pack(lang)
        async with self._lanes.slot(ticket):
            started = time.perf_counter()
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix=".espeak-") as tmp:
                wav = Path(tmp) / "out.wav"
                await self._run([self._espeak, "-b", "1", "-v", pack.voice,
                                 "-s", str(rate or pack.rate), "-w", str(wav), "--stdin"],
                                text.encode("utf-8"))
                try:
                    pcm = await convert(wav)
                except Exception as exc:
                    raise SynthesisError(f"espeak-ng output unreadable: {exc}") from exc
            await asyncio.to_thread(_write_file_atomic, disk, pcm)
        self.stats.synthesized += 1
        log.debug("synthesised %s %.1f s of audio in %.2f s: %.40r", lang, pcm_seconds(pcm),
                  time.perf_counter() - started, text)
        return pcm

    async def _run(self, argv: list[str], stdin: bytes) -> bytes:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError as exc:
            raise SynthesisError(f"{argv[0]} is not installed (apt-get install {argv[0]})") from exc
        try:
            async with asyncio.timeout(ESPEAK_TIMEOUT):
                out, err = await proc.communicate(stdin)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            raise SynthesisError(f"{argv[0]} failed ({proc.returncode}): "
                                 f"{err.decode(errors='replace').strip()}")
        return out

    # -- batch helpers --------------------------------------------------------------------

    async def prewarm(self, pack: LanguagePack) -> int:
        """Synthesise every static prompt of ``pack`` (both wordings) and the stage-only
        status for each stage; returns how many distinct prompts are ready."""
        self._packs.setdefault(pack.lang, pack)
        items: dict[str, str | None] = {}
        for (pid, _speech), text in pack.static_texts().items():
            items.setdefault(text, pid)
        for stage in STAGES:
            items.setdefault(pack.render("status_stage_only", stage=stage), None)
        total = len(items)
        started = time.perf_counter()
        before = self.stats.synthesized
        done = 0

        async def one(text: str, pid: str | None) -> None:
            nonlocal done
            await self.audio(pack.lang, pid, text, background=True)
            done += 1
            if done % 10 == 0 and done < total:
                log.info("prewarm %s: %d/%d prompts ready", pack.lang, done, total)

        await asyncio.gather(*(one(text, pid) for text, pid in items.items()))
        log.info("prewarm %s: %d prompts ready (%d synthesised) in %.1f s", pack.lang, total,
                 self.stats.synthesized - before, time.perf_counter() - started)
        return total

    async def close(self) -> None:
        """Cancel syntheses still running (service shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


FIRST_PROMPTS: Final[tuple[str, ...]] = ("greeting",)
"""Prompts every call plays at once: synthesised first, in every language, so a call right
after start-up does not wait behind the rest of the prewarm."""


async def prewarm_all(synth: PromptSynthesizer, packs: Iterable[LanguagePack]) -> int:
    """Prewarm several languages one after another (keeps start-up CPU use bounded), the
    prompts of FIRST_PROMPTS of every language before anything else."""
    packs = list(packs)
    for pack in packs:
        for pid in FIRST_PROMPTS:
            for speech in (True, False):
                await synth.audio(pack.lang, pid, pack.render(pid, speech=speech))
    total = 0
    for pack in packs:
        total += await synth.prewarm(pack)
    return total

