"""Speech turn latency under load: the IVR's streaming recognizer vs record-then-recognize.

    .venv/bin/python -m bench.speech_turns --calls 1,5,10,20 --turns 3 [--max-seconds 300]

For each N, N simulated Asterisk callers (``bench.audiosocket_caller``, in a process of their
own) connect over loopback to the real ``MediaServer`` and hold ``--turns`` spoken turns each,
one phase per approach (``bench.turn_handlers``): the IVR's streaming path as SpeechStack
builds it, the same with ``StreamingRecognizer.end_silence`` set (``--quiet``), and
record-then-recognize. Callers say Korean phrases synthesised by espeak-ng, so the "heard"
column (intent right / turns answered) says how well the Korean model understands espeak-ng.

Turn latency = last speech frame sent by the caller -> first non-silent frame back from the
IVR (both timed on the caller's monotonic clock); it includes the answer prompt's own leading
digital silence, which is printed. CPU, RSS and event-loop lag are those of the server process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.audiosocket_caller import FRAME_BYTES, CallerPlan, line_noise, run_callers
from bench.metrics import (
    CpuMeter,
    CpuUsage,
    LoopLagMonitor,
    machine_description,
    peak_rss_mb,
    percentile,
    rss_mb,
)
from bench.turn_handlers import (
    BenchVoice,
    HandlerStats,
    RecordThenRecognize,
    StreamingTurns,
    frame_rms,
)
from crm.telephony.events import CallEventBus
from hotline.settings import Settings
from ivr.audiosocket.server import MediaServer
from ivr.menu_call import IvrDeps
from ivr.settings import AudioSocketSettings
from speech.models import SpeechModels
from speech.recognizer import BYTES_PER_SECOND, default_executor
from speech.stack import SpeechStack

LANG = "ko"
GRAMMAR = "menu"
PHRASES = ("상담원 연결해 주세요", "민원 조회", "운영 시간", "처리 결과")
"""Caller utterances, chosen because the Korean model understands espeak-ng saying them."""
ANSWER_PROMPT = "bench_answer"
ANSWER_TEXT = "알겠습니다."
"""The IVR's prompt (and answer) at every turn: short, to keep the run short."""
BASELINE = "record-then-recognize"
FRAME_SECONDS = 0.02


@dataclass
class Setup:
    stack: SpeechStack
    utterances: tuple[bytes, ...]
    expected: tuple[str | None, ...]
    answer: bytes
    reply_gap: float
    answer_lead_silence: float
    calibration: list[dict[str, Any]]


@dataclass
class PhaseResult:
    approach: str
    calls: int
    turns_planned: int
    latencies: list[float] = field(default_factory=list)
    unanswered: int = 0
    understood: int = 0
    no_input: int = 0
    """Listening turns the IVR ended without words (wall-clock timeout: it fell behind)."""
    cpu: dict[str, float] = field(default_factory=dict)
    rss_mb: float = 0.0
    loop_lag_p95_ms: float = 0.0
    loop_lag_max_ms: float = 0.0
    recognizer_cpu_per_audio_s: float = 0.0
    recognize_call_p95_ms: float = 0.0
    recognize_calls: int = 0
    caller_cpu_percent: float = 0.0
    other_cpu_percent: float = 0.0
    """CPU the rest of the host used meanwhile (% of one core): other load skews results."""
    caller_send_lateness_max_ms: float = 0.0
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None
    texts: dict[str, list[str]] = field(default_factory=dict)


# --- preparation ----------------------------------------------------------------------------


def trim_silence(pcm: bytes, threshold: float = 100.0) -> bytes:
    """The speech between the first and the last frame louder than ``threshold`` RMS."""
    frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    loud = [i for i, f in enumerate(frames) if frame_rms(f) >= threshold]
    return b"".join(frames[loud[0] : loud[-1] + 1]) if loud else b""


