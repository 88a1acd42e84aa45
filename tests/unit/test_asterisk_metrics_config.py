"""Asterisk's own metrics in the rendered configuration: res_prometheus loaded, served by
Asterisk's HTTP server on loopback only, at the configured port; off when the port is 0."""

from __future__ import annotations

import re
from pathlib import Path

from hotline.asterisk.render import render_config
from hotline.settings import Settings

SECRETS = {"softphone_password": "soft-phone-pw-123",
           "agent_passwords": {"3001": "agent-3001-pw"}, "agent_extensions": ["3001"]}


def rendered(tmp_path: Path, metrics_port: int) -> dict[str, str]:
    return render_config(Settings(
        state_dir=tmp_path / "state", asterisk={**SECRETS, "metrics_port": metrics_port},
        ami={"secret": "ami-secret-123"}))


def general(text: str) -> dict[str, str]:
    body = re.search(r"^\[general\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert body
    return dict(re.findall(r"^(\w+) = (\S+)$", body.group(1), re.M))


def test_res_prometheus_is_served_on_loopback_at_the_configured_port(tmp_path: Path) -> None:
    config = rendered(tmp_path, 18088)
    assert re.search(r"^load = res_prometheus\.so$", config["modules.conf"], re.M)
    assert general(config["http.conf"]) == {
        "enabled": "yes", "bindaddr": "127.0.0.1", "bindport": "18088", "tlsenable": "no"}
    assert general(config["prometheus.conf"]) == {
        "enabled": "yes", "core_metrics_enabled": "yes", "uri": "metrics"}


def test_port_zero_turns_asterisks_http_server_and_metrics_off(tmp_path: Path) -> None:
    config = rendered(tmp_path, 0)
    assert "res_prometheus" not in re.sub(r"^;.*$", "", config["modules.conf"], flags=re.M)
    assert general(config["http.conf"]) == {"enabled": "no"}
    assert general(config["prometheus.conf"])["enabled"] == "no"
