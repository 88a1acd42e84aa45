"""The web part: the live state fed by call events (agents' desks and their pops, the
wallboard) and the web app that serves it (desk, console, API), with queue control over an
AMI link (sign-in, pause, transfer)."""

from __future__ import annotations

import contextlib
import secrets
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


@dataclass
class Live:
    desk_hub: DeskHub
    wallboard: Wallboard


async def start_live(stack: contextlib.AsyncExitStack, settings: Settings,
                     sessions: SessionFactory, bus: EventBus, *,
                     settle: Callable[[], Awaitable[None]] | None,
                     on_pop: Callable[[float], None] | None = None) -> Live:
    """The desk hub and the wallboard, subscribed to ``bus`` (before the AMI login: the
    first QueueSnapshot rebuilds the wallboard). ``settle`` waits until the consultation
    recorder has written the events received so far (the wallboard recounts today's calls
    from the database). ``on_pop`` sees each pop's delay (the metrics)."""
    pop_audits = json_journal(settings.state_dir / "journal", "pop-audits")
    stack.callback(pop_audits.close)
    desk_hub = DeskHub(sessions, audit_journal=pop_audits, on_pop=on_pop)
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
                     repeat_requests=settings.repeat_requests)
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
