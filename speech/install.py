"""Installing a vosk model for a language from a directory or a .zip / .tar.gz archive.

Models go to ``<dest_root>/<lang>/<name>`` (``dest_root`` is ``speech.installed_models_dir``,
by default ``<state_dir>/speech-models``) and ``<dest_root>/<lang>/current`` names the one
in use. ``SpeechModels`` picks it up at the next start unless ``speech.models.<lang>`` is
set in the settings file, which always wins. No settings file is rewritten.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from speech.languages import Language, check_language
from speech.model_manifest import file_sha256, write_manifest

log = logging.getLogger(__name__)

CURRENT_FILE = "current"
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class ModelInstallError(Exception):
    """The source is missing, not a vosk model, or could not be unpacked; says which."""


def model_layout_problems(path: Path) -> list[str]:
    """What is missing for ``path`` to be a vosk model directory ([] when it looks right).

    A vosk model has an acoustic model (am/final.mdl), feature settings (conf/mfcc.conf)
    and a decoding graph (graph/HCLG.fst, or graph/HCLr.fst + graph/Gr.fst for models that
    accept runtime grammars). Older models keep the same files at the top level.
    """
    if not path.exists():
        return [f"{path} does not exist"]
    if not path.is_dir():
        return [f"{path} is not a directory"]

    def has(*names: str) -> bool:
        return any((path / name).is_file() for name in names)

    problems = []
    if not has("am/final.mdl", "final.mdl"):
        problems.append("missing am/final.mdl (acoustic model)")
    if not has("conf/mfcc.conf", "mfcc.conf"):
        problems.append("missing conf/mfcc.conf (feature settings)")
    lookahead = has("graph/HCLr.fst") and has("graph/Gr.fst")
    if not (has("graph/HCLG.fst", "HCLG.fst") or lookahead):
        problems.append("missing graph/HCLG.fst or graph/HCLr.fst + graph/Gr.fst (decoding graph)")
    return problems


def find_model_root(path: Path, *, depth: int = 2) -> Path | None:
    """``path`` itself or the directory below it (archives wrap models in one folder)."""
    if not model_layout_problems(path):
        return path
    if depth == 0 or not path.is_dir():
        return None
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        found = find_model_root(child, depth=depth - 1)
        if found is not None:
            return found
    return None


def installed_model(lang: str, dest_root: Path) -> Path | None:
    """The model ``install_model`` last installed for ``lang``, if it is still there."""
    lang_dir = dest_root / check_language(lang)
    try:
        name = (lang_dir / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    path = lang_dir / name
    return path if name and path.is_dir() else None


def configuration_hint(lang: str, path: Path) -> str:
    return (f"{lang}: model installed at {path}; it is used from the next start. "
            f"To pin it in the settings file instead: [speech.models] {lang} = \"{path}\"")


def _archive_kind(source: Path) -> str | None:
    name = source.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    return None


def _archive_stem(source: Path) -> str:
    name = source.name
    for suffix in (".zip", *_TAR_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return source.stem


def _extract_zip(source: Path, into: Path) -> None:
    with zipfile.ZipFile(source) as archive:
        root = into.resolve()
        for member in archive.infolist():
            target = (into / member.filename).resolve()
            if not target.is_relative_to(root):
                raise ModelInstallError(f"{source}: unsafe path in archive: {member.filename!r}")
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise ModelInstallError(f"{source}: symbolic link in archive: {member.filename!r}")
        archive.extractall(into)


def _extract(source: Path, kind: str, into: Path) -> None:
    try:
        if kind == "zip":
            _extract_zip(source, into)
        else:
            with tarfile.open(source) as archive:
                archive.extractall(into, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise ModelInstallError(f"{source}: cannot unpack: {exc}") from exc


def _mark_current(lang_dir: Path, name: str) -> None:
    tmp = lang_dir / f".{CURRENT_FILE}.tmp"
    tmp.write_text(name + "\n", encoding="utf-8")
    os.replace(tmp, lang_dir / CURRENT_FILE)


def install_model(
    lang: str, source: Path, dest_root: Path, *, name: str | None = None, overwrite: bool = False,
    origin: str | None = None,
) -> Path:
    """Validate and copy (or unpack) a vosk model into ``dest_root/lang/<name>``.

    Returns the installed model directory and marks it current for ``lang``. ``name``
    defaults to the model folder's name (e.g. vosk-model-small-cn-0.22). Records the source
    (and ``origin``, the URL it was downloaded from, when given) and the SHA-256 of every
    file in ``<name>.manifest.json`` beside it (speech/model_manifest.py). Raises
    ModelInstallError with a message an operator can act on.
    """
    language: Language = check_language(lang)
    source = Path(source).expanduser()
    if not source.exists():
        raise ModelInstallError(f"{source}: no such file or directory")
    kind = None if source.is_dir() else _archive_kind(source)
    if not source.is_dir() and kind is None:
        raise ModelInstallError(
            f"{source}: expected a model directory or a .zip/.tar.gz archive of one")
    lang_dir = dest_root / language
    lang_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".install-", dir=lang_dir) as tmp:
        staging = Path(tmp)
        if kind is None:
            root = find_model_root(source)
            if root is None:
                problems = "; ".join(model_layout_problems(source))
                raise ModelInstallError(f"{source} is not a vosk model: {problems}")
            default_name = root.name
        else:
            _extract(source, kind, staging / "unpacked")
            root = find_model_root(staging / "unpacked")
            if root is None:
                problems = "; ".join(model_layout_problems(staging / "unpacked"))
                raise ModelInstallError(f"{source} does not contain a vosk model: {problems}")
            default_name = root.name if root != staging / "unpacked" else _archive_stem(source)
        model_name = name or default_name
        if not model_name or "/" in model_name or model_name.startswith("."):
            raise ModelInstallError(f"invalid model name {model_name!r}")
        dest = lang_dir / model_name
        if dest.resolve() == root.resolve():
            write_manifest(language, dest, source=str(source.resolve()), origin=origin)
            _mark_current(lang_dir, model_name)
            return dest
        if dest.exists():
            if not overwrite:
                raise ModelInstallError(
                    f"{dest} already exists: remove it or install under another name")
            shutil.rmtree(dest)
        if kind is None:
            shutil.copytree(root, staging / "copy", symlinks=False)
            os.replace(staging / "copy", dest)
        else:
            os.replace(root, dest)
    write_manifest(language, dest, source=str(source.resolve()), origin=origin,
                   archive_sha256=file_sha256(source) if kind else None)
    _mark_current(lang_dir, model_name)
    log.info("installed %s model %s from %s", language, dest, source)
    return dest
