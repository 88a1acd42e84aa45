"""setuptools build hook: the top-level Asterisk templates ship inside the wheel.

The design card keeps ``asterisk-config/`` and ``dialplans/`` at the top of the repository,
where no Python package holds them. setuptools' ``package-dir`` could map them in only as
packages of their own, which would mean listing every package by hand instead of finding
them; so this ``build_py`` copies their templates into the package tree it builds, at the
place ``hotline.assets`` looks for them when the hotline runs from a wheel. Named in
pyproject.toml (``[tool.setuptools.cmdclass]``); MANIFEST.in puts this file and the folders
into the sdist, so a wheel built from the sdist has them too.
"""

from __future__ import annotations

from pathlib import Path

from setuptools.command.build_py import build_py

TREES = {
    "asterisk-config": "hotline/asterisk/templates/asterisk-config",
    "dialplans": "hotline/asterisk/templates/dialplans",
}
"""Checkout folder -> folder inside the built package tree (hotline.assets agrees)."""


class BuildPyWithAsteriskTemplates(build_py):
    def _template_copies(self) -> list[tuple[Path, Path]]:
        return [(template, Path(self.build_lib, dest, template.name))
                for source, dest in TREES.items()
                for template in sorted(Path(source).glob("*.j2"))]

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install runs from the checkout: hotline.assets reads it there
        copies = self._template_copies()
        if not copies:
            raise FileNotFoundError(f"no Asterisk templates in {', '.join(TREES)} under "
                                    f"{Path.cwd()}: build from the project's root")
        for source, target in copies:
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        extra = [] if self.editable_mode else [str(t) for _, t in self._template_copies()]
        return [*super().get_outputs(include_bytecode), *extra]
