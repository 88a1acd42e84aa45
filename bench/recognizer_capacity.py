"""How much caller audio the recognition thread pool gets through, by feed size and streams.

    .venv/bin/python -m bench.recognizer_capacity [--streams 40,80] [--chunk-ms 20,60,100]

S streaming recognizers (the real StreamingRecognizer, Korean model, menu grammar, the shared
thread pool) are fed as fast as they go, ``--chunk-ms`` of audio per ``feed`` call; the
result is audio seconds decoded per wall second, i.e. how many real-time calls the process
could carry. The IVR feeds one 20 ms AudioSocket frame per call.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.audiosocket_caller import line_noise
from bench.metrics import host_busy_seconds, machine_description
from bench.speech_turns import GRAMMAR, LANG, PHRASES, trim_silence
from speech.grammar import LanguageGrammars
from speech.models import SpeechModels
from speech.prompts import LanguagePack
from speech.recognizer import BYTES_PER_SECOND, StreamingRecognizer
from speech.tts import PromptSynthesizer


async def stream(model: object, grammar: str | None, audio: bytes, chunk: int) -> None:
    rec = StreamingRecognizer(model, grammar, no_speech_timeout=None, max_utterance=None)
    for i in range(0, len(audio), chunk):
        update = await rec.feed(audio[i : i + chunk])
        if update is not None and update.is_final:
            await rec.reset()


async def run(args: argparse.Namespace, cache_dir: str) -> None:
    models = SpeechModels({}, installed_root=None)
    await models.load()
    model = models.model(LANG)
    grammar = LanguageGrammars(LanguagePack.load(LANG), model).json(GRAMMAR)
    synth = PromptSynthesizer(Path(cache_dir))
    noise = b"".join(line_noise(16, 50, random.Random(1)))
    audio = b"".join([noise + trim_silence(await synth.audio(LANG, None, p)) for p in PHRASES])
    print(f"machine: {machine_description()}; switch interval {sys.getswitchinterval()} s")
    print(f"each stream: {len(audio) / BYTES_PER_SECOND:.1f} s of audio")
    for chunk_ms in args.chunk_ms:
        for streams in args.streams:
            chunk = chunk_ms * BYTES_PER_SECOND // 1000
            wall, cpu, host = time.monotonic(), time.process_time(), host_busy_seconds()
            await asyncio.gather(*(stream(model, grammar, audio, chunk) for _ in range(streams)))
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu
            other = max(0.0, host_busy_seconds() - host - cpu)
            print(f"{chunk_ms:>4} ms per feed, {streams:>3} streams: "
                  f"{streams * len(audio) / BYTES_PER_SECOND / wall:6.1f} x real time, "
                  f"process CPU {100 * cpu / wall:.0f} %, rest of the host "
                  f"{100 * other / wall:.0f} %", flush=True)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=_ints, default=[40, 80])
    parser.add_argument("--chunk-ms", type=_ints, default=[20, 60, 100])
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval (s)")
    args = parser.parse_args(argv)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        asyncio.run(run(args, tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
