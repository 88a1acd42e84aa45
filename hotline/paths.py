"""Where the hotline's files are on this host, and which of them hold residents' data.

The state directory's parts (survey comments; the prompt cache is speech's own), Asterisk's
call recordings as this host reaches them, and the trees that
:func:`crm.storage.private_files.tighten_all` narrows at
start-up (owner-only for the service's files, group-readable for Asterisk's).
"""

from __future__ import annotations

import logging
from pathlib import Path

from crm.storage.private_files import (
    ASTERISK_DIR_MODE,
    ASTERISK_FILE_MODE,
    DIR_MODE,
    PrivateTree,
)
from crm.storage.recordings import RecordingStore
from hotline.asterisk.layout import Installation
from hotline.settings import Settings
from speech.stack import prompt_cache_dir

log = logging.getLogger(__name__)


def survey_comments_dir(settings: Settings) -> Path:
    """Residents' spoken survey comments (wav files)."""
    return settings.survey.recordings_dir or settings.state_dir / "survey-comments"


def recording_store(settings: Settings) -> RecordingStore | None:
    """Where Asterisk's call recordings are, seen from this host: ``asterisk.recordings_dir``
    when set, else the monitor spool of the Asterisk that ``hotline up`` started (in its
    root), else a local Asterisk's default."""
    configured = settings.asterisk.recordings_dir
    if configured is not None:
        if not configured.is_dir():
            log.warning("asterisk.recordings_dir %s is not a directory here: the console cannot "
                        "play call recordings", configured)
            return None
        return RecordingStore(configured, settings.asterisk.recordings_asterisk_dir)
    installation = Installation.load(settings.state_dir)
    if installation is not None:
        inner = f"{installation.dirs.spool}/monitor"
        return RecordingStore(installation.host_path(inner), inner)
    default = Path("/var/spool/asterisk/monitor")
    if default.is_dir():
        return RecordingStore(default)
    log.warning("call recordings are not reachable from this host: the console cannot play "
                "them")
    return None


def service_trees(settings: Settings) -> list[PrivateTree]:
    """What the hotline service keeps of residents' data outside the database server: its
    state directory, journals, logs, spoken survey comments, the prompt cache (prompts read
    out case details), secrets and the pid file. A SQLite database is tightened where it is
    opened (:func:`crm.storage.db.make_engine`)."""
    state = settings.state_dir
    return [PrivateTree(state, dir_mode=_state_dir_mode(settings), recursive=False),
            PrivateTree(state / "journal"), PrivateTree(state / "log"),
            PrivateTree(survey_comments_dir(settings)),
            PrivateTree(prompt_cache_dir(settings)),
            PrivateTree(state / "secrets.toml"), PrivateTree(state / "hotline.pid")]


def asterisk_trees(settings: Settings, recordings_dir: Path | None) -> list[PrivateTree]:
    """Asterisk's files with residents' data: the call recordings the console plays and,
    for the Asterisk ``hotline up`` runs, its logs (caller numbers, queue_log). Group
    readable (the hotline reads them through Asterisk's group), nothing for others."""
    trees = []
    if recordings_dir is not None:
        trees.append(PrivateTree(recordings_dir, ASTERISK_FILE_MODE, ASTERISK_DIR_MODE))
    if settings.asterisk.mode == "embedded":
        installation = Installation.load(settings.state_dir)
        if installation is not None:
            trees.append(PrivateTree(installation.host_path(installation.dirs.log),
                                     ASTERISK_FILE_MODE, ASTERISK_DIR_MODE))
    return trees


def _state_dir_mode(settings: Settings) -> int:
    """0700, except when a system Asterisk keeps its own tree in the state directory
    (``<state_dir>/asterisk``): then its user must pass through (0711, nothing listable)."""
    installation = Installation.load(settings.state_dir)
    if installation is not None and installation.kind == "system":
        return 0o711
    return DIR_MODE
