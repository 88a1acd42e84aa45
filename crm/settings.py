"""The CRM's settings sections (``[web]``, ``[database]``, ``[survey]``, ``[retention]``,
``[service_levels]``, ``[callbacks]``), composed into the whole settings by
hotline.settings. Imports nothing of the hotline."""

from __future__ import annotations

from datetime import date
from datetime import time as dt_time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    session_secret: str = ""
    session_idle_timeout: float = Field(8 * 3600, gt=0)
    """Seconds without a request after which an agent desk session ends (8 h)."""
    secure_cookies: bool = False
    """Mark the desk session cookie Secure (set when the web side is served over HTTPS)."""
    demo_password: str = ""
    """Password of the demo desk accounts that ``hotline db seed-demo`` creates."""
    session_max_age: float = Field(12 * 3600, gt=0)
    """Absolute lifetime of a desk or console session, however active it is (12 h)."""
    sign_in_account_failures: int = Field(5, ge=1)
    """Consecutive failed sign-ins of one account before it must wait."""
    sign_in_address_failures: int = Field(20, ge=1)
    """Consecutive failed sign-ins from one source address (IPv6: one /64) before it must wait
    (higher than per account: an office may share one address)."""
    sign_in_base_delay: float = Field(1.0, gt=0)
    """Seconds of the first wait; every further failure doubles it..."""
    sign_in_max_delay: float = Field(900.0, gt=0)
    """...up to this many seconds (15 min)."""
    sign_in_forget_after: float = Field(3600.0, gt=0)
    """Seconds without a failure after which an account or address starts again from zero."""
    password_hash_threads: int = Field(1, ge=1, le=4)
    """Threads that run argon2 for sign-in (their own: the IVR's threads are never used)."""
    session_check_interval: float = Field(5.0, gt=0)
    """Seconds between checks of open desk/console websockets against the session table, for
    sessions ended by another process (e.g. ``hotline agents disable``)."""
    locale: Literal["zh_CN", "en"] = "zh_CN"
    """The language of the desk and console for users who chose none (each user can choose
    their own; crm/i18n)."""

    @model_validator(mode="after")
    def _sign_in_delays(self) -> WebSettings:
        if not self.sign_in_base_delay <= self.sign_in_max_delay <= self.sign_in_forget_after:
            raise ValueError("need sign_in_base_delay <= sign_in_max_delay <= "
                             "sign_in_forget_after")
        return self


class DatabaseSettings(_Section):
    url: str = ""
    """SQLAlchemy async URL; empty means a SQLite file in the state directory."""
    echo: bool = False


