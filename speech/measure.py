"""Measure the speech stack on this machine: ``python -m speech.measure [--lang ko] [--json]``.

Reports model load time and memory, memory per recognizer, real-time factor with a grammar
and with free decoding, and how many espeak-ng phrases the recognizer gets right per
grammar kind. The test utterances are synthetic (espeak-ng), so the accuracy figures say how
well this model understands espeak-ng, not how well it understands callers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from speech.grammar import GRAMMAR_KINDS, GrammarKind, LanguageGrammars, pack_phrases
from speech.models import SpeechModels
from speech.prompts import LanguagePack
from speech.recognizer import BYTES_PER_SECOND, StreamingRecognizer
from speech.tts import PromptSynthesizer
from speech.understanding import understand

FRAME_BYTES = 320
LEAD_SILENCE = bytes(BYTES_PER_SECOND // 5)
TRAIL_SILENCE = bytes(BYTES_PER_SECOND * 3 // 2)

DIGIT_UTTERANCES = {
    "ko": ["공 일 공", "일 이 삼 사", "오 육 칠 팔", "구 영", "하나 둘 셋 넷", "다섯 여섯",
           "일곱 여덟 아홉"],
    "cmn": ["幺三五", "二零二六", "四五六七", "八九零"],
    "en": ["one two three", "four five six", "seven eight nine zero", "double five"],
}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def meaning(kind: GrammarKind, text: str, lang: str) -> Any:
    u = understand(text, lang, kind)
    return {"menu": u.intent, "status_menu": u.intent, "yes_no": u.yes, "digits": u.digits,
            "rating": u.rating, "language": u.language}[kind]


async def recognize(model: Any, grammar: str | None, pcm: bytes) -> tuple[str, bool, bool]:
    """(final text, a partial came before the final, the final came from the endpointer)."""
    rec = StreamingRecognizer(model, grammar, no_speech_timeout=None, max_utterance=None)
    audio = LEAD_SILENCE + pcm + TRAIL_SILENCE
    saw_partial = False
    for i in range(0, len(audio), FRAME_BYTES):
        update = await rec.feed(audio[i : i + FRAME_BYTES])
        if update is None:
            continue
        if not update.is_final:
            saw_partial = True
            continue
        return update.text, saw_partial, update.reason == "endpoint"
    final = await rec.finish()
    return (final.text if final else ""), saw_partial, False


def real_time_factor(model: Any, grammar: str | None, clips: list[bytes]) -> float:
    """CPU seconds per audio second, feeding 20 ms frames straight into vosk."""
    from vosk import KaldiRecognizer

    audio_seconds = 0.0
    cpu = 0.0
    for pcm in clips:
        rec = (KaldiRecognizer(model, 8000, grammar) if grammar
               else KaldiRecognizer(model, 8000))
        audio = LEAD_SILENCE + pcm + TRAIL_SILENCE
        started = time.process_time()
        for i in range(0, len(audio), FRAME_BYTES):
            if not rec.AcceptWaveform(audio[i : i + FRAME_BYTES]):
                rec.PartialResult()
        rec.FinalResult()
        cpu += time.process_time() - started
        audio_seconds += len(audio) / BYTES_PER_SECOND
    return cpu / audio_seconds


async def measure(lang: str, models: SpeechModels, cache_dir: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"lang": lang}
    rss_before = rss_mb()
    started = time.perf_counter()
    await models.load()
    report["model_load_seconds"] = round(time.perf_counter() - started, 2)
    report["model_rss_mb"] = round(rss_mb() - rss_before, 1)
    report["status"] = models.status()[lang]
    if not models.has_speech(lang):
        return report
    model = models.model(lang)
    pack = LanguagePack.load(lang)
    grammars = LanguageGrammars(pack, model)

    from vosk import KaldiRecognizer

    before = rss_mb()
    recognizers = [KaldiRecognizer(model, 8000, grammars.json("menu")) for _ in range(10)]
    report["rss_mb_per_grammar_recognizer"] = round((rss_mb() - before) / 10, 2)
    del recognizers

    synth = PromptSynthesizer(cache_dir)
    accuracy: dict[str, Any] = {}
    clips: list[bytes] = []
    for kind in GRAMMAR_KINDS:
        utterances = (DIGIT_UTTERANCES.get(lang, []) if kind == "digits"
                      else pack_phrases(pack, kind))
        rows = []
        for phrase in utterances:
            pcm = await synth.audio(lang, None, phrase)
            clips.append(pcm)
            text, partial_first, endpointed = await recognize(model, grammars.json(kind), pcm)
            expected, got = meaning(kind, phrase, lang), meaning(kind, text, lang)
            rows.append({"said": phrase, "heard": text, "expected": expected, "got": got,
                         "ok": expected == got, "partial_first": partial_first,
                         "endpointed": endpointed})
        accuracy[kind] = {"correct": sum(r["ok"] for r in rows), "total": len(rows),
                          "rows": rows}
    report["accuracy"] = accuracy
    report["rtf_grammar_menu"] = round(real_time_factor(model, grammars.json("menu"), clips), 3)
    report["rtf_free"] = round(real_time_factor(model, None, clips[:8]), 3)
    return report


def _print(report: dict[str, Any]) -> None:
    print(f"language {report['lang']}: {report['status']['reason']}")
    if "accuracy" not in report:
        return
    print(f"  model load {report['model_load_seconds']} s, +{report['model_rss_mb']} MB RSS; "
          f"{report['rss_mb_per_grammar_recognizer']} MB per recognizer with the menu grammar")
    print(f"  real-time factor: menu grammar {report['rtf_grammar_menu']}, "
          f"free decoding {report['rtf_free']}")
    for kind, acc in report["accuracy"].items():
        print(f"  {kind}: {acc['correct']}/{acc['total']} understood")
        for row in acc["rows"]:
            mark = "ok " if row["ok"] else "BAD"
            print(f"    {mark} {row['said']!r} -> {row['heard']!r} ({row['got']!r})"
                  f"{'' if row['partial_first'] else ' [no partial]'}"
                  f"{'' if row['endpointed'] else ' [no endpoint]'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="ko")
    parser.add_argument("--model", type=Path, help="model directory (default: as configured)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    models = SpeechModels({args.lang: args.model} if args.model else {})
    with tempfile.TemporaryDirectory(prefix="speech-measure-") as tmp:
        report = asyncio.run(measure(args.lang, models, Path(tmp)))
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
