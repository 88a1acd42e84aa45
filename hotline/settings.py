"""One typed settings object for the whole hotline.

Sources, lowest priority first: the embedded defaults below, a TOML file (``--config`` or
``HOTLINE_CONFIG``; else an installed hotline's /etc/hotline/hotline.toml), then environment
variables ``HOTLINE_<SECTION>__<KEY>`` (for example ``HOTLINE_AMI__PORT=5039``). Secrets that
no source provides are generated once and kept in ``<state_dir>/secrets.toml`` (mode 0600)
so nothing secret is ever committed.

Each layer owns its sections: ivr/settings.py (``[ami]``, ``[audiosocket]``, ``[intake]``),
speech/settings.py (``[speech]``) and crm/settings.py (``[web]``, ``[database]``,
``[survey]``, ``[retention]``); the shell keeps ``[asterisk]`` (it runs Asterisk) and
composes them all into :class:`Settings` here. The layers import only their own sections.

The state directory (database, journals, logs, prompt cache, secrets, pid file) is
``state_dir`` (``HOTLINE_STATE_DIR``); by default the checkout's ``var/`` when the hotline
runs from a source checkout (``make run``), else ``/var/lib/hotline``. Nothing is ever
written next to the code, so an installed package stays as pip installed it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from crm.settings import (
    CallbackSettings,
    DatabaseSettings,
    DispatchSettings,
    RepeatRequestSettings,
    RetentionSettings,
    ServiceLevelSettings,
    SurveySettings,
    TimeLimitSettings,
    WebSettings,
    assigned_queue,
)
from hotline.assets import checkout_root
from hotline.bus.settings import BusSettings
from hotline.edge.settings import NODE_NAME, EdgeSettings
from ivr.settings import (
    AmiSettings,
    AudioSocketSettings,
    IntakeSettings,
    QueueWaitSettings,
    ServiceHoursSettings,
    SipNetwork,
    language_queues,
)
from speech.settings import SpeechSettings

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
    metrics_port: int = Field(8088, ge=0, le=65535)
    """Asterisk's own metrics (res_prometheus) at http://127.0.0.1:<port>/metrics, on its
    HTTP server bound to loopback only; 0: no HTTP server, no metrics."""
    boot_timeout: float = Field(30.0, gt=0)
    """Seconds to wait for Asterisk to be fully booted (and, on stop, to exit)."""
    recordings_dir: Path | None = None
    """Where this host reads Asterisk's call recordings (its spool's monitor directory, or a
    mount of it, for an external Asterisk); None: the embedded Asterisk's, else
    /var/spool/asterisk/monitor."""
    recordings_asterisk_dir: str = Field("/var/spool/asterisk/monitor", pattern=r"^/")
    """The same directory as Asterisk names it (in the recording steps it announces)."""
    node_name: str = Field("", pattern=f"^({NODE_NAME})?$")
    """Empty: the one Asterisk of a single box (config in the root's /etc/asterisk). A name:
    one media node of a cluster (hotline.edge), with its own config, run, spool, log and lib
    directories in the root, named in its Uniqueids and the HOTLINE_NODE channel variable."""
    queue_handoff: list[Annotated[str, Field(pattern=r"^[0-9.]+:[0-9]{1,5}$")]] = Field(
        default_factory=list, max_length=2)
    """A media node of a cluster with a queue node (hotline.edge sets it): "address:port" of
    the queue node, then of its standby; callers are handed to them over SIP instead of
    Queue() here. Empty: Queue() here (one box)."""
    handoff_sources: list[SipNetwork] = Field(default_factory=list)
    """The queue node of a cluster (hotline.edge sets it): the media nodes' addresses, the
    only sources whose X-Hotline-* headers it reads. Empty: not a queue node."""
    call_record_file: Path | None = None
    """Asterisk's channel event record (cel_custom, hotline-calls.json in its log directory)
    as this host reads it; None: the embedded Asterisk's, else /var/log/asterisk's."""

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


class TrunkSettings(_Section):
    """[trunk]: the SIP trunk to the carrier (absent: none is rendered). Identified by the
    carrier's addresses (IP authentication), and/or registering to ``server`` as
    ``username`` with ``secret`` (kept in <state_dir>/secrets.toml under [trunk])."""

    addresses: list[SipNetwork] = Field(default_factory=list)
    """The carrier's signalling addresses: a request from one of them is the trunk's."""
    server: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
    """host[:port] to register to (registration); None: IP authentication only."""
    username: str | None = Field(None, pattern=r"^[A-Za-z0-9+._-]+$")
    secret: str = ""
    dtmf_mode: Literal["auto", "inband", "rfc4733", "info", "auto_info"] = "auto"
    """auto: RFC 4733 when the carrier offers it, else tones detected in the audio."""

    @model_validator(mode="after")
    def _identified(self) -> TrunkSettings:
        if not self.addresses and not self.server:
            raise ValueError("give the carrier's addresses, a registration server, or both")
        if self.server and not self.username:
            raise ValueError("registration (server) needs a username")
        if [n for n in self.addresses if n.endswith("/0")]:
            raise ValueError("addresses must be the carrier's own, not every address")
        return self


class SipTransportSettings(_Section):
    """[sip_transport]: a server behind NAT, and TLS (+ SRTP) for agent phones. Unset keys
    render nothing."""

    external_signaling_address: str | None = Field(None, pattern=r"^[A-Za-z0-9.:-]+$")
    external_media_address: str | None = Field(None, pattern=r"^[A-Za-z0-9.:-]+$")
    local_net: list[SipNetwork] = Field(default_factory=list)
    """Networks reached without NAT (the external addresses are not used toward them)."""
    tls_cert_file: str | None = Field(None, pattern=r"^/[^;\s\"]+$")
    tls_key_file: str | None = Field(None, pattern=r"^/[^;\s\"]+$")
    """Certificate and key (paths as Asterisk sees them): agent phones then use SIP over
    TLS and SRTP (SDES)."""
    tls_port: int = Field(5061, ge=1, le=65535)

    @model_validator(mode="after")
    def _tls_pair(self) -> SipTransportSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HOTLINE_", env_nested_delimiter="__", extra="forbid"
    )

    state_dir: Path = DEFAULT_STATE_DIR
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    """json: one JSON object per line, with the call id (hotline/logs.py)."""
    asterisk: AsteriskSettings = Field(default_factory=AsteriskSettings)
    ami: AmiSettings = Field(default_factory=AmiSettings)
    audiosocket: AudioSocketSettings = Field(default_factory=AudioSocketSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    survey: SurveySettings = Field(default_factory=SurveySettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    queue_wait: QueueWaitSettings = Field(default_factory=QueueWaitSettings)
    service_hours: ServiceHoursSettings = Field(default_factory=ServiceHoursSettings)
    service_levels: ServiceLevelSettings = Field(default_factory=ServiceLevelSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
    time_limits: TimeLimitSettings = Field(default_factory=TimeLimitSettings)
    repeat_requests: RepeatRequestSettings = Field(default_factory=RepeatRequestSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    bus: BusSettings = Field(default_factory=BusSettings)
    trunk: TrunkSettings | None = None
    sip_transport: SipTransportSettings = Field(default_factory=SipTransportSettings)

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


def queues_by_language(settings: Settings) -> dict[str, str]:
    """Language -> the queue its callers wait in: the default language's is the main queue
    (``asterisk.queue_name``), every other language's ``<queue_name>-<lang>``."""
    return language_queues(settings.asterisk.queue_name, settings.speech.default_language)


def hotline_queues(settings: Settings) -> tuple[str, ...]:
    """Every queue of the hotline, the main queue first and the assigned-callbacks queue
    last: what the watchers of the queues (queue tracker, wallboard, desk) accept."""
    return (*dict.fromkeys(queues_by_language(settings).values()),
            assigned_callback_queue(settings))


def assigned_callback_queue(settings: Settings) -> str:
    """The queue of callbacks a supervisor assigned to one agent (each agent's id is their
    penalty there)."""
    return assigned_queue(settings.asterisk.queue_name)


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


def fill_missing_secrets(settings: Settings) -> None:
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
    if settings.trunk is not None and not settings.trunk.secret:
        settings.trunk.secret = str(stored.get("trunk", {}).get("secret", ""))
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


SYSTEM_CONFIG = Path("/etc/hotline/hotline.toml")
"""An installed hotline's settings file (deploy/), read when nothing else is named."""


def settings_file(path: str | Path | None = None) -> Path | None:
    """The settings file in force: ``path`` (``--config``), else ``HOTLINE_CONFIG``, else
    /etc/hotline/hotline.toml when it exists and the hotline is not run from a checkout."""
    named = path or os.environ.get("HOTLINE_CONFIG")
    if named:
        return Path(named)
    return SYSTEM_CONFIG if checkout_root() is None and SYSTEM_CONFIG.is_file() else None


def load_settings(path: str | Path | None = None, *, fill_secrets: bool = True) -> Settings:
    """Load and validate settings; raise SettingsError with every bad key named."""
    path = settings_file(path)
    data: dict[str, Any] = _read_toml(Path(path)) if path else {}
    origin = f"{path} + environment" if path else "defaults + environment"
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise SettingsError(_format_errors(exc, origin)) from None
    if fill_secrets:
        try:
            fill_missing_secrets(settings)
        except OSError as exc:
            raise SettingsError(
                f"cannot keep secrets in the state directory {settings.state_dir}: {exc}; set "
                "HOTLINE_STATE_DIR (or state_dir in the settings file) to a directory this "
                "user may write") from None
    return settings
