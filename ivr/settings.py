"""The IVR's settings sections (``[ami]``, ``[audiosocket]``, ``[intake]``, ``[queue_wait]``,
``[service_hours]``), composed into the whole
settings by hotline.settings. Imports nothing of the hotline."""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import date
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, Field, model_validator


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


def _sip_network(value: str) -> str:
    """An IP address or CIDR network as Asterisk's ACLs and identify sections take it."""
    try:
        network = ipaddress.ip_network(value.strip())
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not an IP address or a network in CIDR form, e.g. 203.0.113.5 or "
            f"203.0.113.0/28 ({exc})"
        ) from None
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


SipNetwork = Annotated[str, AfterValidator(_sip_network)]
"""An IP address or network (CIDR), normalised: 203.0.113.5, 203.0.113.0/28."""


class AmiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = Field("hotline", pattern=r"^[A-Za-z0-9_-]+$")
    secret: str = ""
    ping_interval: float = Field(5.0, gt=0)
    ping_timeout: float = Field(3.0, gt=0)
    reconnect_min: float = Field(0.5, gt=0)
    reconnect_max: float = Field(30.0, gt=0)


class AudioSocketSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    max_calls: int | None = Field(None, ge=0)
    """Calls the IVR serves at once; beyond it a new call is handed straight back to the
    dialplan, which queues it for an agent (no caller is turned away). None: 40 per CPU core
    (make bench-load holds 60-80 with speech on 2 cores); 0: no limit."""

    workers: list[str] = Field(default_factory=list)
    """The IVR workers (``host:port`` each) the dialplan's AudioSocket tries in turn, round
    robin from one leg to the next: one that cannot be connected to (or hands the call back
    at once) is skipped for the next. Empty: the one ``host:port`` above (one box)."""

    health_port: int = Field(0, ge=0, le=65535)
    """An IVR worker's (``serve --role ivr``) HTTP port for ``/healthz`` and ``/metrics``,
    on ``host`` (a worker runs no web part); 0: none (other roles answer on ``[web] port``)."""

    def worker_addresses(self) -> list[str]:
        """Where Asterisk connects: ``workers``, else ``host:port``."""
        return list(self.workers) or [f"{self.host}:{self.port}"]

    @staticmethod
    def down_mark(address: str) -> str:
        """The dialplan's global variable for worker ``host:port``: "1" while control has
        marked it down (hotline/roles/worker_presence.py)."""
        return "HOTLINE_IVR_DOWN_" + re.sub(r"[^0-9A-Za-z]", "_", address)

    @model_validator(mode="after")
    def _check_workers(self) -> AudioSocketSettings:
        for worker in self.workers:
            host, _, port = worker.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or any(
                    c in worker for c in ",()|\"{}$ "):
                raise ValueError(f"audiosocket.workers: {worker!r} is not host:port "
                                 "(e.g. 127.0.0.2:9092)")
        return self

    def call_limit(self) -> int | None:
        """The limit in force, None for none."""
        if self.max_calls is None:
            return 40 * (os.cpu_count() or 1)
        return self.max_calls or None

    # Who may connect, and how much one connection may hold (ivr/audiosocket/server.py).
    allowed_peers: list[SipNetwork] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"], min_length=1)
    """Addresses (or CIDR networks) Asterisk connects from; a connection from anywhere else
    is closed at once. List your Asterisk servers when ``host`` is not loopback."""
    max_pending: int = Field(64, ge=1)
    """Connections not yet admitted (no call id yet, or its id not yet announced on AMI). When
    full, a new connection closes the oldest one that has sent no call id (Asterisk sends its
    id at once: that is an idle one); if every one has sent its id, the new one is closed."""
    first_frame_timeout: float = Field(2.0, gt=0)
    """Seconds a new connection has to send its call id (Asterisk sends it at once)."""
    announce_timeout: float = Field(3.0, gt=0)
    """Seconds to wait for AMI to announce a call id (HotlineCallStart/HotlineSurveyStart);
    an id not announced by then is closed, and the dialplan queues the caller."""
    max_burst_bytes: int = Field(64 * 1024, ge=4096)
    """Bytes a peer may send ahead of real time (8 kHz 16-bit audio, 16 kB/s) before its
    session counts as flooding and is closed: 64 KiB is about 4 s of audio."""
    max_buffered_bytes: int = Field(320_000, ge=4096)
    """Inbound audio one session holds for a call flow that is not reading it (320 kB: 20 s);
    beyond it the oldest is dropped, with a log line."""

    def peer_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``allowed_peers`` as networks."""
        return tuple(ipaddress.ip_network(peer) for peer in self.allowed_peers)


# -- waiting in the queue and opening hours (rendered into queues.conf and the dialplan) -------
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)$")


class QueueWaitSettings(_Section):
    """``[queue_wait]``: what a caller hears and may do while waiting for an agent."""

    announce_position: bool = True
    """Tell the caller their place in the queue ("you are next", "there are N callers")."""
    announce_frequency: int = Field(30, ge=1, le=86400)
    """Seconds between announcements: the first comes as the caller joins, the next when the
    position changed or this many seconds passed (a large value: on entry and on changes)."""
    min_announce_frequency: int = Field(15, ge=0, le=3600)
    """Never two announcements closer than this (the position may change often)."""
    announce_holdtime: Literal["yes", "no", "once"] = "yes"
    """Also say the expected wait (Asterisk's average hold time of the queue) when known."""
    max_wait: int = Field(120, ge=0, le=86400)
    """Seconds a caller waits at most; then they are offered a callback
    (CALLBACK_REASON=max_wait). 0: no limit."""
    callback_key: str = Field("1", pattern=r"^[0-9]$")
    """The key a waiting caller presses to leave a callback request instead
    (CALLBACK_REASON=chosen). Every other key is ignored and the wait goes on."""
    hold_music_dir: str = Field("/var/lib/asterisk/moh/hotline", pattern=r"^/[^;\s\"\\\[\]]*$")
    """Hold music directory as Asterisk names it (in the embedded root: below the root).
    Install writes a default ``hotline-hold.ulaw`` (soft tones) only while the directory holds
    no audio file of the operator's; put your own 8 kHz .wav/.ulaw/.gsm file there instead."""
    agent_qualify_frequency: int = Field(5, ge=0, le=3600)
    """Seconds between SIP OPTIONS probes of each agent phone: a phone that stops answering
    (crashed, unplugged) is unreachable within about this plus ``agent_qualify_timeout``, and
    the queue stops ringing it. 0: no probes."""
    agent_qualify_timeout: float = Field(2.0, gt=0, le=60)
    """Seconds an agent phone has to answer a probe."""


def _check_hours(value: str) -> str:
    value = value.strip()
    if not value:
        return value
    for span in value.split(","):
        span = span.strip()
        if not _HOURS.match(span) or span[:5] >= span[6:]:
            raise ValueError(
                f"{value!r}: expected opening times as HH:MM-HH:MM (end after start, 24:00 "
                "for midnight), several separated by commas, or \"\" for closed all day")
    return ",".join(s.strip() for s in value.split(","))


OpeningTimes = Annotated[str, AfterValidator(_check_hours)]


class ServiceHoursSettings(_Section):
    """``[service_hours]``: when the line takes calls for agents. Outside these hours a caller
    hears the hours and is offered a callback (CALLBACK_REASON=closed). Rendered into the
    dialplan, so it holds even while the hotline service is down. The spoken hours are the
    language packs' ``opening_hours`` (keep them in step)."""

    timezone: str = "Asia/Shanghai"
    """IANA zone the schedule is in."""
    weekly: dict[str, OpeningTimes] = Field(
        default_factory=lambda: dict.fromkeys(_WEEKDAYS, "00:00-24:00"))
    """Opening times per weekday (mon ... sun): "08:30-12:00,13:30-18:00"; "" closed all day.
    A day not listed is closed. The default: always open (7x24, as a 12345 line is)."""
    holidays: list[date] = Field(default_factory=list)
    """Dates the line is closed all day (YYYY-MM-DD, in ``timezone``)."""

    @model_validator(mode="after")
    def _known(self) -> ServiceHoursSettings:
        unknown = sorted(set(self.weekly) - set(_WEEKDAYS))
        if unknown:
            raise ValueError(f"weekly: unknown day(s) {unknown}; use {', '.join(_WEEKDAYS)}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not an IANA zone, e.g. "
                             "Asia/Shanghai") from None
        return self

    @property
    def always_open(self) -> bool:
        return not self.holidays and all(
            self.weekly.get(day) == "00:00-24:00" for day in _WEEKDAYS)

    def spans(self) -> list[tuple[str, str]]:
        """(weekday, range) for every opening span in Asterisk's time syntax, whose end minute
        is excluded: "08:30-18:00" as given, "HH:MM-24:00" as "HH:MM-00:00", a whole day
        as "*"."""
        out = []
        for day in _WEEKDAYS:
            for span in filter(None, self.weekly.get(day, "").split(",")):
                if span == "00:00-24:00":
                    out.append((day, "*"))
                else:
                    out.append((day, span.replace("-24:00", "-00:00")))
        return out
HOTLINE_LANGUAGES = ("cmn", "en", "ko")
"""The languages the IVR speaks (speech.languages.LANGUAGES; this module imports nothing)."""


def language_queue(main_queue: str, language: str, default_language: str) -> str:
    """The queue a caller of ``language`` waits in: the main queue for the default language,
    ``<main_queue>-<language>`` for the others (the language desks)."""
    return main_queue if language == default_language else f"{main_queue}-{language}"


def language_queues(main_queue: str, default_language: str,
                    languages: tuple[str, ...] = HOTLINE_LANGUAGES) -> dict[str, str]:
    """Language -> its queue, the default language (the main queue) first."""
    ordered = [default_language, *(lang for lang in languages if lang != default_language)]
    return {lang: language_queue(main_queue, lang, default_language) for lang in ordered}


def _one_key(value: str) -> str:
    if len(value) != 1 or value not in "0123456789*#":
        raise ValueError(f"{value!r} is not one telephone key (0-9, * or #)")
    return value


Key = Annotated[str, AfterValidator(_one_key)]
"""One telephone key: 0-9, * or #."""


class IntakeSettings(_Section):
    """``[intake]``: the greeting without menus (ivr/flows/menu.py) and the language desks.

    A caller who keys or says nothing for ``silence_timeout`` seconds after the greeting
    joins the queue; a key named here acts as soon as it is the first key pressed (so a case
    number keyed at the greeting cannot start with one of them: press ``check_status_key``
    first for such a number)."""

    silence_timeout: float = Field(1.5, gt=0, le=30)
    """Seconds of silence after the greeting before the caller joins the queue."""
    language_keys: dict[str, Key] = Field(default_factory=lambda: {"en": "8", "ko": "9"})
    """Language -> the key that switches to it (named once in the greeting)."""
    service_info_key: Key | None = "0"
    """Opening hours and addresses, then back to the greeting; None: by speech only."""
    check_status_key: Key | None = "1"
    """Asks for a case number (for numbers that start with a key named above)."""
    language_fallback_after: float = Field(30.0, ge=0, le=3600)
    """Seconds a caller waits for an agent who speaks their language before any agent may
    answer (queuerules.conf rule ``hotline-language``)."""

    @model_validator(mode="after")
    def _distinct_keys(self) -> IntakeSettings:
        from_codes = list(self.language_keys)
        unknown = [c for c in from_codes if c not in HOTLINE_LANGUAGES]
        if unknown:
            raise ValueError(f"language_keys: unknown language(s) {unknown}; use cmn, en, ko")
        keys = [*self.language_keys.values(), self.service_info_key, self.check_status_key]
        keys = [k for k in keys if k is not None]
        if len(set(keys)) != len(keys):
            raise ValueError(f"intake keys must all differ (got {keys})")
        if "#" in keys:
            raise ValueError("'#' ends a keyed case number; it cannot be an intake key")
        return self

    def command_keys(self) -> dict[str, str]:
        """key -> what it does at the greeting: a language code, service_info or
        check_status."""
        keys = {key: lang for lang, key in self.language_keys.items()}
        if self.service_info_key:
            keys[self.service_info_key] = "service_info"
        if self.check_status_key:
            keys[self.check_status_key] = "check_status"
        return keys
