"""Sound files Asterisk plays by itself, written at install time next to its own sounds.

- The queue announcements (app_queue's ``queue-*`` sounds, named in queues.conf) and the
  closed-hours and callback messages, per language, from the packs' ``[queue_prompts]``
  synthesised with the IVR's TTS: ``<data>/sounds/<lang>/hotline/<name>.ulaw``. Asterisk
  picks the directory of the channel's language (CHANNEL(language): cmn, en, ko).
- The number words Asterisk says a position or a wait with (``digits/<n>``) for the
  languages Debian ships no sounds for (cmn, ko): ``<data>/sounds/<lang>/digits/<n>.ulaw``.
- A default hold music file (a soft tone sequence made here, nothing downloaded) in the
  ``[queue_wait] hold_music_dir``, unless the operator has put their own audio there.

Files are µ-law: the callers' codec, so Asterisk plays them without transcoding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import struct
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from hotline.asterisk.layout import Installation
from hotline.settings import Settings
from speech.languages import LANGUAGES
from speech.queue_prompts import number_texts, queue_prompt_texts
from speech.stack import prompt_cache_dir, prompt_override_dir
from speech.tts import SAMPLE_RATE, PromptSynthesizer

log = logging.getLogger(__name__)

SOUND_DIR: Final = "hotline"
"""Subdirectory of each language's sounds holding the hotline's files."""
HOLD_MUSIC_FILE: Final = "hotline-hold.ulaw"
AUDIO_SUFFIXES: Final = frozenset({".wav", ".ulaw", ".ul", ".alaw", ".al", ".gsm", ".sln",
                                   ".g722", ".mp3"})
LANGUAGES_WITHOUT_SOUNDS: Final = ("cmn", "ko")
"""Debian ships English sounds only: these languages get their own number words."""


def sound_name(prompt_id: str) -> str:
    """The file name (without extension) of a queue prompt: queue_thereare -> queue-thereare."""
    return prompt_id.replace("_", "-")


def sound_ref(prompt_id: str) -> str:
    """How queues.conf and the dialplan name a prompt: hotline/queue-thereare."""
    return f"{SOUND_DIR}/{sound_name(prompt_id)}"


def ulaw(pcm: bytes) -> bytes:
    """8 kHz s16le PCM -> µ-law (G.711), as Asterisk's .ulaw format stores it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    return audioop.lin2ulaw(pcm, 2)


def hold_tones(seconds: float = 16.0, level: float = 0.12) -> bytes:
    """A calm, soft tone sequence (8 kHz s16le): a slow pentatonic pattern of notes with soft
    attack and long release, about -20 dBFS, looping without a click."""
    notes = (523.25, 659.25, 783.99, 659.25, 587.33, 698.46, 880.0, 698.46)
    note_len = seconds / len(notes)
    samples = []
    per_note = int(note_len * SAMPLE_RATE)
    for freq in notes:
        for i in range(per_note):
            t = i / SAMPLE_RATE
            envelope = min(1.0, t / 0.08) * math.exp(-2.2 * t / note_len)
            tone = math.sin(2 * math.pi * freq * t) + 0.3 * math.sin(2 * math.pi * freq / 2 * t)
            samples.append(int(32767 * level * envelope * tone / 1.3))
    return struct.pack(f"<{len(samples)}h", *samples)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _readable_dirs(top: Path, leaves: set[Path]) -> None:
    """``top`` and every directory from it down to each of ``leaves`` open to all (rx): the
    prompts are not personal data, and Asterisk reads them as another user."""
    dirs = {top}
    for leaf in leaves:
        if leaf.is_relative_to(top):
            for parent in (leaf, *leaf.parents):
                if parent == top or not parent.is_relative_to(top):
                    break
                dirs.add(parent)
    for directory in dirs:
        try:
            mode = directory.stat().st_mode & 0o7777
            if mode & 0o555 != 0o555:
                os.chmod(directory, mode | 0o555)
        except OSError as exc:
            log.warning("queue sounds: %s could not be opened to Asterisk: %s", directory, exc)


