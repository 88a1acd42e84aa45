"""The service's Prometheus metrics: one registry per running service (never
prometheus_client's global one, so tests and several services in one process keep apart).

Call figures come from the call-event bus (``crm.metrics.calls.CallFigures``), screen pop
delays from the desk hub; the rest is read at scrape time from what the parts already keep
(:class:`ServiceCollector`): the health report, AMI logins, the recognition pool, database
errors. Nothing here holds personal data: labels are queue names, reasons and kinds.
Reminder passes come from the reminder timer (``crm.metrics.reminders.ReminderFigures``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from crm.metrics.calls import CallFigures
from crm.metrics.database_errors import DatabaseErrors
from crm.metrics.reminders import ReminderFigures
from crm.web.app import HealthReport
from speech.metered_pool import MeteredThreadPool
from speech.recognizer import default_executor
from speech.turn_endings import TURN_ENDINGS, TurnEndings

POP_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


@dataclass(frozen=True)
class ScrapeSources:
    """What :class:`ServiceCollector` reads at each scrape."""

    health: Callable[[], HealthReport]
    ami_logins: Callable[[], int]
    recognition_pool: Callable[[], MeteredThreadPool | None]
    database_errors: DatabaseErrors
    turn_endings: TurnEndings = field(default=TURN_ENDINGS)


class ServiceCollector(Collector):
    """The service's state at scrape time, from the parts' own counters."""

    def __init__(self, sources: ScrapeSources) -> None:
        self.sources = sources

    def describe(self) -> list[Metric]:
        return []  # registering must not read the service before it is up

    def collect(self) -> Iterator[Metric]:
        s = self.sources
        report = s.health()
        yield _gauge("hotline_ami_logged_in", "1 while the AMI connection is logged in",
                     1 if report.ami == "logged_in" else 0)
        yield _counter("hotline_ami_reconnects", "AMI logins after the first one",
                       max(0, s.ami_logins() - 1))
        yield _gauge("hotline_active_calls", "Calls Asterisk has announced and not ended",
                     report.active_calls)
        yield _counter("hotline_consultations_written",
                       "Consultation writes done since start", report.consultations_written)
        yield _counter("hotline_ivr_calls_refused_overload",
                       "Calls handed to the queue because the IVR was full",
                       report.calls_refused_overload)
        refused = CounterMetricFamily("hotline_audiosocket_refused",
                                      "AudioSocket connections refused, by reason",
                                      labels=["reason"])
        for reason, count in sorted(report.audiosocket_refused.items()):
            refused.add_metric([reason], count)
        yield refused
        pending = GaugeMetricFamily("hotline_journal_pending",
                                    "Writes waiting in a durable journal for the database",
                                    labels=["journal"])
        for journal, count in sorted(report.pending_writes.items()):
            pending.add_metric([journal], count)
        yield pending
        yield _counter("hotline_database_errors", "Errors the database driver raised",
                       s.database_errors.count)
        endings = CounterMetricFamily(
            "hotline_speech_turns_ended",
            "Listening turns ended, by reason (request: a whole request after "
            "end_silence_complete; request_missed: an early end tried on words that were no "
            "whole request)", labels=["reason"])
        for reason, count in sorted(s.turn_endings.snapshot().items()):
            endings.add_metric([reason], count)
        yield endings
        pool = s.recognition_pool()
        if pool is not None:
            yield _gauge("hotline_recognizer_threads", "Threads of the recognition pool",
                         pool.threads)
            yield _gauge("hotline_recognizer_busy_threads", "Recognition threads decoding now",
                         pool.running)
            yield _gauge("hotline_recognizer_waiting",
                         "Decodes submitted to the recognition pool and not yet started",
                         pool.waiting)
            yield _counter("hotline_recognizer_busy_seconds",
                           "Thread-seconds the recognition pool spent decoding (its busy "
                           "share: rate of this / hotline_recognizer_threads)",
                           pool.busy_seconds())
            buckets, count, total = pool.urgent_latency()
            yield HistogramMetricFamily(
                "hotline_recognizer_final_decode_seconds",
                "Final decodes (a caller's words ended by end_silence of quiet, tried after the "
                "shorter end_silence_complete, or cut by a key or a hang-up), from submission "
                "to result: what the caller waits for beyond the quiet",
                buckets=[(f"{bound:g}", n) for bound, n in buckets] + [("+Inf", count)],
                sum_value=total)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class ServiceMetrics:
    """The registry of one service and what feeds it."""

    def __init__(self, *, answer_within_s: float = 15.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = CallFigures(self.registry, answer_within_s=answer_within_s)
        self.pop_delay = Histogram("hotline_screen_pop_delay_seconds",
                                   "An agent's phone rang (AgentCalled) -> the pop on the desk",
                                   buckets=POP_BUCKETS, registry=self.registry)
        self.database_errors = DatabaseErrors()
        self.reminders = ReminderFigures(self.registry)

    def observe_pop(self, seconds: float) -> None:
        self.pop_delay.observe(max(0.0, seconds))

    def scrape_from(self, sources: ScrapeSources) -> None:
        self.registry.register(ServiceCollector(sources))

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


def recognition_pool(executor: object | None) -> Callable[[], MeteredThreadPool | None]:
    """The speech stack's pool (``SpeechStack.executor``, None: the shared default one), when
    it is metered."""
    def pool() -> MeteredThreadPool | None:
        chosen = executor if executor is not None else default_executor()
        return chosen if isinstance(chosen, MeteredThreadPool) else None
    return pool
