"""An IVR worker's (``hotline serve --role ivr``) health, over HTTP of its own: a worker runs
no web part, so ``[audiosocket] health_port`` (0: none) serves ``/healthz`` and ``/metrics``
on ``[audiosocket] host``, the worker's address.

``/healthz`` answers as the web's (crm/web/app.py: ``ok`` and the :class:`HealthReport`'s
fields, 503 when not ok) with ``role`` "ivr": the worker's own AMI link (the channel
variables the dialplan reads go over it), its AudioSocket port, the calls it serves now, the
speech models, the survey writes and bus events it has not yet handed on; and ``bus``: what
it knows of the cluster's calls from the stream (``known_calls``) and its unsent events.
``/metrics`` holds the service collector's figures (hotline/metrics.py: AMI, calls served,
refusals, recognition threads), never a number or a name.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from crm.metrics.database_errors import DatabaseErrors
from crm.web.app import HealthReport
from hotline.bus.redis_bus import RedisStreamBus
from hotline.metrics import ScrapeSources, ServiceCollector, recognition_pool
from ivr.ami.client import AmiClient
from ivr.asterisk.bus_calls import BusCallDirectory
from ivr.audiosocket.server import MediaServer
from speech.stack import SpeechStack

log = logging.getLogger(__name__)


@dataclass
class WorkerParts:
    """What a worker's health reads, each at the time it is asked."""

    ami: AmiClient
    media: MediaServer
    speech: SpeechStack
    bus: RedisStreamBus
    calls: BusCallDirectory
    survey_writes: Callable[[], int] = lambda: 0

    def report(self) -> HealthReport:
        try:
            port: int | None = self.media.bound_port
        except RuntimeError:  # not listening (closing)
            port = None
        return HealthReport(
            ami=self.ami.state, audiosocket_port=port,
            active_calls=len(self.media.active_sessions), consultations_written=0,
            speech=self.speech.health(), calls_refused_overload=self.media.refused_overload,
            audiosocket_refused=self.media.refusals,
            pending_writes={"survey_writes": self.survey_writes(), "bus": self.bus.unsent},
            role="ivr")

    def bus_state(self) -> dict[str, Any]:
        return {"unsent": self.bus.unsent, "known_calls": len(self.calls.active_calls),
                "reading": self.bus.reader is not None}


def health_app(parts: WorkerParts) -> web.Application:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ServiceCollector(ScrapeSources(
        parts.report, lambda: parts.ami.logins, recognition_pool(parts.speech.executor),
        DatabaseErrors())))

    async def healthz(request: web.Request) -> web.Response:
        report = parts.report()
        body = {"ok": report.ok, **asdict(report), "bus": parts.bus_state()}
        return web.json_response(body, status=200 if report.ok else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_health(stack: contextlib.AsyncExitStack, host: str, port: int,
                       parts: WorkerParts) -> int | None:
    """Serve the worker's ``/healthz`` and ``/metrics`` on ``host:port`` until the stack
    exits; the port bound (None: ``port`` 0, none served)."""
    if not port:
        return None
    runner = web.AppRunner(health_app(parts), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        raise OSError(exc.errno, f"IVR worker health port {host}:{port}: {exc.strerror} "
                      "(set [audiosocket] health_port, HOTLINE_AUDIOSOCKET__HEALTH_PORT)"
                      ) from exc
    log.info("IVR worker health on http://%s:%s/healthz", host, port)
    return port
