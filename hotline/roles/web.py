"""The web part: the live state fed by call events (agents' desks and their pops, the
wallboard) and the web app that serves it (desk, console, API), with queue control over an
AMI link (sign-in, pause, transfer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from aiohttp import web

from crm.callbacks.dialing import CallbackActions
from crm.categories.time_limits import rules_from
from crm.live.desk_hub import DeskHub
from crm.live.wallboard import Wallboard
from crm.reports.service_levels import TodayCounter
from crm.storage.db import SessionFactory
from crm.storage.journal import json_journal
from crm.telephony.events import CallEventBus, EventBus
from crm.web.app import HealthReport, create_app
from crm.web.console.app import ConsoleDeps
from crm.web.desk import DeskDeps
from crm.web.session import SessionPolicy
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.stream_entries import REDIS_DOWN
from hotline.bus.stream_reader import entry_order
from hotline.paths import recording_store, survey_comments_dir
from hotline.settings import (
    Settings,
    assigned_callback_queue,
    hotline_queues,
    queues_by_language,
)
from ivr.ami.client import AmiClient
from ivr.asterisk.queue_control import QueueControl
from ivr.asterisk.queue_tracker import QueueTracker

log = logging.getLogger(__name__)


@dataclass
class Live:
    desk_hub: DeskHub
    wallboard: Wallboard


async def start_live(stack: contextlib.AsyncExitStack, settings: Settings,
                     sessions: SessionFactory, bus: EventBus, *,
                     settle: Callable[[], Awaitable[None]] | None,
                     on_pop: Callable[[float], None] | None = None,
                     replaying: bool = False) -> Live:
    """The desk hub and the wallboard, subscribed to ``bus`` (before the AMI login: the
    first QueueSnapshot rebuilds the wallboard). ``settle`` waits until the consultation
    recorder has written the events received so far (the wallboard recounts today's calls
    from the database). ``on_pop`` sees each pop's delay (the metrics). ``replaying``: the
    bus's reader starts in the past (:func:`begin_replay`; :func:`finish_replay` ends it).
    """
    pop_audits = json_journal(settings.state_dir / "journal", "pop-audits")
    stack.callback(pop_audits.close)
    desk_hub = DeskHub(sessions, audit_journal=pop_audits, on_pop=on_pop)
    desk_hub.replaying = replaying
    bus.subscribe(desk_hub.handle)
    desk_hub.start()
    stack.push_async_callback(desk_hub.close)

    local_zone = hotline_zone(settings)
    levels = settings.service_levels
    wallboard = Wallboard(sessions, queue=settings.asterisk.queue_name, tz=local_zone,
                          queues=hotline_queues(settings), settle=settle,
                          service_level_s=levels.answer_within_s,
                          levels=TodayCounter(sessions, local_zone, levels,
                                              full_every_s=levels.wallboard_refresh_s),
                          levels_refresh_s=levels.wallboard_refresh_s)
    wallboard.replaying = replaying
    bus.subscribe(wallboard.handle)
    await wallboard.start()
    stack.push_async_callback(wallboard.close)
    return Live(desk_hub, wallboard)


def resync_on_login(ami: AmiClient, live: Live, settings: Settings) -> Callable[[], None]:
    """A web node of a cluster: after each login of its own AMI link, rebuild the desks'
    and the wallboard's queue state from QueueStatus (members, waiting callers), as the
    core's QueueSnapshot does after the core's logins, so a web node started (or
    reconnected) later does not wait for the core's next one. Only this node's live state is
    fed (the stream has the core's); live events keep coming from the stream. Returns the
    function that stops it."""
    local = CallEventBus()
    local.subscribe(live.desk_hub.handle)
    local.subscribe(live.wallboard.handle)
    tracker = QueueTracker(ami, local, queues=hotline_queues(settings))
    tracker.close()  # not its event subscription, its resynchronisation only
    return ami.on_ready(tracker.resync)


@dataclass
class WebApp:
    queue_control: QueueControl
    runner: web.AppRunner


async def start_web(stack: contextlib.AsyncExitStack, settings: Settings,
                    sessions: SessionFactory, live: Live, ami: AmiClient, *,
                    callbacks: CallbackActions | None,
                    health: Callable[[], HealthReport],
                    metrics_text: Callable[[], bytes] | None = None) -> WebApp:
    """The web app on ``[web] host:port``; queue control acts over ``ami``; ``callbacks``
    carries out the desk's and console's callback actions."""
    queue_control = QueueControl(ami, settings.asterisk.queue_name,
                                 queues=queues_by_language(settings),
                                 default_language=settings.speech.default_language,
                                 assigned=assigned_callback_queue(settings))
    local_zone = hotline_zone(settings)
    session_secret = settings.web.session_secret or secrets.token_urlsafe(32)
    time_limits = rules_from(settings.time_limits)
    desk = DeskDeps(sessions, live.desk_hub, queue_control, session_secret,
                    idle_timeout=settings.web.session_idle_timeout,
                    secure_cookies=settings.web.secure_cookies, callbacks=callbacks,
                    time_limits=time_limits,
                    repeats=settings.repeat_requests)
    console = ConsoleDeps(sessions, session_secret, wallboard=live.wallboard,
                          recordings=recording_store(settings),
                          survey_comments=survey_comments_dir(settings),
                          idle_timeout=settings.web.session_idle_timeout, tz=local_zone,
                          secure_cookies=settings.web.secure_cookies,
                          service_levels=settings.service_levels, callbacks=callbacks)
    app = create_app(sessions, health, desk=desk, console=console,
                     session_policy=SessionPolicy.from_settings(settings.web),
                     report_tz=local_zone, service_levels=settings.service_levels,
                     metrics_text=metrics_text, time_limits=time_limits,
                     repeat_requests=settings.repeat_requests,
                     default_locale=settings.web.locale)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, settings.web.host, settings.web.port).start()
    return WebApp(queue_control, runner)


def hotline_zone(settings: Settings) -> tzinfo:
    """The hotline's local time zone (report days, the wallboard's "today"): the survey
    calling-hours zone when set, else the host's."""
    if settings.survey.timezone:
        return zoneinfo.ZoneInfo(settings.survey.timezone)
    return datetime.now().astimezone().tzinfo or UTC


