"""What the greeting makes of spoken requests: the intake's speech path, without the phone line.

    .venv/bin/python -m bench.intake_speech [--lang ko] [--json PATH]

``bench.intake`` places real calls; one of its callers says "민원 조회" at the greeting and was
sent to the queue (heard as "민원 여덟"). This bench replays that caller's audio, and other
requests, through the same speech path without Asterisk, so that a change to the greeting's
grammar or to how an utterance is read can be measured in seconds on many recordings:

- each phrase is synthesised by espeak-ng (as the intake bench's callers are) at three speeds
  (the language pack's rate and 20 words a minute either side), trimmed, laid over line noise
  (``bench.load_calls.NOISE_AMPLITUDE``, two noise seeds) 0.3 s or 2.0 s after the recognizer
  starts listening (the intake bench's callers speak 2 s after the answer, while the greeting
  plays), each also 10 and 20 ms later (``SHIFTS``), and passed through G.711 u-law and
  back, as the line does: 36 recordings a phrase;
- a recognizer from ``SpeechStack.recognizer(lang, grammar="intake")`` (the greeting's, with
  the service's endpointing settings) hears it in 20 ms frames, and ``SpeechStack.understand``
  reads the final result, as ``ivr.voice`` does;
- the greeting's own state machine (``ivr.flows.menu.CallFlow``, a Korean resident calling)
  decides: **status** (asks for the case number: a status request understood), **number**
  (a case number heard: read back), **agent** (the caller asked for a person), **info**
  (service information), **queue** (nothing understood or nothing heard: the caller joins the
  queue, which is also where a request for a person ends).

The figures are espeak-ng's Korean, which the model hears far worse than a person's voice
(``python -m speech.measure``): they compare versions of the greeting, they do not say how
often a resident is understood.
"""

from __future__ import annotations

import argparse
import asyncio
import audioop
import hashlib
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.audiosocket_caller import line_noise
from bench.load_calls import NOISE_AMPLITUDE, trim_silence
from bench.metrics import machine_description
from crm.telephony.steps import IntentChosen
from ivr.flows.menu import Begin, CallFlow, Collect, Log, Route, Speech
from speech.grammar import build_grammars
from speech.models import SpeechModels
from speech.prompts import load_all
from speech.settings import SpeechSettings
from speech.stack import SpeechStack
from speech.tts import PromptSynthesizer, to_telephone_pcm

FRAME = 320
RATE = 8000
LEADS = (0.3, 2.0)
SHIFTS = (0.0, 0.01, 0.02)
"""Where the words fall against the model's 30 ms decoding frames changes what is heard (a
call over the line is not aligned like a file): each lead is also tried 10 and 20 ms later."""
SEEDS = (7, 11)
RATE_STEPS = (-20, 0, 20)
TAIL_S = 3.0

PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "ko": (
        ("민원 조회", "status"),
        ("민원 확인", "status"),
        ("접수 번호 조회", "status"),
        ("진행 상황 알려주세요", "status"),
        ("처리 결과", "status"),
        ("상담원 연결해 주세요", "agent"),
        ("상담원", "agent"),
        ("상담원 바꿔 주세요", "agent"),
        ("직원 연결해 주세요", "agent"),
        ("이, 육, 일, 이, 공, 육, 공, 공, 공, 일, 구", "number"),
        ("", "queue"),
    ),
}
"""(words, what the greeting should make of them); "" is line noise only. A request for a
person is right as "agent" or "queue" (both reach a person at once)."""
HARMLESS = {("agent", "queue")}


@dataclass
class Heard:
    phrase: str
    want: str
    outcomes: Counter[str] = field(default_factory=Counter)
    readings: list[str] = field(default_factory=list)

    def right(self) -> int:
        return sum(n for got, n in self.outcomes.items()
                   if got == self.want or (self.want, got) in HARMLESS)


def espeak(text: str, voice: str, rate: int, cache: Path) -> bytes:
    key = cache / (hashlib.sha256(f"{voice}@{rate}:{text}".encode()).hexdigest() + ".pcm")
    if key.exists():
        return key.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "words.wav"
        subprocess.run(["espeak-ng", "-b", "1", "-v", voice, "-s", str(rate), "-w", str(wav),
                        "--stdin"], input=text.encode(), check=True, capture_output=True)
        pcm = to_telephone_pcm(wav)
    key.write_bytes(pcm)
    return pcm


def recording(words: bytes, lead: float, seed: int) -> bytes:
    """Line noise with ``words`` at ``lead`` seconds, through u-law and back."""
    second = b"".join(line_noise(NOISE_AMPLITUDE, 50, random.Random(seed)))
    total = lead + len(words) / (2 * RATE) + TAIL_S
    pcm = bytearray((second * math.ceil(total))[:2 * round(total * RATE)])
    start = 2 * round(lead * RATE)
    pcm[start:start + len(words)] = words
    return audioop.ulaw2lin(audioop.lin2ulaw(bytes(pcm), 2), 2)


