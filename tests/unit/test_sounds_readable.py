"""Asterisk reads the queue prompts as its own user: the directories down to them must let it
in, whatever umask or tar made them (CI failed when an operator-guide test had unpacked
sounds with 0750 directories into the shared test root)."""

from __future__ import annotations

import os
from pathlib import Path

from hotline.asterisk.sounds import _readable_dirs


def test_private_directories_down_to_the_prompts_are_opened(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    leaf = sounds / "cmn" / "hotline"
    leaf.mkdir(parents=True)
    elsewhere = tmp_path / "private"
    elsewhere.mkdir()
    for directory in (sounds, sounds / "cmn", leaf, elsewhere):
        os.chmod(directory, 0o700)
    _readable_dirs(sounds, {leaf, elsewhere})
    for directory in (sounds, sounds / "cmn", leaf):
        assert directory.stat().st_mode & 0o777 == 0o755, directory
    assert elsewhere.stat().st_mode & 0o777 == 0o700  # outside the sounds: left alone
