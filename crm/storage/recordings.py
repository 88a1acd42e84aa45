"""Call recordings and spoken survey comments on disk, found safely.

Asterisk's MixMonitor writes each agent conversation into its spool monitor directory as
``<CALL_ID>.wav`` (dialplan ``[hotline-record]``) and announces the file, which becomes the
consultation's ``recording`` step. This host may reach that directory under another path
(Asterisk in a chroot), so :class:`RecordingStore` maps Asterisk's path to the host's and
refuses anything outside the monitor directory. Spoken survey comments are wav files the
IVR writes in the survey comment directory; :func:`survey_comment_file` finds one there and
nowhere else. The console plays both (crm.web.console.recordings); retention removes them
(crm.audit.retention).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CONTENT_TYPES = {".wav": "audio/wav", ".gsm": "audio/x-gsm", ".ogg": "audio/ogg",
                 ".mp3": "audio/mpeg"}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def survey_comment_file(directory: Path | None, stored: str | None) -> Path | None:
    """The comment's wav file, only if it is inside ``directory`` and there."""
    if directory is None or not stored:
        return None
    root = directory.resolve()
    path = (root / stored).resolve()  # an absolute ``stored`` replaces root
    if not path.is_relative_to(root) or path.suffix.lower() != ".wav" or not path.is_file():
        return None
    return path


@dataclass(frozen=True)
class RecordingStore:
    host_dir: Path
    """The monitor directory as this server reaches it."""
    asterisk_dir: str = "/var/spool/asterisk/monitor"
    """The same directory as Asterisk names it (in recording announcements)."""

    def locate(self, call_id: str, announced: str | None) -> Path | None:
        """The recording file of a call: the announced one if it lies in the monitor
        directory, else ``<call_id>.wav``; None when there is no such file."""
        for name in (self._relative(announced), f"{call_id}.wav"):
            if name is None:
                continue
            path = self._inside(name)
            if path is not None and path.is_file() and path.suffix.lower() in CONTENT_TYPES:
                return path
        return None

    def _relative(self, announced: str | None) -> str | None:
        if not announced:
            return None
        path = PurePosixPath(announced)
        if not path.is_absolute():
            return str(path)
        try:
            return str(path.relative_to(self.asterisk_dir))
        except ValueError:
            return None

    def _inside(self, relative: str) -> Path | None:
        parts = PurePosixPath(relative).parts
        if not parts or any(not _SAFE_NAME.fullmatch(p) for p in parts):
            return None
        root = self.host_dir.resolve()
        path = (root / Path(*parts)).resolve()
        return path if path.is_relative_to(root) else None
