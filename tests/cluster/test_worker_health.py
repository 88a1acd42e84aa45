"""An IVR worker's own /healthz and /metrics (``[audiosocket] health_port``,
hotline/roles/worker_health.py): two ``hotline serve --role ivr`` processes over a real
redis-server, the test PostgreSQL database and the real test Asterisk. One logs in to
Asterisk's AMI and answers 200 with its role, AMI link, AudioSocket port, speech models and
bus state; it learnt a call announced on the bus before it started (its replay, as
hotline/roles/worker_replay.py). The other is given an AMI port where nothing listens: it
runs, and answers 503 with why, which the cluster's liveness check (hotline/liveness.py, as
hotline/cluster/processes.py asks it) reports."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crm.storage.db import SessionFactory
from crm.telephony.events import CallStarted
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.redis_server import RedisServer
from hotline.cluster import processes
from hotline.cluster.plan import Plan, RoleProcess
from hotline.liveness import Recorded, describe_health, fetch_health
from hotline.settings import Settings
from hotline.tools.bed import free_tcp_port
from tests.cluster.test_ivr_workers import start
from tests.cluster.test_roles import START_S, WAIT_S, role_settings, stop_cleanly
from tests.integration.fault_tools import ServeProcess, wait_until

pytestmark = pytest.mark.asterisk


def worker_settings(bed: Settings, tmp_path: Path, name: str, database_url: str) -> Settings:
    settings = role_settings(bed, tmp_path, name, database_url)
    settings.audiosocket.port = free_tcp_port()
    settings.audiosocket.health_port = free_tcp_port()
    return settings


def cluster_state(tmp_path: Path, worker: ServeProcess,
                  settings: Settings) -> tuple[bool, str]:
    """What ``hotline cluster status`` says of the worker, as an entry of a plan (its pid
    recorded as ``cluster up`` records it): serving, and its health in a few words."""
    plan = Plan(tmp_path / "cluster", "127.0.0.1", 1, settings.database_url, [])
    process = RoleProcess(settings.state_dir.parent.name, "ivr", "127.0.0.1",
                          audiosocket_port=settings.audiosocket.port,
                          health_port=settings.audiosocket.health_port)
    processes.pid_file(plan, process).parent.mkdir(parents=True, exist_ok=True)
    processes.pid_file(plan, process).write_text(Recorded.of(worker.proc.pid).render())
    found = processes.state(plan, process)
    return found.serving, found.health


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        body = await (answer.json() if url.endswith("/healthz") else answer.text())
        return answer.status, body


async def test_an_ivr_worker_answers_its_health_and_metrics(
        asterisk_bed: Settings, redis_server: RedisServer, pg_sessions: SessionFactory,
        postgres_database: str, tmp_path: Path) -> None:
    good = worker_settings(asterisk_bed, tmp_path, "ivr-1", postgres_database)
    cut = worker_settings(asterisk_bed, tmp_path, "ivr-2", postgres_database)
    cut.ami.port = free_tcp_port()  # nothing listens there: its AMI link never logs in

    # A call the control process announced before the workers started.
    call_id = str(uuid.uuid4())
    control = RedisStreamBus(good.bus.model_copy(update={"redis_url": redis_server.url}),
                             journal_dir=tmp_path / "control-bus")
    await control.start()
    try:
        await control.publish(CallStarted(call_id, "13800138000", None, "PJSIP/x-1"))
        await control.flushed()
    finally:
        await control.close()

    workers: list[ServeProcess] = []
    try:
        for settings in (good, cut):
            workers.append(await start(settings, "ivr", redis_server,
                                       HOTLINE_AUDIOSOCKET__HEALTH_PORT=str(
                                           settings.audiosocket.health_port)))
        await asyncio.gather(*(w.wait_line("hotline ivr up", START_S) for w in workers))

        base = f"http://127.0.0.1:{good.audiosocket.health_port}"
        health: dict[str, Any] = {}

        async def healthy() -> bool:  # once its AMI link has logged in
            status, body = await get(f"{base}/healthz")
            health.update(body)
            return status == 200
        await wait_until(healthy, WAIT_S, "the worker is healthy")
        assert health["ok"] is True and health["role"] == "ivr"
        assert health["ami"] == "logged_in"
        assert health["audiosocket_port"] == good.audiosocket.port
        assert health["active_calls"] == 0
        assert health["speech"]["languages"], health["speech"]
        assert health["pending_writes"] == {"survey_writes": 0, "bus": 0}
        assert health["bus"] == {"unsent": 0, "known_calls": 1, "reading": True}  # replayed
        status, metrics = await get(f"{base}/metrics")
        assert status == 200
        assert "hotline_ami_logged_in 1.0" in metrics
        assert "hotline_active_calls 0.0" in metrics
        report = await asyncio.to_thread(fetch_health, "127.0.0.1",
                                         good.audiosocket.health_port)
        assert report is not None and describe_health(report) == "ok"
        assert await asyncio.to_thread(cluster_state, tmp_path, workers[0], good) == (
            True, "ok")

        # The worker without its AMI link: up, but not healthy, and the liveness check says why.
        status, body = await get(f"http://127.0.0.1:{cut.audiosocket.health_port}/healthz")
        assert status == 503 and body["ok"] is False and body["role"] == "ivr"
        assert body["ami"] != "logged_in" and body["audiosocket_port"] == cut.audiosocket.port
        report = await asyncio.to_thread(fetch_health, "127.0.0.1",
                                         cut.audiosocket.health_port)
        assert report is not None
        assert describe_health(report) == f"not ok: AMI {body['ami']}"
        assert await asyncio.to_thread(cluster_state, tmp_path, workers[1], cut) == (
            False, f"not ok: AMI {body['ami']}")
    finally:
        for worker in workers:
            await stop_cleanly(worker)