def zero_runs(pcm: bytes) -> tuple[float, float, float]:
    """(leading, longest inside, trailing) all-zero audio in seconds, by 20 ms frame."""
    silent = [pcm[i : i + FRAME_BYTES].count(0) == len(pcm[i : i + FRAME_BYTES])
              for i in range(0, len(pcm), FRAME_BYTES)]
    lead = next((i for i, s in enumerate(silent) if not s), len(silent))
    last = max((i for i, s in enumerate(silent) if not s), default=0)
    longest = run = 0
    for s in silent[lead : last + 1]:
        run = run + 1 if s else 0
        longest = max(longest, run)
    return (lead * FRAME_SECONDS, longest * FRAME_SECONDS,
            (len(silent) - 1 - last) * FRAME_SECONDS)


async def endpoint_calibration(stack: SpeechStack, utterances: tuple[bytes, ...],
                               noise: list[bytes], end_silence: float | None,
                               ) -> list[dict[str, Any]]:
    """How much trailing audio the recognizer needs to end an utterance, with no load and no
    wall clock: 0.2 s of line noise, the utterance, then noise, frame by frame as the IVR."""
    rows = []
    for phrase, pcm in zip(PHRASES, utterances, strict=True):
        rec = stack.recognizer(LANG, grammar=GRAMMAR)
        assert rec is not None
        rec.end_silence = end_silence
        lead = b"".join(noise[:10])
        audio = lead + pcm + b"".join(noise[i % len(noise)] for i in range(150))
        speech_end = (len(lead) + len(pcm)) / BYTES_PER_SECOND
        row: dict[str, Any] = {"phrase": phrase, "end_silence": end_silence, "heard": None,
                               "trailing_audio_s": None}
        for i in range(0, len(audio), FRAME_BYTES):
            update = await rec.feed(audio[i : i + FRAME_BYTES])
            if update is not None and update.is_final:
                row |= {"heard": update.text, "reason": update.reason,
                        "trailing_audio_s": round(update.audio_seconds - speech_end, 3)}
                break
        rows.append(row)
    return rows


async def prepare(settings: Settings, args: argparse.Namespace) -> Setup:
    stack = await SpeechStack.start(settings, models=SpeechModels({}, installed_root=None))
    if not stack.has_speech(LANG):
        await stack.close()
        raise SystemExit(f"no Korean model: {stack.models.status()[LANG]['reason']}")
    utterances = tuple([trim_silence(await stack.synth.audio(LANG, None, p)) for p in PHRASES])
    expected = tuple(stack.understand(LANG, GRAMMAR, p).intent for p in PHRASES)
    answer = await stack.synth.audio(LANG, None, ANSWER_TEXT)
    lead, longest_pause, tail = zero_runs(answer)
    noise = line_noise(16, 50, random.Random(7))
    calibration = await endpoint_calibration(stack, utterances, noise, None)
    for quiet in args.quiet_variants:
        calibration += await endpoint_calibration(stack, utterances, noise, quiet)
    # Callers reply once the prompt has really ended: a caller who started during its silent
    # tail would be clipped by record-then-recognize, which only records after the prompt.
    return Setup(stack, utterances, expected, answer, reply_gap=max(longest_pause, tail) + 0.3,
                 answer_lead_silence=lead, calibration=calibration)


# --- one phase ------------------------------------------------------------------------------


