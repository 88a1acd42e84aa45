"""Speech and prompts: which languages have a recogniser model and which fall back to the
keypad, whether the prompt voice (espeak-ng) is there, and whether Asterisk has the queue
sounds the hotline installs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hotline.asterisk.layout import Installation
from hotline.asterisk.sounds import MANIFEST
from hotline.doctor.findings import Finding, fail, ok, warn
from hotline.settings import Settings
from speech.install import model_layout_problems
from speech.languages import LANGUAGE_NAMES, LANGUAGES
from speech.models import SpeechModels
from speech.stack import prompt_override_dir


def check_speech(settings: Settings, health: dict[str, Any] | None = None) -> list[Finding]:
    """One line per language, from the settings and the files (models are not loaded: that
    takes seconds and half a gigabyte each); ``health`` is a running service's /healthz,
    whose speech section says what it really loaded."""
    models = SpeechModels.from_settings(settings, loader=_never_load)
    loaded = ((health or {}).get("speech") or {}).get("languages") or {}
    found = []
    for lang in LANGUAGES:
        check = f"speech {lang}"
        path, source = models.resolve(lang)
        if path is None:
            found.append(warn(check, f"{LANGUAGE_NAMES[lang]} callers use the keypad only: "
                              f"{source.split(':')[0]}",
                              f"set speech.models.{lang} = \"/path/to/model\" or `hotline "
                              f"speech install-model {lang} PATH-OR-ARCHIVE`"))
            continue
        problems = model_layout_problems(path)
        if problems:
            found.append(fail(check, f"{source} names {path}, which is not a usable vosk "
                              f"model: {'; '.join(problems)}",
                              f"install the model there, or correct speech.models.{lang} "
                              f"(`hotline speech install-model {lang} PATH-OR-ARCHIVE`)"))
            continue
        running = loaded.get(lang)
        if running is not None and not running.get("speech"):
            found.append(fail(check, f"model {path} present, but the running service "
                              f"reports: {running.get('reason')}",
                              "see the service's log (journalctl -u hotline), then restart it"))
            continue
        found.append(ok(check, f"speech recognition from {path} ({source})"
                        + ("; loaded by the running service" if running else "")))
    return found


def check_prompts(settings: Settings) -> list[Finding]:
    found = []
    espeak = shutil.which("espeak-ng")
    recordings = _override_recordings(prompt_override_dir(settings))
    if espeak is None:
        found.append(fail("prompt voice", "espeak-ng is not installed: prompts without an "
                          f"operator recording ({len(recordings)} recorded) cannot be spoken",
                          "apt-get install espeak-ng"))
    else:
        found.append(ok("prompt voice", f"espeak-ng at {espeak}; {len(recordings)} operator "
                        f"recording(s) in {prompt_override_dir(settings)}"))
    inst = Installation.load(settings.state_dir)
    if inst is None:
        found.append(warn("queue sounds", "no Asterisk installed by `hotline asterisk up` "
                          "here: cannot see the queue sounds of the Asterisk you run",
                          "after `hotline asterisk render DIR`, copy DIR/sounds into "
                          "Asterisk's sounds directory"))
        return found
    sounds = inst.host_path(f"{inst.dirs.data}/sounds")
    try:
        manifest = json.loads((sounds / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        found.append(fail("queue sounds", f"{sounds / MANIFEST} is missing: queued callers "
                          "hear no position or closing announcements",
                          "`hotline asterisk up` installs them (or `hotline asterisk render`)"))
        return found
    # Per file: a language directory may be a symlink inside the root (en -> Allison's).
    missing = [path for name in manifest
               if not (path := inst.host_path(f"{inst.dirs.data}/sounds/{name}")).is_file()]
    if missing:
        found.append(fail("queue sounds", f"{len(missing)} of {len(manifest)} missing, e.g. "
                          f"{missing[0]}", "`hotline asterisk up` writes them again"))
    else:
        found.append(ok("queue sounds", f"{len(manifest)} files in {sounds}"))
    return found


def _override_recordings(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*/*.wav"))[:10_000]


def _never_load(path: str) -> Any:
    raise RuntimeError("the doctor does not load speech models")
