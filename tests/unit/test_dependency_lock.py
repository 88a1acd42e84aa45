"""requirements-lock.txt covers every dependency pyproject.toml names, with hashes.

The lock (``make lock``) is what scripts/bootstrap.sh, and so ``make test`` and CI, install
with ``pip install --require-hashes``; a dependency added to pyproject.toml without
refreshing the lock would be missing there, and one whose floor was raised past the locked
release would quietly run the old one. Both fail here, naming the package.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements-lock.txt"
EXTRAS = ("test",)
"""The optional dependency groups bootstrap installs (and so the lock must hold)."""
PYTHONS = ("3.11", "3.11.2", "3.12", "3.13", "3.14")
"""The interpreters the lock must serve (requires-python >= 3.11, markers evaluated on each)."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: int
    line: int


def parse_lock(text: str) -> dict[str, list[Pin]]:
    """The pinned packages of a ``pip-compile``/``uv pip compile`` hash-pinned lock."""
    pins: dict[str, list[Pin]] = {}
    # Join continuation lines: one logical requirement per entry.
    logical: list[tuple[int, str]] = []
    start, buffer = 0, ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            logical.append((start, buffer.strip()))
        buffer = ""
    for number, entry in logical:
        hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", entry)
        requirement = Requirement(re.sub(r"--hash=\S+", "", entry).strip())
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise ValueError(f"line {number}: {requirement.name} is not pinned with ==")
        name = canonicalize_name(requirement.name)
        pins.setdefault(name, []).append(
            Pin(name, Version(specifiers[0].version), requirement.marker, len(hashes), number))
    return pins


def declared() -> list[tuple[str, Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [("dependencies", Requirement(text)) for text in project["dependencies"]]
    for extra in EXTRAS:
        found += [(f"[{extra}]", Requirement(text))
                  for text in project["optional-dependencies"][extra]]
    return found


def environments() -> list[dict[str, str]]:
    envs = []
    for python in PYTHONS:
        short = ".".join(python.split(".")[:2])
        full = python if python.count(".") == 2 else f"{python}.0"
        envs.append({"python_version": short, "python_full_version": full,
                     "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                     "implementation_name": "cpython",
                     "platform_python_implementation": "CPython", "extra": ""})
    return envs


def lock_problems(pins: dict[str, list[Pin]],
                  requirements: list[tuple[str, Requirement]]) -> list[str]:
    problems = []
    for group, requirement in requirements:
        name = canonicalize_name(requirement.name)
        for env in environments():
            if requirement.marker is not None and not requirement.marker.evaluate(env):
                continue
            chosen = [pin for pin in pins.get(name, [])
                      if pin.marker is None or pin.marker.evaluate(env)]
            where = f"{requirement} ({group}) on Python {env['python_full_version']}"
            if not chosen:
                problems.append(f"{where}: not in {LOCK.name}; run `make lock`")
                break
            wrong = [pin for pin in chosen
                     if not requirement.specifier.contains(pin.version, prereleases=True)]
            if wrong:
                problems.append(f"{where}: {LOCK.name} line {wrong[0].line} pins "
                                f"{wrong[0].version}; run `make lock`")
                break
    return problems


@pytest.fixture(scope="module")
def pins() -> dict[str, list[Pin]]:
    return parse_lock(LOCK.read_text())


def test_every_declared_dependency_is_locked_at_a_satisfying_version(pins):
    assert lock_problems(pins, declared()) == []


def test_every_locked_release_has_hashes(pins):
    unhashed = [f"{pin.name} (line {pin.line})" for group in pins.values() for pin in group
                if pin.hashes == 0]
    assert unhashed == []


def test_the_security_floors_are_locked(pins):
    floors = {"aiohttp": "3.12.14", "jinja2": "3.1.6", "cryptography": "44.0.1",
              "setuptools": "78.1.1"}
    below = [f"{name} {pin.version} < {floor}" for name, floor in floors.items()
             for pin in pins[name] if pin.version < Version(floor)]
    assert below == []


def test_a_dependency_missing_from_the_lock_is_named():
    pins = parse_lock("aiohttp==3.12.14 \\\n    --hash=sha256:" + "a" * 64 + "\n")
    problems = lock_problems(pins, [("dependencies", Requirement("aiohttp>=3.13")),
                                    ("dependencies", Requirement("redis>=5"))])
    assert len(problems) == 2
    assert "aiohttp>=3.13" in problems[0] and "pins 3.12.14" in problems[0]
    assert "redis>=5" in problems[1] and "not in requirements-lock.txt" in problems[1]


def test_a_marker_dependency_must_be_locked_where_its_marker_holds():
    lock = "audioop-lts==0.2.2 ; python_full_version >= '3.14' \\\n    --hash=sha256:" \
        + "b" * 64 + "\n"
    problems = lock_problems(parse_lock(lock),
                             [("dependencies",
                               Requirement("audioop-lts>=0.2; python_version >= '3.13'"))])
    assert len(problems) == 1 and "Python 3.13.0" in problems[0]


def test_bootstrap_installs_from_the_lock_with_hashes():
    script = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "--require-hashes -r requirements-lock.txt" in script
    assert "--no-deps" in script
    assert re.search(r"stamp_src=.*requirements-lock\.txt", script)