class Bench:
    def __init__(self, setup: Setup, args: argparse.Namespace, pool: ProcessPoolExecutor) -> None:
        self.setup = setup
        self.args = args
        self.pool = pool
        stack = setup.stack
        loopback = AudioSocketSettings.model_construct(host="127.0.0.1", port=0)
        self.voices: dict[str, BenchVoice] = {}
        self.handlers: dict[str, StreamingTurns | RecordThenRecognize] = {}
        for quiet in (None, *args.quiet_variants):
            name = "streaming" if quiet is None else f"streaming+quiet{quiet:g}"
            voice = BenchVoice(stack, {ANSWER_PROMPT: setup.answer}, HandlerStats(),
                               end_silence=quiet)
            deps = IvrDeps(bus=CallEventBus(), cases=cast(Any, None),
                           tracker=cast(Any, None), voice=voice, default_language=LANG)
            self.voices[name] = voice
            self.handlers[name] = StreamingTurns(deps, voice.stats, prompt=ANSWER_PROMPT,
                                                 grammar=GRAMMAR)
        self.handlers[BASELINE] = RecordThenRecognize(
            stack, HandlerStats(), lang=LANG, grammar=GRAMMAR, prompt_pcm=setup.answer,
            executor=stack.executor or default_executor(), end_silence=args.end_silence)
        self.servers = {name: MediaServer(loopback, handler)
                        for name, handler in self.handlers.items()}

    def fresh_stats(self, approach: str) -> HandlerStats:
        stats = HandlerStats()
        self.handlers[approach].stats = stats
        if approach in self.voices:
            self.voices[approach].stats = stats
        return stats

    def phase_estimate(self, calls: int) -> float:
        speech = sum(len(u) for u in self.setup.utterances) / len(self.setup.utterances)
        prompt = len(self.setup.answer) / BYTES_PER_SECOND + self.setup.reply_gap
        turns = self.args.turns
        return (self.args.spread + (turns + 1) * prompt
                + turns * (speech / BYTES_PER_SECOND + 1.5) + 3.0)

    async def run_phase(self, approach: str, calls: int, time_left: float) -> PhaseResult:
        result = PhaseResult(approach, calls, calls * self.args.turns)
        estimate = self.phase_estimate(calls)
        if time_left < estimate:
            result.skipped = f"needs ~{estimate:.0f} s, {time_left:.0f} s left of --max-seconds"
            return result
        server = self.servers[approach]
        plan = CallerPlan(
            port=server.bound_port, calls=calls, turns=self.args.turns,
            utterances=self.setup.utterances, start_spread=self.args.spread,
            reply_gap=self.setup.reply_gap, time_limit=min(time_left, 3 * estimate + 30),
            seed=self.args.seed)
        stats = self.fresh_stats(approach)
        meter, lag = CpuMeter(), LoopLagMonitor()
        meter.start()
        lag.start()
        report = await asyncio.get_running_loop().run_in_executor(self.pool, run_callers, plan)
        try:
            async with asyncio.timeout(10):
                await server.wait_idle()
        except TimeoutError:
            result.errors.append("call handlers still running 10 s after the callers left")
        usage = meter.stop()
        lags = await lag.stop()
        self.summarise(result, report, stats, usage, lags)
        return result

    def summarise(self, result: PhaseResult, report: dict[str, Any], stats: HandlerStats,
                  usage: CpuUsage, lags: list[float]) -> None:
        for timing in report["timings"]:
            if timing["latency"] is None:
                result.unanswered += 1
                continue
            result.latencies.append(timing["latency"])
            heard = stats.heard.get(timing["call_id"], [])
            if timing["turn"] < len(heard) and heard[timing["turn"]] is not None:
                result.understood += heard[timing["turn"]] == self.setup.expected[
                    timing["utterance"]]
        result.unanswered += result.turns_planned - len(report["timings"])
        result.errors += report["errors"]
        result.cpu = {"process_percent": usage.percent(usage.process),
                      "loop_thread_percent": usage.percent(usage.loop_thread),
                      "pool_percent": usage.percent(usage.workers),
                      "wall_s": usage.wall}
        result.rss_mb = rss_mb()
        result.loop_lag_p95_ms = 1e3 * percentile(lags, 95)
        result.loop_lag_max_ms = 1e3 * max(lags, default=float("nan"))
        result.recognizer_cpu_per_audio_s = (usage.workers / stats.audio_seconds
                                             if stats.audio_seconds else float("nan"))
        result.recognize_call_p95_ms = 1e3 * percentile(stats.recognize_wall, 95)
        result.recognize_calls = len(stats.recognize_wall)
        result.caller_cpu_percent = (100 * report["cpu_seconds"] / report["wall_seconds"]
                                     if report["wall_seconds"] else float("nan"))
        result.other_cpu_percent = usage.percent(
            usage.host - usage.process - report["cpu_seconds"])
        result.caller_send_lateness_max_ms = 1e3 * max(report["send_lateness"], default=0.0)
        result.texts = stats.texts
        result.no_input = sum(1 for texts in stats.texts.values() for t in texts if not t)


