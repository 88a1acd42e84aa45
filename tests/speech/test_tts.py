"""PromptSynthesizer with the real espeak-ng, pydub and sox."""

from __future__ import annotations

import asyncio
import math
import struct
import subprocess
import tomllib
import wave
from pathlib import Path

import pytest

from speech.prompts import PROMPT_IDS, LanguagePack
from speech.tts import PromptSynthesizer, pcm_seconds

pytestmark = pytest.mark.usefixtures("espeak")


def peak(pcm: bytes) -> int:
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    return max(abs(s) for s in samples)


@pytest.mark.parametrize(
    ("lang", "text"),
    [("cmn", "您好，请说出您的工单号。"), ("en", "Please say your case number."),
     ("ko", "상담원을 연결해 드리겠습니다.")],
)
async def test_speech_is_8khz_pcm_of_plausible_length(prompt_cache: Path, lang: str,
                                                      text: str) -> None:
    synth = PromptSynthesizer(prompt_cache)
    pcm = await synth.audio(lang, None, text)
    assert len(pcm) % 2 == 0
    assert 1.0 < pcm_seconds(pcm) < 6.0, pcm_seconds(pcm)
    assert peak(pcm) > 3000  # not silence


def test_mandarin_voice_reads_digits_in_mandarin(espeak: str) -> None:
    """Debian's espeak-ng "cmn" voice reads 零 as "ling two" (switching to English for the
    tone number); the pack's voice, cmn-latn-pinyin, stays in Mandarin."""
    def phonemes(voice: str) -> str:
        return subprocess.run([espeak, "-q", "-x", "-v", voice, "幺二零九"], check=True,
                              capture_output=True, text=True).stdout

    assert "(en)" in phonemes("cmn")
    voice = LanguagePack.load("cmn").voice
    assert voice == "cmn-latn-pinyin" and "(en)" not in phonemes(voice)


async def test_memory_and_disk_cache(prompt_cache: Path) -> None:
    first = PromptSynthesizer(prompt_cache)
    text = "Cache test one."
    pcm = await first.audio("en", None, text)
    again = await first.audio("en", None, text)
    assert again == pcm and first.stats.memory_hits == 1
    second = PromptSynthesizer(prompt_cache)
    assert await second.audio("en", None, text) == pcm
    assert (second.stats.disk_hits, second.stats.synthesized) == (1, 0)
    key = first.cache_key("en", text)
    assert (prompt_cache / "en" / f"{key}.pcm").read_bytes() == pcm


async def test_concurrent_requests_synthesise_once(tmp_path: Path) -> None:
    synth = PromptSynthesizer(tmp_path)
    results = await asyncio.gather(*(synth.audio("en", None, "Same words.") for _ in range(5)))
    assert len(set(results)) == 1
    assert synth.stats.synthesized == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_synthesis(tmp_path: Path) -> None:
    synth = PromptSynthesizer(tmp_path)
    waiter = asyncio.create_task(synth.audio("en", None, "Cancelled caller."))
    other = asyncio.create_task(synth.audio("en", None, "Cancelled caller."))
    await asyncio.sleep(0)  # both are waiting on the one espeak-ng run
    waiter.cancel()
    assert len(await other) > 0
    with pytest.raises(asyncio.CancelledError):
        await waiter


def write_wav(path: Path, *, rate: int, channels: int, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = bytearray()
    for n in range(int(rate * seconds)):
        sample = int(8000 * math.sin(2 * math.pi * 440 * n / rate))
        frames += struct.pack("<h", sample) * channels
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(bytes(frames))


async def test_operator_recording_replaces_static_prompts_only(tmp_path: Path) -> None:
    overrides = tmp_path / "prompts"
    write_wav(overrides / "en" / "goodbye.wav", rate=16000, channels=2, seconds=1.0)
    write_wav(overrides / "en" / "confirm_case_number.wav", rate=8000, channels=1, seconds=1.0)
    synth = PromptSynthesizer(tmp_path / "cache", overrides)
    pack = LanguagePack.load("en")
    recorded = await synth.audio("en", "goodbye", pack.render("goodbye"))
    assert pcm_seconds(recorded) == pytest.approx(1.0, abs=0.01)
    assert synth.stats.recordings == 1 and synth.stats.synthesized == 0
    # a dynamic prompt is never replaced, nor is other text under a static prompt's id
    await synth.audio("en", "confirm_case_number",
                      pack.render("confirm_case_number", digits="12"))
    await synth.audio("en", "goodbye", "Something the operator did not record.")
    assert synth.stats.recordings == 1 and synth.stats.synthesized == 2


async def test_prewarm_synthesises_each_distinct_static_prompt_once(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "speech" / "language_packs" / "en.toml").read_text()
    data = tomllib.loads(text)
    data["prompts"] = {pid: "Hello." for pid in PROMPT_IDS}
    data["prompts"]["goodbye"] = "Bye."
    data["prompts"]["status_stage_only"] = "Your case is {{ stage | stage_name }}."
    pack = LanguagePack.from_dict("en", data)
    synth = PromptSynthesizer(tmp_path)
    ready = await synth.prewarm(pack)
    assert ready == 2 + 5  # Hello., Bye. and the five stages
    assert synth.stats.synthesized == 7
    assert await PromptSynthesizer(tmp_path).prewarm(pack) == 7
    assert synth.stats.synthesized == 7


async def queued(synth: PromptSynthesizer, prewarm: asyncio.Task[int]) -> None:
    """Until the prewarm has queued its prompts behind the one slot (bounded)."""
    async with asyncio.timeout(10):
        while synth._lanes.waiting < 10:
            assert not prewarm.done()
            await asyncio.sleep(0)  # let the prewarm's tasks reach the lanes


async def test_a_callers_prompt_is_synthesised_before_the_prewarm_queue(tmp_path: Path) -> None:
    """At start-up the prewarm queues every static prompt; a caller's status read-back (text
    no prewarm knows) must not wait behind them."""
    pack = LanguagePack.load("en")
    synth = PromptSynthesizer(tmp_path, max_concurrent=1)
    prewarm = asyncio.create_task(synth.prewarm(pack))
    await queued(synth, prewarm)
    pcm = await synth.audio("en", None, "Case 20240517 is being handled by the housing office.")
    done_then = synth.stats.synthesized
    total = await prewarm
    assert pcm_seconds(pcm) > 1.0
    assert done_then <= 3, f"the caller waited for {done_then - 1} prewarm prompts"
    assert total > done_then + 10


async def test_a_caller_promotes_a_prompt_the_prewarm_has_queued(tmp_path: Path) -> None:
    pack = LanguagePack.load("en")
    synth = PromptSynthesizer(tmp_path, max_concurrent=1)
    texts = [text for (_pid, speech), text in pack.static_texts().items() if speech]
    prewarm = asyncio.create_task(synth.prewarm(pack))
    await queued(synth, prewarm)
    last = texts[-1]
    await synth.audio("en", None, last)
    done_then = synth.stats.synthesized
    await prewarm
    assert done_then <= 3, f"the caller waited for {done_then - 1} other prewarm prompts"



async def test_the_conversion_runs_outside_the_service_process(tmp_path: Path) -> None:
    """pydub's filter is a Python loop holding the GIL: it runs in the converter process."""
    import os

    from speech.tts import converter

    synth = PromptSynthesizer(tmp_path)
    await synth.audio("en", None, "Hello from the converter.")
    pid = await asyncio.get_running_loop().run_in_executor(converter(), os.getpid)
    assert pid != os.getpid()