REPLAY_WAIT_S = 30.0
"""Seconds a starting web node waits at most for its replay of recent events."""


def begin_replay(bus: RedisStreamBus, settings: Settings) -> str | None:
    """A web node of a cluster, before its live state subscribes: its reader starts
    ``[bus] replay_s`` back, so the calls under way (answered, ringing, waiting) reach its
    desk hub with their steps, on a node started (or restarted) after they began and on
    the node an agent's browser reconnects to. The entry id it starts after (None: no
    replay)."""
    if settings.bus.replay_s <= 0:
        return None
    start = f"{int((time.time() - settings.bus.replay_s) * 1000)}-0"
    bus.read_from(start)
    return start


async def finish_replay(bus: RedisStreamBus, live: Live, start: str | None) -> int:
    """Wait (bounded) until the reader has handed over every entry that was in the stream
    when this was called and the hub and the wallboard (started with ``replaying``) have
    applied them; then live. Call it before the AMI login: the queue snapshot after it must
    come after the past. The number of events replayed."""
    if start is None:
        return 0
    try:
        async with asyncio.timeout(REPLAY_WAIT_S):
            tail = await bus.tail()
            if bus.reader is not None and entry_order(tail) > entry_order(start):
                await bus.reader.reached(tail)
            await live.desk_hub.drain()
            await live.wallboard.drain()
    except TimeoutError:
        log.warning("web: the replay of recent events did not finish within %.0f s; going "
                    "live with what was read", REPLAY_WAIT_S)
    except REDIS_DOWN as exc:
        log.warning("web: no replay of recent events, Redis unreachable (%s)", exc)
    finally:
        live.desk_hub.replaying = live.wallboard.replaying = False
    replayed = bus.reader.read if bus.reader is not None else 0  # its first reads
    log.info("web: replayed %d events of the last %s", replayed,
             f"{(time.time() * 1000 - entry_order(start)[0]) / 1000:.0f} s")
    return replayed