# --- output ---------------------------------------------------------------------------------


def _s(value: float) -> str:
    return f"{value:5.2f}" if value == value else "  -  "


def print_setup(setup: Setup, args: argparse.Namespace) -> None:
    print(f"machine: {machine_description()}; load average at start "
          f"{Path('/proc/loadavg').read_text().split()[0]}")
    print(f"model: {setup.stack.models.status()[LANG]['model_dir']}; grammar '{GRAMMAR}'; "
          f"recognition thread pool: {getattr(default_executor(), '_max_workers', '?')} threads")
    print(f"caller phrases: {', '.join(PHRASES)} (espeak-ng, trimmed, "
          f"{', '.join(f'{len(u) / BYTES_PER_SECOND:.2f}' for u in setup.utterances)} s)")
    print(f"IVR prompt/answer: {ANSWER_TEXT!r} {len(setup.answer) / BYTES_PER_SECOND:.2f} s, "
          f"starts with {1e3 * setup.answer_lead_silence:.0f} ms of digital silence "
          f"(included in every latency); callers reply {setup.reply_gap:.2f} s after its "
          "last non-silent frame")
    print(f"record-then-recognize: ends after {args.end_silence:.1f} s below 300 RMS, "
          "decodes with a fresh KaldiRecognizer and the same grammar")
    print("end of utterance with no load: trailing audio needed after the last speech frame")
    for row in setup.calibration:
        trailing = row["trailing_audio_s"]
        how = ("vosk endpointer" if row["end_silence"] is None
               else f"end_silence {row['end_silence']:g} s")
        print(f"  {how:<19} {row['phrase']}: heard {row['heard']!r} after "
              f"{'-' if trailing is None else f'{trailing:.2f} s'} ({row.get('reason')})")