MANIFEST: Final = "hotline-sounds.json"
"""Below <data>/sounds: relative path -> the TTS cache key of the text it holds, so an
install synthesises only what changed (a new text, voice or callback key)."""


def _wanted(settings: Settings, synth: PromptSynthesizer) -> dict[str, tuple[str, str]]:
    """Relative path below <data>/sounds (cmn/hotline/queue-thereare.ulaw) -> (lang, text)."""
    key = settings.queue_wait.callback_key
    wanted: dict[str, tuple[str, str]] = {}
    for lang in LANGUAGES:
        for pid, text in queue_prompt_texts(
                lang, callback_key=key, override_dir=prompt_override_dir(settings)).items():
            wanted[f"{lang}/{SOUND_DIR}/{sound_name(pid)}.ulaw"] = (lang, text)
        if lang in LANGUAGES_WITHOUT_SOUNDS:
            for name, text in number_texts(lang).items():
                wanted[f"{lang}/digits/{name}.ulaw"] = (lang, text)
    return wanted


async def _synthesise(settings: Settings, where: Callable[[str], Path],
                      ) -> tuple[dict[str, bytes], dict[str, str]]:
    """(audio for each file that is missing or stale, the new manifest)."""
    synth = PromptSynthesizer(prompt_cache_dir(settings), prompt_override_dir(settings))
    try:
        old = json.loads(where(MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    wanted = _wanted(settings, synth)
    manifest = {path: synth.cache_key(lang, text) for path, (lang, text) in wanted.items()}
    todo = [path for path in wanted
            if old.get(path) != manifest[path] or not where(path).is_file()]
    try:
        pcm = await asyncio.gather(*(synth.audio(wanted[path][0], None, wanted[path][1])
                                     for path in todo))
    finally:
        await synth.close()
    return {path: ulaw(audio) for path, audio in zip(todo, pcm, strict=True)}, manifest


def install_sounds(settings: Settings, inst: Installation) -> list[Path]:
    """Write the queue prompts, number words and default hold music into the installation;
    return what was written."""
    def where(relative: str) -> Path:
        # Per file: a language directory may be a symlink inside the root (en -> Allison's).
        return inst.host_path(f"{inst.dirs.data}/sounds/{relative}")

    return write_sounds(settings, where, inst.host_path(settings.queue_wait.hold_music_dir))


def write_sounds(settings: Settings, where: Callable[[str], Path],
                 music_dir: Path) -> list[Path]:
    """Write the sounds below ``where("")`` (Asterisk's sounds directory) and the default
    hold music into ``music_dir`` (for an Asterisk you run: ``hotline asterisk render``).

    Runs the TTS on its own event loop in a worker thread, so it may be called from sync code
    and from inside a running loop alike."""
    with ThreadPoolExecutor(1, thread_name_prefix="hotline-sounds") as pool:
        files, manifest = pool.submit(asyncio.run, _synthesise(settings, where)).result()
    written = []
    for relative, data in files.items():
        _write(where(relative), data)
        written.append(where(relative))
    sounds = where("")
    _write(sounds / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    if (music := install_hold_music(music_dir)):
        written.append(music)
    # Asterisk runs as its own user: every directory down to the sounds must let it in, even
    # one made under the service's private umask or unpacked by an operator's tar.
    _readable_dirs(sounds, {where(relative).parent for relative in manifest})
    _readable_dirs(music_dir, {music_dir})
    log.info("queue sounds: %d of %d files written", len(files), len(manifest))
    return written


def install_hold_music(directory: Path) -> Path | None:
    """The default hold music in ``directory`` unless the operator put their own audio there
    (then the default is removed, so only theirs plays). Returns the file written, if any."""
    directory.mkdir(parents=True, exist_ok=True)
    default = directory / HOLD_MUSIC_FILE
    own = [p for p in directory.iterdir()
           if p.suffix.lower() in AUDIO_SUFFIXES and p.name != HOLD_MUSIC_FILE]
    if own:
        if default.exists():
            default.unlink()
            log.info("hold music: %s replaced by the operator's %s", default, own[0].name)
        return None
    data = ulaw(hold_tones())
    if default.is_file() and default.read_bytes() == data:
        return None
    _write(default, data)
    return default
