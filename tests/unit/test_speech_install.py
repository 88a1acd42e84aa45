import tarfile
import zipfile
from pathlib import Path

import pytest

from speech.install import (
    ModelInstallError,
    configuration_hint,
    install_model,
    installed_model,
    model_layout_problems,
)

MODEL_FILES = ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf", "graph/HCLr.fst",
               "graph/Gr.fst", "ivector/final.ie")


def make_model_dir(path: Path) -> Path:
    for rel in MODEL_FILES:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(rel)
    return path


def test_a_model_directory_is_copied_and_marked_current(tmp_path: Path) -> None:
    source = make_model_dir(tmp_path / "vosk-model-small-cn-0.22")
    dest = install_model("cmn", source, tmp_path / "models")
    assert dest == tmp_path / "models" / "cmn" / "vosk-model-small-cn-0.22"
    assert (dest / "am" / "final.mdl").read_text() == "am/final.mdl"
    assert installed_model("cmn", tmp_path / "models") == dest
    assert source.exists()  # copied, not moved
    assert 'speech.models] cmn = "' in configuration_hint("cmn", dest)


def test_a_zip_with_one_top_folder_is_unpacked(tmp_path: Path) -> None:
    source = make_model_dir(tmp_path / "src" / "vosk-model-small-en-us-0.15")
    archive = tmp_path / "vosk-model-small-en-us-0.15.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel in MODEL_FILES:
            zf.write(source / rel, f"vosk-model-small-en-us-0.15/{rel}")
    dest = install_model("en", archive, tmp_path / "models")
    assert dest.name == "vosk-model-small-en-us-0.15"
    assert not model_layout_problems(dest)
    assert [p.name for p in (tmp_path / "models" / "en").iterdir()
            if p.name.startswith(".")] == []  # staging removed


def test_a_flat_tar_gz_is_named_after_the_archive(tmp_path: Path) -> None:
    source = make_model_dir(tmp_path / "src")
    archive = tmp_path / "my-model.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for rel in MODEL_FILES:
            tf.add(source / rel, rel)
    dest = install_model("ko", archive, tmp_path / "models")
    assert dest == tmp_path / "models" / "ko" / "my-model"
    assert installed_model("ko", tmp_path / "models") == dest


def test_reinstall_needs_overwrite_and_a_new_install_becomes_current(tmp_path: Path) -> None:
    root = tmp_path / "models"
    source = make_model_dir(tmp_path / "m")
    install_model("en", source, root)
    with pytest.raises(ModelInstallError, match="already exists"):
        install_model("en", source, root)
    install_model("en", source, root, overwrite=True)
    second = install_model("en", source, root, name="m2")
    assert installed_model("en", root) == second


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "nothing-here", "no such file or directory"),
        (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt",
         "expected a model directory or a .zip/.tar.gz"),
        (lambda p: (p / "empty").mkdir() or p / "empty",
         "is not a vosk model: missing am/final.mdl"),
        (lambda p: (p / "bad.zip").write_bytes(b"not a zip") and p / "bad.zip", "cannot unpack"),
    ],
)
def test_bad_sources_are_explained(tmp_path: Path, setup, message: str) -> None:
    with pytest.raises(ModelInstallError, match=message):
        install_model("cmn", setup(tmp_path), tmp_path / "models")


def test_an_archive_without_a_model_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ModelInstallError, match="does not contain a vosk model"):
        install_model("cmn", archive, tmp_path / "models")


def test_path_traversal_in_a_zip_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../escaped.txt", "x")
    with pytest.raises(ModelInstallError, match="unsafe path"):
        install_model("cmn", archive, tmp_path / "models")
    assert not (tmp_path / "escaped.txt").exists()


def test_unknown_language_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        install_model("fr", make_model_dir(tmp_path / "m"), tmp_path / "models")


def test_layout_check_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "final.mdl").write_text("x")
    problems = model_layout_problems(tmp_path)
    assert problems == ["missing conf/mfcc.conf (feature settings)",
                        "missing graph/HCLG.fst or graph/HCLr.fst + graph/Gr.fst "
                        "(decoding graph)"]
