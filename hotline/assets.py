"""The data files the hotline ships, found the same way in a checkout and in an installed wheel.

Every template, language pack, SIPp scenario, web asset and migration is listed here
(``ALL_ASSETS``), so the wheel test can check that each one ships. The shell's own (Asterisk
templates, dialplans, SIPp scenarios) are also looked up here; the layers below never import
the shell, so they find theirs inside their own package (crm/web/app.py, crm/storage/migrate.py,
speech/prompts.py), where the entries below say they are.

Most of them live inside their Python package and are found with importlib.resources. The
Asterisk templates are the exception: the design card keeps ``asterisk-config/`` and
``dialplans/`` at the top of the repository, and a built wheel carries them inside
``hotline/asterisk/templates/`` (copied there by the build hook ``scripts/wheel_assets.py``).
So in a checkout they are read from the top-level folders, and from the package otherwise.

Only the standard library is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


class AssetError(Exception):
    """A shipped data file is missing: the installation is incomplete."""


@dataclass(frozen=True)
class Asset:
    """A folder of data files: ``path`` inside ``package`` in an installed wheel, and
    ``checkout`` (relative to the checkout root) when a checkout keeps it outside the package."""

    package: str
    path: str
    checkout: str | None = None


ASTERISK_CONFIG = Asset("hotline.asterisk", "templates/asterisk-config", checkout="asterisk-config")
DIALPLANS = Asset("hotline.asterisk", "templates/dialplans", checkout="dialplans")
LANGUAGE_PACKS = Asset("speech", "language_packs")
SIPP_SCENARIOS = Asset("hotline.tools", "sipp_scenarios")
EDGE_TEMPLATES = Asset("hotline.edge", "templates")
WEB_TEMPLATES = Asset("crm.web", "templates")
WEB_STATIC = Asset("crm.web", "static")
MIGRATIONS = Asset("crm.storage", "migrations")

ALL_ASSETS = (ASTERISK_CONFIG, DIALPLANS, LANGUAGE_PACKS, SIPP_SCENARIOS, WEB_TEMPLATES,
              WEB_STATIC, MIGRATIONS, EDGE_TEMPLATES)


def package_dir(package: str) -> Path:
    """The folder an importable package's files are in (pip installs wheels unpacked)."""
    folder = resources.files(package)
    if not isinstance(folder, Path):
        raise AssetError(f"package {package} is not installed as plain files ({folder}); "
                         "install the hotline with pip, not as a zip archive")
    return folder


def checkout_root() -> Path | None:
    """The source checkout this code runs from (its packages sit next to ``pyproject.toml``
    and ``asterisk-config/``), or None when it runs from an installed wheel."""
    root = package_dir("hotline").parent
    if (root / "pyproject.toml").is_file() and (root / "asterisk-config").is_dir():
        return root
    return None


def asset_dir(asset: Asset) -> Path:
    """The folder holding ``asset``'s files; AssetError if it is not there."""
    root = checkout_root() if asset.checkout else None
    if root is not None and asset.checkout is not None:
        folder = root / asset.checkout
    else:
        folder = package_dir(asset.package).joinpath(*asset.path.split("/"))
    if not folder.is_dir():
        raise AssetError(f"the hotline's {asset.path} folder is missing ({folder}): the "
                         "installation is incomplete, reinstall the package")
    return folder
