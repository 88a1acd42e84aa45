"""Include points: the operator's local Asterisk files survive every re-rendering."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from hotline.asterisk.layout import AsteriskDirs
from hotline.asterisk.local_config import INCLUDED, LOCAL_DIR
from hotline.asterisk.render import install_config, render_config
from tests.unit.test_trunk_render import make_settings


def test_each_included_file_ends_with_its_local_file(tmp_path: Path) -> None:
    config = render_config(make_settings(tmp_path), AsteriskDirs(etc="/opt/pbx/etc"))
    for name in INCLUDED:
        lines = config[f"{name}.conf"].rstrip("\n").splitlines()
        assert lines[-1] == f"#tryinclude /opt/pbx/etc/{LOCAL_DIR}/{name}_local.conf", name
    others = [n for n, text in config.items() if "#tryinclude" in text]
    assert sorted(others) == sorted(f"{n}.conf" for n in INCLUDED)
    # extensions.conf includes the local dialplan after the hotline's own.
    extensions = config["extensions.conf"]
    assert extensions.index("#include hotline.conf") < extensions.index("#tryinclude")


def test_local_files_are_created_once_and_never_overwritten(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    etc = tmp_path / "etc"
    install_config(settings, etc)
    local = etc / LOCAL_DIR
    assert sorted(p.name for p in local.iterdir()) == sorted(f"{n}_local.conf" for n in INCLUDED)
    seeded = (local / "pjsip_local.conf").read_text()
    assert seeded.startswith("; Local additions to pjsip.conf")
    assert stat.S_IMODE((local / "pjsip_local.conf").stat().st_mode) == 0o640

    mine = "[hotline-inbound]\nexten => 7777,1,Answer()\n same => n,Echo()\n"
    (local / "extensions_local.conf").write_text(mine)
    (local / "pjsip_local.conf").unlink()  # removed on purpose: created again, empty
    settings.asterisk.hotline_number = "96110"
    install_config(settings, etc)
    assert (local / "extensions_local.conf").read_text() == mine
    assert (local / "pjsip_local.conf").read_text() == seeded
    # The rendered files were rewritten all the same.
    assert re.search(r"^exten => 96110,1,", (etc / "hotline.conf").read_text(), re.M)


def test_modules_listed_after_a_start_are_loaded_on_reload(tmp_path: Path) -> None:
    """`core reload` loads no newly listed module: up loads those `module show` lacks,
    from the rendered modules.conf and the local one."""
    from hotline.asterisk.modules import configured_modules, not_loaded

    settings = make_settings(tmp_path, trunk={"server": "sip.carrier.example",
                                              "username": "0105551234", "secret": "pw-1"})
    etc = tmp_path / "etc"
    install_config(settings, etc)
    (etc / LOCAL_DIR / "modules_local.conf").write_text(
        "load = func_sha1.so ; local\nload => chan_pjsip.so\n;load = app_voicemail.so\n")
    configured = configured_modules(etc)
    assert "res_pjsip_outbound_registration.so" in configured
    assert configured[-1] == "func_sha1.so" and "app_voicemail.so" not in configured
    shown = ("Module                         Description                 Use Count  Status\n"
             "chan_pjsip.so                  PJSIP Channel Driver        0          Running\n"
             "res_pjsip.so                   Basic SIP resource          1          Running\n")
    missing = not_loaded(configured, shown)
    assert "chan_pjsip.so" not in missing and "res_pjsip.so" not in missing
    assert {"res_pjsip_outbound_registration.so", "res_prometheus.so"} <= set(missing)