async def hear(stack: SpeechStack, lang: str, pcm: bytes) -> Speech | None:
    """The greeting's recognizer on ``pcm``, read as ``ivr.voice.StackRecognition`` does."""
    rec = stack.recognizer(lang, grammar="intake")
    if rec is None:
        raise SystemExit(f"{lang} has no speech recognizer here: {stack.health()}")
    final = None
    for i in range(0, len(pcm), FRAME):
        update = await rec.feed(pcm[i:i + FRAME])
        if update is not None and update.is_final:
            final = update
            break
    if final is None:
        final = await rec.finish()
    if final is None or not final.text.strip():
        return None
    # (getattr: the same command measures trees from before the n best readings)
    readings = getattr(final, "alternatives", ())
    u = stack.understand(lang, "intake", final.text, *((readings,) if readings else ()))
    return Speech(u.text, intent=u.intent, digits=u.digits or "", confidence=final.confidence,
                  language=u.language)


def decide(lang: str, speech: Speech | None) -> str:
    """What the greeting's state machine does with what was heard."""
    flow = CallFlow(default_language=lang, language=lang)
    flow.step(Begin("13600136000", known_language=lang))
    actions = flow.step(speech) if speech is not None else [Route("agent", lang)]
    for action in actions:
        if isinstance(action, Log) and isinstance(action.step, IntentChosen):
            return {"check_status": "status", "service_info": "info"}.get(
                action.step.intent, action.step.intent)
        if isinstance(action, Collect) and action.prompt.startswith(
                ("confirm_case_number", "case_number_invalid")):
            return "number"
    return "queue"


async def run(args: argparse.Namespace) -> tuple[list[Heard], float, int]:
    models = SpeechModels({}, installed_root=None)
    await models.load()
    packs = load_all()
    pack = packs[args.lang]
    cache = Path(tempfile.mkdtemp(prefix="intake-speech-"))
    stack = SpeechStack(SpeechSettings(prewarm_prompts=False), models, packs,
                        build_grammars(models, packs), PromptSynthesizer(cache, packs=packs))
    results: list[Heard] = []
    decode_s = 0.0
    turns = 0
    try:
        for phrase, want in PHRASES[args.lang]:
            heard = Heard(phrase, want)
            for step in RATE_STEPS:
                words = (trim_silence(espeak(phrase, pack.voice, pack.rate + step, cache))
                         if phrase else b"")
                for lead in (lead + shift for lead in LEADS for shift in SHIFTS):
                    for seed in SEEDS:
                        started = time.perf_counter()
                        speech = await hear(stack, args.lang, recording(words, lead, seed))
                        decode_s += time.perf_counter() - started
                        turns += 1
                        heard.outcomes[decide(args.lang, speech)] += 1
                        heard.readings.append(speech.text if speech else "")
            results.append(heard)
    finally:
        await stack.close()
    return results, decode_s, turns


def report(results: list[Heard], decode_s: float, turns: int) -> None:
    print(f"# {machine_description()}")
    print("phrase                                    want     right  outcomes")
    for h in results:
        outcomes = ", ".join(f"{k} {n}" for k, n in h.outcomes.most_common())
        said = h.phrase or "(line noise)"
        print(f"{said:<40}  {h.want:<7} {h.right():>2}/{sum(h.outcomes.values()):<3}"
              f"  {outcomes}")
    by_want: dict[str, Counter[str]] = {}
    for h in results:
        by_want.setdefault(h.want, Counter()).update(h.outcomes)
    print("\nby what was said (outcomes over all its recordings):")
    for want, outcomes in by_want.items():
        total = sum(outcomes.values())
        right = sum(n for got, n in outcomes.items() if got == want or (want, got) in HARMLESS)
        print(f"  {want:<7} {right:>3}/{total:<3} right; "
              + ", ".join(f"{k} {n}" for k, n in outcomes.most_common()))
    print(f"\n{turns} recordings, recognition and reading {decode_s:.1f} s "
          f"({1000 * decode_s / max(1, turns):.0f} ms a recording)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="ko", choices=sorted(PHRASES))
    parser.add_argument("--json", type=Path, help="write every recording's reading here")
    parser.add_argument("--readings", action="store_true", help="print what was heard")
    args = parser.parse_args(argv)
    results, decode_s, turns = asyncio.run(run(args))
    report(results, decode_s, turns)
    if args.readings:
        for h in results:
            print(f"{h.phrase or '(line noise)'}: " + " | ".join(h.readings))
    if args.json:
        args.json.write_text(json.dumps([{"phrase": h.phrase, "want": h.want,
                                          "outcomes": dict(h.outcomes), "readings": h.readings}
                                         for h in results], ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