def print_table(results: list[PhaseResult]) -> None:
    print()
    print(f"{'calls':>5}  {'approach':<21} {'answered':>8} {'heard':>6} {'no in':>5}  "
          f"{'p50 s':>5} {'p95 s':>5} {'max s':>5}  {'CPU/audio':>9}  "
          f"{'CPU % loop+pool':>15}  {'RSS MB':>6}  {'lag p95/max ms':>14}  "
          f"{'vosk call p95 ms':>16}  {'other %':>7}")
    by_n: dict[int, dict[str, PhaseResult]] = {}
    for r in results:
        by_n.setdefault(r.calls, {})[r.approach] = r
        if r.skipped:
            print(f"{r.calls:>5}  {r.approach:<21} skipped: {r.skipped}")
            continue
        lat = r.latencies
        cpu = r.cpu
        print(f"{r.calls:>5}  {r.approach:<21} {len(lat):>4}/{r.turns_planned:<3} "
              f"{r.understood:>3}/{len(lat):<3}{r.no_input:>5}  {_s(percentile(lat, 50))} "
              f"{_s(percentile(lat, 95))} {_s(max(lat, default=float('nan')))}  "
              f"{r.recognizer_cpu_per_audio_s:>9.3f}  "
              f"{cpu['process_percent']:>4.0f} = {cpu['loop_thread_percent']:>3.0f}+"
              f"{cpu['pool_percent']:>3.0f}    {r.rss_mb:>6.0f}  "
              f"{r.loop_lag_p95_ms:>6.1f}/{r.loop_lag_max_ms:<7.1f}  "
              f"{r.recognize_call_p95_ms:>9.1f} (x{r.recognize_calls:<5}) "
              f"{max(0.0, r.other_cpu_percent):>6.0f}")
    print("answered: turns the IVR answered / planned; heard: right intent / answered; "
          "no in: turns that ended\nwithout words; p50/p95/max: turn latency; CPU/audio: "
          "pool CPU s per audio s given to vosk;\nCPU %: server process (100 = one core) = "
          "event-loop thread + other threads; lag: event-loop\nwake-up lateness; vosk call: "
          "wall time per recognizer call (xcount); other %: rest of the host")
    print()
    for n, by_approach in by_n.items():
        base = by_approach.get(BASELINE)
        if not base or not base.latencies:
            continue
        for name, ours in by_approach.items():
            if name == BASELINE or not ours.latencies:
                continue
            p50 = percentile(base.latencies, 50) / percentile(ours.latencies, 50)
            p95 = percentile(base.latencies, 95) / percentile(ours.latencies, 95)
            met = percentile(ours.latencies, 95) < 0.7 and p95 >= 2
            print(f"N={n:<3} {name:<21} x{p50:.2f} faster than {BASELINE} at p50, "
                  f"x{p95:.2f} at p95: {'meets' if met else 'misses'} the target "
                  "(p95 < 0.7 s and >= 2x)")
    ran = [r for r in results if not r.skipped]
    if ran:
        print(f"caller process: CPU <= {max(r.caller_cpu_percent for r in ran):.0f} %, "
              f"send schedule late by <= "
              f"{max(r.caller_send_lateness_max_ms for r in ran):.0f} ms")
    busy = [r for r in ran if r.other_cpu_percent > 20]
    if busy:
        print(f"WARNING: other processes used up to {max(r.other_cpu_percent for r in busy):.0f}"
              " % of a core during some phases ('other %'); those figures are not clean")
    for r in results:
        for error in r.errors[:5]:
            print(f"  N={r.calls} {r.approach}: {error}")


# --- main -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> tuple[Setup, list[PhaseResult]]:
    started = time.monotonic()
    results: list[PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-speech-") as tmp:
        settings = Settings(state_dir=Path(tmp), speech={"prewarm_prompts": False})
        setup = await prepare(settings, args)
        try:
            print_setup(setup, args)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                await asyncio.get_running_loop().run_in_executor(pool, int)  # start it now
                bench = Bench(setup, args, pool)
                for server in bench.servers.values():
                    await server.start()
                try:
                    for calls in args.calls:
                        for approach in bench.servers:
                            left = args.max_seconds - (time.monotonic() - started)
                            print(f"... N={calls} {approach}", file=sys.stderr, flush=True)
                            results.append(await bench.run_phase(approach, calls, left))
                finally:
                    for server in bench.servers.values():
                        await server.close()
            print_table(results)
            print(f"\nserver process peak RSS {peak_rss_mb():.0f} MB; "
                  f"run took {time.monotonic() - started:.0f} s")
        finally:
            await setup.stack.close()
    return setup, results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,5,10,20",
                        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
                        help="concurrent calls per phase, comma-separated (default 1,5,10,20)")
    parser.add_argument("--turns", type=int, default=3, help="spoken turns per call")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="skip phases that would not finish within this (default 300)")
    parser.add_argument("--spread", type=float, default=2.0,
                        help="calls of a phase start evenly over this many seconds")
    parser.add_argument("--end-silence", type=float, default=1.0,
                        help="record-then-recognize: silence that ends a recording (s)")
    parser.add_argument("--quiet", dest="quiet_variants", default="0.4",
                        type=lambda s: [float(x) for x in s.split(",") if x.strip()],
                        help="also run the IVR path with StreamingRecognizer.end_silence set "
                             "to each of these seconds (comma-separated; '' for none; "
                             "default 0.4)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="PATH", help="also write the raw results here")
    args = parser.parse_args(argv)
    if not args.calls or min(args.calls) < 1 or args.turns < 1:
        parser.error("--calls and --turns must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    setup, results = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": machine_description(), "calibration": setup.calibration,
             "results": [asdict(r) for r in results]}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
