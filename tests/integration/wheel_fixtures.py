"""The wheel built from a copy of the checkout's sources, installed into a fresh virtual
environment outside the checkout, and what runs its commands: shared by the installation
tests (test_wheel_install, test_operator_guide). Session scoped: one wheel per test run.

Offline on purpose: the wheel is built with ``python -m build --no-isolation`` (build and
setuptools are test extras), and the new environment installs only the wheel itself
(``--no-deps --no-index``). Its dependencies are the test environment's own, made visible by
a .pth file holding that site-packages directory, added after the install so pip never sees
the checkout's editable install.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from hotline.assets import checkout_root

CHECKOUT = Path(__file__).resolve().parents[2]
TOP_LEVEL_LEFT_OUT = {".venv", "var", ".git", "build", "dist"}
"""Not sources: left out of the copy the sdist is built from."""
LEFT_OUT_ANYWHERE = ("__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache",
                     "node_modules")


def _source_files(root: str, names: list[str]) -> set[str]:
    left_out = set(shutil.ignore_patterns(*LEFT_OUT_ANYWHERE)(root, names))
    if Path(root) == CHECKOUT:
        left_out |= TOP_LEVEL_LEFT_OUT & set(names)
    return left_out


def run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 120) -> str:
    """Run a command to completion; its output is in the assertion message if it fails."""
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Wheelhouse:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class InstalledHotline:
    """The wheel installed into a virtual environment of its own."""

    venv: Path
    site_packages: Path
    workdir: Path
    """Where its commands run: outside the checkout, so the checkout is not on sys.path."""

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def hotline(self) -> Path:
        return self.venv / "bin" / "hotline"

    def env(self, **settings: str | Path) -> dict[str, str]:
        """The environment without the caller's HOTLINE_* settings or PYTHONPATH, plus
        ``settings``."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("HOTLINE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return {**env, **{k: str(v) for k, v in settings.items()}}


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    """The sdist built from a copy of the checkout's sources, and the wheel built from that
    sdist (so MANIFEST.in is tested too); nothing is written into the checkout."""
    assert checkout_root() == CHECKOUT, "these tests build the wheel from a checkout"
    base = tmp_path_factory.mktemp("wheel-build")
    sources = base / "sources"
    shutil.copytree(CHECKOUT, sources, ignore=_source_files, symlinks=True)
    dist = base / "dist"
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, sources],
        cwd=base, timeout=300)
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(dist.iterdir())
    return Wheelhouse(wheels[0], sdists[0])


@pytest.fixture(scope="session")
def installed(wheelhouse: Wheelhouse,
              tmp_path_factory: pytest.TempPathFactory) -> InstalledHotline:
    base = tmp_path_factory.mktemp("wheel-venv")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=base)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         wheelhouse.wheel], cwd=base, timeout=300)
    site_packages = Path(run([python, "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], cwd=base).strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site_packages / "test-environment-packages.pth").write_text(
        "".join(f"{path}\n" for path in sorted(ours)))
    workdir = base / "elsewhere"
    workdir.mkdir()
    return InstalledHotline(venv, site_packages, workdir)



class ServiceOutput:
    """The lines a subprocess prints, read as they arrive (so its pipe never fills), and
    waited on by pattern."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self.ended = False
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace"))
                self._changed.notify_all()
        async with self._changed:
            self.ended = True
            self._changed.notify_all()

    async def wait_for(self, pattern: str, within: float) -> re.Match[str]:
        regex = re.compile(pattern)
        try:
            async with asyncio.timeout(within), self._changed:
                while True:
                    for line in self.lines:
                        if match := regex.search(line):
                            return match
                    if self.ended:
                        break
                    await self._changed.wait()
        except TimeoutError:
            pass
        raise AssertionError(f"{pattern!r} not printed within {within} s; output:\n"
                             + "".join(self.lines))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