class SurveySettings(_Section):
    """Satisfaction surveys after agent calls, and return visits (outbound survey calls) for
    resolved cases."""

    enabled: bool = True
    """Offer the survey to callers after the agent hangs up, and allow return visits."""
    fatigue_days: int = Field(30, ge=0)
    """A calling number is not surveyed again within this many days (0: every call)."""
    calling_hours: str = Field("09:00-20:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    """Local time window for return-visit calls; "00:00-24:00" means any time."""
    timezone: str | None = None
    """IANA zone of ``calling_hours`` (e.g. Asia/Shanghai); None means the host's zone."""
    max_attempts: int = Field(3, ge=1, le=20)
    """Return-visit calls per case before it is marked failed (no answer, busy...)."""
    retry_after: float = Field(120.0, gt=0)
    """Minutes before an unanswered or busy return visit is tried again."""
    dial: str = "PJSIP/{number}@pstn-gateway"
    """Asterisk dial string for a resident's phone; ``{number}`` is replaced. The default
    needs an AOR (contact = your gateway) on the pstn-gateway endpoint; a direct form is
    ``PJSIP/pstn-gateway/sip:{number}@gateway.example:5060``."""
    caller_id: str = ""
    """Caller ID shown to residents on return visits; empty: the hotline number."""
    ring_timeout: float = Field(30.0, gt=0, le=300)
    """Seconds a return-visit call may ring before it counts as not answered."""
    max_concurrent_calls: int = Field(2, ge=1, le=50)
    return_visit_interval: float = Field(0.0, ge=0)
    """Minutes between return-visit passes inside ``hotline serve``; 0 runs them only from
    the CLI (``run_return_visits``, e.g. from cron)."""
    stale_after: float = Field(30.0, gt=0)
    """Minutes after which a return-visit call with no outcome counts as lost and is retried."""
    comment_max_seconds: float = Field(60.0, gt=0, le=600)
    comment_silence_seconds: float = Field(3.0, gt=0)
    """Silence that ends a spoken comment; twice as long at its start means there is none."""
    recordings_dir: Path | None = None
    """Spoken comments as wav files; None means <state_dir>/survey-comments."""

    @model_validator(mode="after")
    def _check(self) -> SurveySettings:
        _check_dialling(self.calling_hours, self.timezone, self.dial)
        return self


class RetentionSettings(_Section):
    """How long residents' data is kept (``hotline retention purge``, or the schedule in
    ``hotline serve``). Days count from the call's start (the survey's start, the audit
    entry's time); 0 keeps that kind of data for ever. The consultation itself (its number,
    times, outcome, route) stays as statistics."""

    steps_days: int = Field(365, ge=0)
    """A consultation's steps (IVR path, keys, transcripts of what the caller said)."""
    recordings_days: int = Field(180, ge=0)
    """Call recordings (the files in Asterisk's monitor directory, and their links)."""
    survey_comments_days: int = Field(180, ge=0)
    """Spoken survey comments (wav files) and their transcripts; the score stays."""
    audit_days: int = Field(730, ge=0)
    """Audit log entries (who read or changed residents' data): 0, or at least 180 (network
    logs are kept at least six months)."""
    purge_interval_hours: float = Field(24.0, ge=0)
    """Hours between purges inside ``hotline serve`` (the first at start-up); 0: only from
    the CLI (e.g. cron)."""

    @model_validator(mode="after")
    def _audit_kept_six_months(self) -> RetentionSettings:
        if 0 < self.audit_days < 180:
            raise ValueError("audit_days must be 0 (keep) or at least 180 (six months)")
        return self


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.partition(":")
    if int(minutes) >= 60:
        raise ValueError(f"{hhmm!r} is not a time of day")
    return int(hours) * 60 + int(minutes)

def _check_dialling(calling_hours: str, timezone: str | None, dial: str) -> None:
    """What the survey's and the callbacks' dialling settings share: a calling window with
    its start before its end, a known zone, a dial string with ``{number}``."""
    start, _, end = calling_hours.partition("-")
    if not (_minutes(start) < _minutes(end) <= 24 * 60):
        raise ValueError("calling_hours must be HH:MM-HH:MM with start before end")
    if timezone is not None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {timezone!r}") from None
    if "{number}" not in dial:
        raise ValueError("dial must contain {number}")



class ServiceLevelSettings(_Section):
    """The 12345 service-level figures (docs/service-levels.md): the thresholds they are
    counted with and the targets a figure is marked against when it falls short (percent)."""

    answer_within_s: float = Field(15.0, gt=0, le=600)
    """A call answered by a person at most this many seconds after joining the queue counts
    as answered in time (GB/T 33358-2016: 15 s)."""
    short_abandon_s: float = Field(5.0, ge=0, le=600)
    """A caller who abandons in the queue before this many seconds is also counted as a short
    abandon (shown apart: often a wrong number, not a service failure)."""
    target_answered_within_pct: float = Field(90.0, ge=0, le=100)
    """Target for the share of calls reaching the queue answered within answer_within_s."""
    target_connection_pct: float = Field(95.0, ge=0, le=100)
    """Target for 接通率: calls answered by a person or finished in self-service / offered."""
    target_satisfaction_pct: float = Field(90.0, ge=0, le=100)
    """Target for 满意率: rated after-call surveys scored 满意 (4) or 非常满意 (5)."""
    wallboard_refresh_s: float = Field(30.0, ge=1, le=3600)
    """Today's figures on the wallboard are recounted after every call that ends, and at
    least this often (surveys and callbacks change without a call event)."""
def assigned_queue(main_queue: str) -> str:
    """The queue of callbacks assigned to one agent: every signed-in agent is a member with
    their agent id as penalty, and an assigned callback waits there limited to that penalty
    (QUEUE_MIN_PENALTY = QUEUE_MAX_PENALTY), so it is offered to its agent only."""
    return f"{main_queue}-assigned"


class CallbackSettings(_Section):
    """Callback requests for missed callers (crm.callbacks): who gets one, when and how they
    are called back. A callback keeps the caller's place in the queue (arrival order)."""

    enabled: bool = True
    min_wait_s: float = Field(10.0, ge=0)
    """A caller who abandons the queue after at least this many seconds gets a callback
    request (calls handed back at the IVR's limit and callers an agent's phone rang for
    without answer get one whatever their wait)."""
    max_attempts: int = Field(3, ge=1, le=20)
    """Calls to the resident before the request fails (no answer, busy)."""
    retry_after: float = Field(30.0, gt=0)
    """Minutes before an unanswered or busy callback is tried again."""
    calling_hours: str = Field("08:00-21:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    """Local time window in which residents are called back; "00:00-24:00" is any time."""
    timezone: str | None = None
    """IANA zone of ``calling_hours`` (e.g. Asia/Shanghai); None means the host's zone."""
    order: Literal["agent_first", "resident_first"] = "agent_first"
    """agent_first: the callback waits in the queue as a placeholder at its caller's place;
    the agent who answers it hears the resident's phone ring. resident_first: the resident is
    rung once the callback is at the head of the queue and an agent is free, then queued
    at the head."""
    dial: str = "PJSIP/{number}@pstn-gateway"
    """Asterisk dial string for the resident's phone; ``{number}`` is replaced."""
    caller_id: str = ""
    """Caller ID shown to residents; empty: the hotline number."""
    ring_timeout: float = Field(30.0, gt=0, le=300)
    """Seconds the resident's phone may ring before the attempt counts as not answered."""
    queue_timeout: float = Field(3600.0, gt=0)
    """Seconds a callback may wait in the queue for an agent before it is placed again."""
    assigned_wait: float = Field(300.0, gt=0)
    """Seconds a callback a supervisor assigned to one agent waits for that agent (not
    signed in, paused or busy); then the assignment lapses (audited) and the callback goes
    back to the general queue at its caller's place."""
    max_concurrent: int = Field(5, ge=1, le=100)
    """Callbacks waiting in the queue (or dialling) at once."""
    poll_interval: float = Field(30.0, gt=0)
    """Seconds between looks for callbacks that became due (retries, calling hours)."""

    @model_validator(mode="after")
    def _check(self) -> CallbackSettings:
        _check_dialling(self.calling_hours, self.timezone, self.dial)
        return self


class TimeLimitSettings(_Section):
    """``[time_limits]``: how a category's handling limit is counted (crm/categories/)."""

    timezone: str = "Asia/Shanghai"
    """The zone of the working day (the hotline's local time)."""
    workday_opens: dt_time = dt_time(9, 0)
    workday_closes: dt_time = dt_time(17, 0)
    holidays: list[date] = Field(default_factory=list)
    """Public holidays that fall on working days, e.g. ["2026-10-01", "2026-10-02"]."""
    workdays: list[date] = Field(default_factory=list)
    """Make-up working days (调休) on a Saturday or Sunday, e.g. ["2026-09-27"]."""
    hours: Literal["calendar", "working"] = "calendar"
    """Limits in hours (emergencies 2h, utilities 24h): on the clock, or in working hours."""
    days: Literal["calendar", "working"] = "working"
    """Limits in days (general 7d, complex 15d): working days, or calendar days."""

    @model_validator(mode="after")
    def _check(self) -> TimeLimitSettings:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        if not self.workday_opens < self.workday_closes:
            raise ValueError("workday_opens must be before workday_closes")
        both = sorted(set(self.holidays) & set(self.workdays))
        if both:
            raise ValueError("days both holidays and make-up working days: "
                             + ", ".join(d.isoformat() for d in both))
        return self


class RepeatRequestSettings(_Section):
    """``[repeat_requests]``: which open cases the desk offers as the same matter."""

    window_days: int = Field(30, ge=1, le=3650)
    """Open cases accepted within this many days are offered."""
    min_address_similarity: float = Field(0.7, gt=0, le=1)
    """How alike two addresses' place names must be (0-1); their numbers must agree besides
    (crm/cases/addresses.py)."""


class DispatchSettings(_Section):
    """``[dispatch]``: dispatch and supervision (crm/cases/dispatch.py)."""

    remind_every_s: float = Field(300, ge=0)
    """Seconds between the service's passes that send due-soon and overdue reminders to
    departments (crm/cases/reminder_timer.py; once per deadline); 0: none (cron may run
    ``hotline dispatch remind``)."""
