"""Shipped data files and the state directory, as seen from a checkout (the installed wheel
is covered by tests/integration/test_wheel_install.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hotline.assets import (
    ALL_ASSETS,
    ASTERISK_CONFIG,
    DIALPLANS,
    Asset,
    AssetError,
    asset_dir,
    checkout_root,
)
from hotline.asterisk.render import render_config
from hotline.settings import Settings, SettingsError, default_state_dir, load_settings

CHECKOUT = Path(__file__).resolve().parents[2]


def test_a_checkout_is_recognised_and_keeps_its_state_in_var() -> None:
    assert checkout_root() == CHECKOUT
    assert default_state_dir() == CHECKOUT / "var"


def test_every_asset_is_found_in_the_checkout() -> None:
    for asset in ALL_ASSETS:
        folder = asset_dir(asset)
        assert folder.is_relative_to(CHECKOUT) and any(folder.iterdir()), asset
    # The design card keeps the Asterisk templates at the top of the repository.
    assert asset_dir(ASTERISK_CONFIG) == CHECKOUT / "asterisk-config"
    assert asset_dir(DIALPLANS) == CHECKOUT / "dialplans"


def test_rendering_does_not_depend_on_the_working_directory(tmp_path: Path,
                                                            monkeypatch) -> None:
    settings = Settings(state_dir=tmp_path / "state", ami={"secret": "ami-secret-1"},
                        asterisk={"softphone_password": "soft-1",
                                  "agent_passwords": {"2001": "a1", "2002": "a2",
                                                      "2003": "a3", "2004": "a4"}})
    monkeypatch.chdir(tmp_path)
    config = render_config(settings)
    assert {"extensions.conf", "hotline.conf", "pjsip.conf", "manager.conf"} <= set(config)


def test_a_missing_asset_is_a_clear_error() -> None:
    with pytest.raises(AssetError, match="installation is incomplete, reinstall"):
        asset_dir(Asset("hotline", "no-such-folder"))


def test_the_build_hook_puts_the_templates_where_the_resolver_looks() -> None:
    spec = importlib.util.spec_from_file_location(
        "wheel_assets", CHECKOUT / "scripts" / "wheel_assets.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    outside = {a.checkout: f"{a.package.replace('.', '/')}/{a.path}"
               for a in ALL_ASSETS if a.checkout}
    assert hook.TREES == outside


def test_a_state_directory_that_cannot_be_written_is_a_clear_error(tmp_path: Path,
                                                                   monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(blocker / "state"))
    with pytest.raises(SettingsError, match="HOTLINE_STATE_DIR"):
        load_settings()
