"""The command line's conventions: global options before or after the command, --version,
and README's "Commands" table documenting every command, verb and option the parser has."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from hotline.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
GLOBAL = {"-h", "--help", "--config", "--log-format"}
"""Options every command takes; README says so once under the table."""


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _readme_commands() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


@pytest.mark.parametrize("argv", [
    ["--config", "/etc/hotline/hotline.toml", "consultations", "list", "--limit", "3"],
    ["consultations", "list", "--config", "/etc/hotline/hotline.toml", "--limit", "3"],
    ["consultations", "--config", "/etc/hotline/hotline.toml", "list", "--limit", "3"],
])
def test_config_is_accepted_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.config == "/etc/hotline/hotline.toml" and args.limit == 3


def test_config_defaults_to_none_and_the_later_one_wins() -> None:
    assert build_parser().parse_args(["down"]).config is None
    args = build_parser().parse_args(["--config", "a.toml", "down", "--config", "b.toml"])
    assert args.config == "b.toml"


def test_version_prints_the_installed_version() -> None:
    done = subprocess.run([sys.executable, "-m", "hotline.cli", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"hotline {version('community-hotline')}"


def test_every_command_has_a_handler() -> None:
    assert sorted(_subcommands()) == sorted(COMMANDS)


def test_readme_documents_every_command_verb_and_option() -> None:
    table = _readme_commands()
    rows = table.splitlines()
    missing = []
    for name, parser in _subcommands().items():
        mine = [row for row in rows if re.search(rf"`hotline {re.escape(name)}\b", row)]
        if not mine:
            missing.append(f"hotline {name}: no row in README's Commands table")
            continue
        text = "\n".join(mine)
        for action in parser._actions:
            for option in action.option_strings:
                if option not in GLOBAL and not re.search(rf"{re.escape(option)}\b", text):
                    missing.append(f"hotline {name}: option {option} not in its row(s)")
            if not action.option_strings and action.choices:
                missing += [f"hotline {name}: verb {choice} not in its row(s)"
                            for choice in action.choices
                            if not re.search(rf"(?<![\w-]){re.escape(choice)}(?![\w-])", text)]
    assert missing == []
    assert "All commands take `--config FILE`" in (ROOT / "README.md").read_text()
