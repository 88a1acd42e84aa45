"""The rules of the house (ARCHITECTURE.md), checked on every runtime module's imports.

Every ``import`` counts, also those inside functions and under ``if TYPE_CHECKING:``: a
lazy or type-only import still ties two modules together.

- No cycles: no module imports itself through others.
- Layers: hotline (the shell) > ivr > crm and speech. crm and speech import no other layer;
  nothing imports hotline but hotline and the benches; no runtime module imports tests/.
- Settings and contracts sit at the bottom: each layer's ``settings`` module and crm's
  exception tree import nothing of the hotline; crm/telephony/ (the call events and the
  interfaces the CRM asks telephony through) imports only crm.errors; hotline.settings only
  composes the layers' settings modules.
- Inside crm and ivr, each part imports only parts below it (PARTS), never one beside it.
- Only the CLI and the tools themselves import hotline.tools (the SIPp driver, the test bed).
- The IVR reaches the CRM's database only through the objects the shell hands it
  (crm/cases/directory.py, crm/surveys/store.py): no IVR module names crm.storage.db or
  the tables.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("crm", "ivr", "speech", "hotline", "bench")
LAYERS: dict[str, set[str]] = {
    "hotline": {"hotline", "ivr", "crm", "speech"},
    "ivr": {"ivr", "crm", "speech"},
    "crm": {"crm"},
    "speech": {"speech"},
    "bench": {"bench", "hotline", "ivr", "crm", "speech"},
}
"""Which top-level packages each one may import (of this repository's)."""
BOTTOM: dict[str, set[str]] = {
    "crm.errors": {"crm.i18n.phrases"},  # its messages are phrases (read in each language)
    "crm.settings": set(),
    "ivr.settings": set(),
    "speech.settings": set(),
    "crm.telephony": {"crm.errors", "crm.telephony"},
    "hotline.assets": set(),
    "hotline.edge.settings": {"ivr.settings"},
    "hotline.bus.settings": set(),
    "hotline.settings": {"crm.settings", "ivr.settings", "speech.settings", "hotline.assets",
                         "hotline.edge.settings", "hotline.bus.settings"},
}
"""Modules (or packages) at the bottom, and the only modules of the house they may import."""
PARTS: dict[str, list[set[str]]] = {
    "crm": [{"i18n"}, {"errors", "settings"}, {"telephony"}, {"storage"}, {"categories"}, {"audit"},
            {"agents"}, {"cases"}, {"consultations"}, {"surveys", "knowledge"}, {"callbacks"},
            {"reports", "live"}, {"metrics"}, {"directory"}, {"demo_data"}, {"web"}],
    "ivr": [{"settings"}, {"ami", "audiosocket", "flows"}, {"asterisk"},
            {"prompting", "voice", "overflow"},
            {"menu_call", "survey_call", "callback_offer_call"}],
}
"""Inside a layer, from the bottom up: a part may import its own modules and those of the
parts below it."""
TOOLS = "hotline.tools"
TOOL_USERS = ("hotline.cli", "hotline.tools", "bench")
DATABASE = ("crm.storage.db", "crm.storage.models", "crm.storage.survey_models",
            "crm.knowledge.models",
            "crm.storage.dispatch_models")

@dataclass(frozen=True)
class Import:
    source: str
    target: str
    where: str
    """path:line of the import statement."""

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_files(root: Path, packages: Iterable[str] = RUNTIME) -> dict[str, Path]:
    return {module_name(p, root): p for package in packages
            for p in sorted((root / package).rglob("*.py"))}


def imports_of(modules: dict[str, Path], root: Path) -> list[Import]:
    """Every import of a module of the house (a package's ``__init__`` for ``from pkg import
    name``, the submodule for ``from pkg import submodule``)."""
    ours = {name.split(".")[0] for name in modules} | {"tests"}
    found: list[Import] = []
    for source, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = source.split(".")[: len(source.split(".")) - node.level
                                                 + is_package]
                    base = ".".join([*package, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            found += [Import(source, target, where) for target in dict.fromkeys(targets)
                      if target.split(".")[0] in ours and target != source]
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _part(module: str) -> tuple[str, int] | None:
    """(layer, rank of the module's part in PARTS) for a module of crm or ivr."""
    layer, _, rest = module.partition(".")
    if layer not in PARTS or not rest:
        return None
    name = rest.split(".")[0]
    for rank, names in enumerate(PARTS[layer]):
        if name in names:
            return layer, rank
    return None


def broken_rules(imports: Iterable[Import]) -> list[str]:
    """Every import that breaks a rule of the house, with the rule it breaks."""
    broken = []
    for imp in imports:
        source_layer, target_layer = imp.source.split(".")[0], imp.target.split(".")[0]
        if target_layer == "tests":
            broken.append(f"{imp}: runtime code never imports tests/")
            continue
        if target_layer not in LAYERS.get(source_layer, {target_layer}):
            broken.append(f"{imp}: {source_layer} must not import {target_layer} (layers: "
                          "hotline > ivr > crm, speech; crm and speech import no other layer)")
        for bottom, allowed in BOTTOM.items():
            if _within(imp.source, bottom) and not any(_within(imp.target, a)
                                                       for a in allowed):
                broken.append(f"{imp}: {bottom} sits at the bottom and may import only "
                              f"{sorted(allowed) or 'nothing of the hotline'}")
        source_part, target_part = _part(imp.source), _part(imp.target)
        if (source_part and target_part and source_part[0] == target_part[0]
                and imp.source.split(".")[1] != imp.target.split(".")[1]
                and target_part[1] >= source_part[1]):
            layer = source_part[0]
            order = " < ".join("/".join(sorted(names)) for names in PARTS[layer])
            broken.append(f"{imp}: inside {layer}, a part imports only parts below it "
                          f"({order})")
        if _within(imp.target, TOOLS) and not any(_within(imp.source, u) for u in TOOL_USERS):
            broken.append(f"{imp}: runtime code does not use {TOOLS} (only the CLI's "
                          "demo-call, the tests and the benches do)")
        if source_layer == "ivr" and imp.target in DATABASE:
            broken.append(f"{imp}: the IVR reaches the CRM's database only through the "
                          "objects the shell hands it (crm/cases/directory.py, "
                          "crm/surveys/store.py)")
    return broken


def cycles(imports: Iterable[Import]) -> list[list[Import]]:
    """One closed chain of imports for each group of modules that import each other."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_chain(group, edges) for group in groups]


def _chain(group: set[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    start = min(group)
    paths: list[list[Import]] = [[]]
    seen = {start}
    while paths:  # breadth first: the shortest way back to the start
        path = paths.pop(0)
        here = path[-1].target if path else start
        for nxt, imp in sorted(edges.get(here, {}).items()):
            if nxt == start:
                return [*path, imp]
            if nxt in group and nxt not in seen:
                seen.add(nxt)
                paths.append([*path, imp])
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group has one


def _report(title: str, lines: Iterable[str]) -> str:
    return title + "\n  " + "\n  ".join(lines)


@pytest.fixture(scope="module")
def house() -> list[Import]:
    return imports_of(runtime_files(ROOT), ROOT)


def test_no_module_imports_itself_through_others(house: list[Import]) -> None:
    found = cycles(house)
    assert not found, _report("import cycles (each a closed chain):", (
        " -> ".join([chain[0].source, *(i.target for i in chain)]) + "\n    "
        + "\n    ".join(str(i) for i in chain) for chain in found))


def test_every_import_keeps_the_rules_of_the_house(house: list[Import]) -> None:
    broken = broken_rules(house)
    assert not broken, _report("imports against the rules (ARCHITECTURE.md):", broken)


def test_every_module_of_crm_and_ivr_has_a_part() -> None:
    homeless = [m for m in runtime_files(ROOT, PARTS) if "." in m and _part(m) is None]
    assert not homeless, ("modules in no part of PARTS (give them one, and a line in "
                          f"ARCHITECTURE.md): {homeless}")


# -- the checks themselves can fail --------------------------------------------------------------
def _house_of(tmp_path: Path, files: dict[str, str]) -> list[Import]:
    for name, source in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return imports_of(runtime_files(tmp_path, ("crm", "ivr", "hotline")), tmp_path)


def test_a_cycle_is_named_with_the_imports_that_close_it(tmp_path: Path) -> None:
    house = _house_of(tmp_path, {
        "crm/__init__.py": "", "crm/web/__init__.py": "", "crm/web/api/__init__.py": "",
        "crm/web/api/routes.py": "from crm.web.api.openapi import document\n",
        "crm/web/api/openapi.py": "def document(): pass\n\n\ndef f():\n"
                                  "    import crm.web.api.routes  # lazy, still a tie\n",
    })
    [chain] = cycles(house)
    assert [(i.source, i.target, i.where) for i in chain] == [
        ("crm.web.api.openapi", "crm.web.api.routes", "crm/web/api/openapi.py:5"),
        ("crm.web.api.routes", "crm.web.api.openapi", "crm/web/api/routes.py:1")]


def test_imports_against_the_layers_are_named(tmp_path: Path) -> None:
    house = _house_of(tmp_path, {
        "crm/__init__.py": "", "ivr/__init__.py": "", "hotline/__init__.py": "",
        "crm/settings.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                           "    from hotline.settings import Settings\n",
        "crm/web/desk.py": "from ivr.asterisk.queue_control import QueueControl\n",
        "crm/cases/access.py": "from crm.live.desk_hub import AgentDesk\n",
        "crm/live/desk_hub.py": "", "ivr/asterisk/queue_control.py": "",
        "ivr/menu_call.py": "from crm.storage.models import Case\nimport tests.ami_replay\n",
        "hotline/service.py": "from hotline.tools.sipp import place_call\n",
        "hotline/settings.py": "",
    })
    broken = "\n".join(broken_rules(house))
    assert "crm/settings.py:3: crm.settings imports hotline.settings: crm must not import " \
           "hotline" in broken
    assert "crm.settings sits at the bottom" in broken
    assert "crm/web/desk.py:1: crm.web.desk imports ivr.asterisk.queue_control: crm must " \
           "not import ivr" in broken
    assert "crm.cases.access imports crm.live.desk_hub: inside crm, a part imports only " \
           "parts below it" in broken
    assert "ivr.menu_call imports crm.storage.models: the IVR reaches the CRM's database " \
           "only through the objects the shell hands it" in broken
    assert "ivr.menu_call imports tests.ami_replay: runtime code never imports tests/" in broken
    assert "hotline.service imports hotline.tools.sipp: runtime code does not use" in broken
