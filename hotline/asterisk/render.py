"""Render the Asterisk configuration from the hotline's jinja2 templates and the settings.

Templates live in ``asterisk-config/*.j2`` (one per Asterisk config file) and
``dialplans/*.j2`` (included from extensions.conf), found through :mod:`hotline.assets`
(a checkout's top-level folders, or their copies inside an installed wheel). Secrets come
from the settings only, so the templates on disk never hold one.
"""

from __future__ import annotations

import os
import re
from ipaddress import ip_network
from pathlib import Path

import jinja2

from hotline.assets import ASTERISK_CONFIG, DIALPLANS, asset_dir
from hotline.asterisk.errors import AsteriskError
from hotline.asterisk.layout import AsteriskDirs
from hotline.asterisk.local_config import ensure_local_files, include_line
from hotline.settings import Settings, assigned_callback_queue, hotline_queues
from ivr.asterisk.call_records import CEL_FILE

LANGUAGE_RULE = "hotline-language"
"""The queuerules.conf rule every hotline caller waits under: first the agents who speak
their language, then anyone ([intake] language_fallback_after)."""

BANNER = "Rendered by hotline.asterisk.render from the hotline repository; edits are overwritten."
SECRET_FILES = frozenset({"pjsip.conf", "manager.conf"})
_UNSAFE_VALUE = re.compile(r"[;\s\"\\\[\]]")


class ConfigRenderError(AsteriskError):
    """A setting cannot be written safely into an Asterisk config file."""


def _environment() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader([asset_dir(ASTERISK_CONFIG), asset_dir(DIALPLANS)])
    return jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _check_values(settings: Settings) -> None:
    """Refuse values that would change the meaning of a config line (comments, sections)."""
    values = {
        "ami.secret": settings.ami.secret,
        "ami.username": settings.ami.username,
        "asterisk.softphone_password": settings.asterisk.softphone_password,
    }
    if settings.trunk is not None and settings.trunk.server:
        values["trunk.secret"] = settings.trunk.secret
    passwords = settings.asterisk.agent_passwords
    for extension in settings.asterisk.agent_extensions:
        values[f"asterisk.agent_passwords.{extension}"] = passwords.get(extension, "")
    for key, value in values.items():
        if not value and key == "trunk.secret":
            raise ConfigRenderError(
                "trunk.secret is empty: registration needs the carrier's password; put it "
                f'in {settings.state_dir / "secrets.toml"} as [trunk] secret = "..."')
        if not value:
            raise ConfigRenderError(
                f"{key} is empty; load settings with load_settings() so secrets are generated"
            )
        if _UNSAFE_VALUE.search(value):
            raise ConfigRenderError(
                f"{key} contains a character Asterisk config files cannot hold "
                "(whitespace, ; \" \\ [ ]); choose another value"
            )
    _check_distinct_passwords(settings)
    _check_trunk_apart(settings)


def _check_distinct_passwords(settings: Settings) -> None:
    """Each phone has its own password: one agent must not know how to register as another."""
    owners = {settings.asterisk.softphone_password: settings.asterisk.softphone_user}
    for extension in settings.asterisk.agent_extensions:
        password = settings.asterisk.agent_passwords[extension]
        if password in owners:
            raise ConfigRenderError(
                f"asterisk.agent_passwords: {owners[password]} and {extension} share a "
                "password; every phone needs its own"
            )
        owners[password] = extension


def _check_trunk_apart(settings: Settings) -> None:
    """A source address identifies one endpoint: the carrier trunk or the PSTN gateway."""
    if settings.trunk is None:
        return
    for trunk in settings.trunk.addresses:
        for gateway in settings.asterisk.gateway_addresses:
            if ip_network(trunk, strict=False).overlaps(ip_network(gateway, strict=False)):
                raise ConfigRenderError(
                    f"trunk.addresses {trunk} overlaps asterisk.gateway_addresses {gateway}: "
                    "an address is either the carrier trunk's or the gateway's")


def _template_names(env: jinja2.Environment) -> list[str]:
    names = env.list_templates(filter_func=lambda name: name.endswith(".j2"))
    return sorted(set(names))


def render_config(settings: Settings, dirs: AsteriskDirs | None = None) -> dict[str, str]:
    """Render every template; return {config file name: text}. Pure: touches no files."""
    _check_values(settings)
    env = _environment()
    dirs = dirs or AsteriskDirs()
    env.globals["local_include"] = lambda name: include_line(dirs, name)
    context = {
        "banner": BANNER,
        "a": settings.asterisk,
        "queues": hotline_queues(settings),
        "assigned_queue": assigned_callback_queue(settings),
        "intake": settings.intake,
        "language_rule": LANGUAGE_RULE,
        "ami": settings.ami,
        "audiosocket": settings.audiosocket,
        "dirs": dirs,
        "tone_zone": "cn",
        "qw": settings.queue_wait,
        "hours": settings.service_hours,
        "default_language": settings.speech.default_language,
        "cel_file": CEL_FILE,
        "trunk": settings.trunk,
        "st": settings.sip_transport,
        "edge": settings.edge,
    }
    return {
        name.removesuffix(".j2"): env.get_template(name).render(context)
        for name in _template_names(env)
    }


def install_config(
    settings: Settings,
    etc_dir: Path,
    *,
    dirs: AsteriskDirs | None = None,
    gid: int | None = None,
) -> list[Path]:
    """Write the rendered config into ``etc_dir`` so that only our files remain there.

    Other ``*.conf`` files (the package's stock ones) are removed, files are replaced
    atomically so a reload never reads half a file, and files holding secrets are mode 0640
    (group ``gid`` when given, so a non-root Asterisk can read them).
    """
    rendered = render_config(settings, dirs)
    etc_dir.mkdir(parents=True, exist_ok=True)
    for stale in etc_dir.glob("*.conf"):
        if stale.name not in rendered:
            stale.unlink()
    ensure_local_files(etc_dir, gid)
    written = []
    for name, text in rendered.items():
        written.append(_write_file(etc_dir / name, text, gid, secret=name in SECRET_FILES))
    return written


def _write_file(path: Path, text: str, gid: int | None, *, secret: bool) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    mode = 0o640 if secret or gid is not None else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    if gid is not None:
        os.chown(tmp, 0, gid)
    os.replace(tmp, path)
    return path
