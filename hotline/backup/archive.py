"""The backup archive: one gzip-compressed tar file holding the members below and, last,
``manifest.json`` with each member's SHA-256 and size.

    database/<nn>-<table>.jsonl   the rows (crm/storage/dump.py), in dependency order
    recordings/<path>             Asterisk's call recordings
    survey-comments/<path>        residents' spoken survey comments
    settings/hotline.toml         the settings file (secrets left out unless asked)
    settings/secrets.toml         generated secrets (only with --with-secrets)

The archive is written to a private temporary file beside its name and renamed when
complete, so a failed backup never leaves a half archive under the real name.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from crm.storage.private_files import open_private

FORMAT = "hotline-backup"
VERSION = 1
MANIFEST = "manifest.json"
SECTIONS = ("database", "recordings", "survey-comments", "settings")
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


def sha256_of(stream: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


class ArchiveWriter:
    """Members added one by one, each with its checksum kept for the manifest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._partial = path.with_name(f".{path.name}.partial")
        self._file = open_private(self._partial, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w:gz")
        self.files: dict[str, dict[str, Any]] = {}

    def add_file(self, name: str, source: Path) -> int:
        with source.open("rb") as fh:
            checksum, size = sha256_of(fh)
            fh.seek(0)
            self._add(name, fh, size, checksum, source.stat().st_mtime)
        return size

    def add_stream(self, name: str, stream: IO[bytes]) -> int:
        """A seekable stream from its start (a spooled temporary file)."""
        stream.seek(0)
        checksum, size = sha256_of(stream)
        stream.seek(0)
        self._add(name, stream, size, checksum, time.time())
        return size

    def add_bytes(self, name: str, data: bytes) -> None:
        self._add(name, io.BytesIO(data), len(data), hashlib.sha256(data).hexdigest(),
                  time.time())

    def _add(self, name: str, stream: IO[bytes], size: int, checksum: str,
             mtime: float) -> None:
        check_member_name(name)
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, int(mtime), 0o600
        self._tar.addfile(info, stream)
        self.files[name] = {"sha256": checksum, "size": size}

    def finish(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write the manifest (with the members' checksums), close, put the archive under
        its name; returns the manifest as written."""
        manifest = {**manifest, "files": self.files}
        data = json.dumps(manifest, ensure_ascii=False, indent=1)
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(data.encode()), int(time.time()), 0o600
        self._tar.addfile(info, io.BytesIO(data.encode()))
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._partial, self.path)
        return manifest

    def abort(self) -> None:
        self._tar.close()
        self._file.close()
        self._partial.unlink(missing_ok=True)


def check_member_name(name: str) -> None:
    path = PurePosixPath(name)
    if (path.is_absolute() or ".." in path.parts or not path.parts
            or (path.parts[0] not in SECTIONS and name != MANIFEST)):
        raise BackupError(f"unsafe or unknown member name in the archive: {name!r}")


def verify(path: Path) -> dict[str, Any]:
    """Read the whole archive; return its manifest once every member matches its checksum
    and none is missing or extra. BackupError naming the first fault otherwise."""
    seen: dict[str, tuple[str, int]] = {}
    manifest: dict[str, Any] | None = None
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    raise BackupError(f"{path}: unexpected {member.name!r} (not a file)")
                check_member_name(member.name)
                stream = tar.extractfile(member)
                assert stream is not None
                if member.name == MANIFEST:
                    manifest = _parse_manifest(stream.read(), path)
                else:
                    seen[member.name] = sha256_of(stream)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise BackupError(f"no backup archive at {path}") from None
        raise BackupError(f"{path} is not a readable backup archive (damaged or cut short): "
                          f"{exc}") from None
    if manifest is None:
        raise BackupError(f"{path} has no {MANIFEST}: not a complete hotline backup")
    expected = manifest.get("files", {})
    for name, entry in expected.items():
        if name not in seen:
            raise BackupError(f"{path}: {name} is listed in the manifest but missing")
        if seen[name] != (entry.get("sha256"), entry.get("size")):
            raise BackupError(f"{path}: {name} does not match its checksum in the manifest "
                              "(the archive is corrupt)")
    extra = sorted(set(seen) - set(expected))
    if extra:
        raise BackupError(f"{path}: {extra[0]} is not listed in the manifest")
    return manifest


def _parse_manifest(data: bytes, path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise BackupError(f"{path}: {MANIFEST} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a hotline backup (no format {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise BackupError(f"{path} is a version {manifest.get('version')} backup; this "
                          f"hotline reads version {VERSION}")
    return manifest


def members(path: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """(name, stream) of each member in archive order, the manifest left out."""
    with tarfile.open(path, mode="r:gz") as tar:
        for member in tar:
            if member.name == MANIFEST:
                continue
            stream = tar.extractfile(member)
            assert stream is not None
            yield member.name, stream
